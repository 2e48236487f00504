"""Background work: uploaded import files and their limits, Celery on Redis, campaign dispatch
(batches, leases, retries, throttles), the beat schedule and the frequency caps."""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from mlm.env import env_bool, env_int, env_str
from mlm.settings.core import EMBEDDED, REDIS_URL, VAR_DIR
from mlm.settings.mail import EMAIL_TIMEOUT

# Uploaded import files and rejected-rows reports: the default storage, in a folder that the web
# process and the workers share (a shared volume in docker-compose.yml). Never served directly:
# downloads go through unit-scoped views.
MEDIA_ROOT = VAR_DIR / "media"
MLM_IMPORT_MAX_BYTES = env_int(
    "MLM_IMPORT_MAX_BYTES",
    200 * 1024 * 1024,
    "Largest recipient file (CSV or XLSX) an import accepts, in bytes.",
)
MLM_IMPORT_MAX_UNCOMPRESSED_BYTES = env_int(
    "MLM_IMPORT_MAX_UNCOMPRESSED_BYTES",
    100 * 1024 * 1024,
    "Largest size an XLSX workbook may unpack to (all its parts), in bytes.",
)
MLM_IMPORT_MAX_COMPRESSION_RATIO = env_int(
    "MLM_IMPORT_MAX_COMPRESSION_RATIO",
    100,
    "Largest ratio of an XLSX workbook's unpacked to packed size: past it, it is a zip bomb.",
)
MLM_IMPORT_PREVIEW_SECONDS = env_int(
    "MLM_IMPORT_PREVIEW_SECONDS",
    10,
    "Seconds the upload request may spend reading a workbook's first rows for the preview; past "
    "them the person is told to save it as CSV (the web server's own timeout is longer).",
)
MLM_IMPORT_LEASE_SECONDS = env_int(
    "MLM_IMPORT_LEASE_SECONDS",
    300,
    "Seconds a running import may go without progress before it is taken for dead (its worker "
    "killed or out of memory), marked failed and its files removed.",
)
MLM_IMPORT_RETENTION_DAYS = env_int(
    "MLM_IMPORT_RETENTION_DAYS",
    30,
    "Days a finished import's rejected-rows report is kept; uploads never started are deleted "
    "after a day.",
)

# Celery, on Redis (the embedded one by default).
CELERY_BROKER_URL = env_str(
    "CELERY_BROKER_URL",
    REDIS_URL if os.environ.get("REDIS_URL") else EMBEDDED.broker_url(),
    "Celery broker (default: REDIS_URL, else the embedded Redis).",
)
CELERY_VISIBILITY_TIMEOUT = env_int(
    "CELERY_VISIBILITY_TIMEOUT",
    3 * 3600,
    "Seconds before Redis re-delivers an unacknowledged task; must exceed the task time limit.",
)
CELERY_TASK_TIME_LIMIT = env_int(
    "CELERY_TASK_TIME_LIMIT", 15 * 60, "Hard time limit of any task, in seconds."
)
if CELERY_TASK_TIME_LIMIT >= CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        f"CELERY_TASK_TIME_LIMIT ({CELERY_TASK_TIME_LIMIT} s) must be below "
        f"CELERY_VISIBILITY_TIMEOUT ({CELERY_VISIBILITY_TIMEOUT} s): otherwise the broker hands a "
        "running task to a second worker and mail could be sent twice."
    )
CELERY_TASK_SOFT_TIME_LIMIT = max(CELERY_TASK_TIME_LIMIT - 30, 1)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Sending (campaigns.sending): batches claimed by workers, their lease, retries, limits.
MLM_DISPATCH_BATCH_SIZE = env_int(
    "MLM_DISPATCH_BATCH_SIZE", 50, "Deliveries a worker claims and sends over one connection."
)
MLM_DISPATCH_PARALLEL = env_int(
    "MLM_DISPATCH_PARALLEL", 4, "Batch tasks of one campaign in flight at once (across workers)."
)
MLM_DISPATCH_LEASE_SECONDS = env_int(
    "MLM_DISPATCH_LEASE_SECONDS",
    300,
    "Seconds a claimed batch may take; after that its rows are taken for lost and marked in doubt.",
)
MLM_DISPATCH_MAX_ATTEMPTS = env_int(
    "MLM_DISPATCH_MAX_ATTEMPTS",
    5,
    "Attempts of a delivery deferred by transient errors (4xx, timeouts) before it fails.",
)
MLM_DISPATCH_RETRY_SECONDS = env_int(
    "MLM_DISPATCH_RETRY_SECONDS",
    60,
    "First retry delay of a deferred delivery, in seconds; it doubles with every attempt.",
)
MLM_DISPATCH_PAUSE_AFTER_FAILURES = env_int(
    "MLM_DISPATCH_PAUSE_AFTER_FAILURES",
    200,
    "A sending campaign pauses itself after this many transient failures in a row (0: never).",
)
MLM_DISPATCH_UNIT_RATE = env_int(
    "MLM_DISPATCH_UNIT_RATE", 0, "Messages per second one unit may send (0: no limit)."
)
MLM_DISPATCH_BACKEND_RATE = env_int(
    "MLM_DISPATCH_BACKEND_RATE",
    0,
    "Messages per second through the mail backend, all units together (0: no limit).",
)
MLM_DISPATCH_DOMAIN_CONCURRENCY = env_int(
    "MLM_DISPATCH_DOMAIN_CONCURRENCY",
    0,
    "Messages in flight at once to one recipient domain, all workers together (0: no limit).",
)
MLM_DISPATCH_SWEEP_SECONDS = env_int(
    "MLM_DISPATCH_SWEEP_SECONDS",
    15,
    "How often beat starts due campaigns and recovers lost batches, in seconds.",
)
if MLM_DISPATCH_LEASE_SECONDS >= CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        "MLM_DISPATCH_LEASE_SECONDS must be below CELERY_VISIBILITY_TIMEOUT: a batch whose lease "
        "ran out is in doubt before the broker could hand its task to another worker."
    )
if MLM_DISPATCH_LEASE_SECONDS <= EMAIL_TIMEOUT + 10:
    raise ImproperlyConfigured(
        "MLM_DISPATCH_LEASE_SECONDS must exceed EMAIL_TIMEOUT by more than 10 s: a batch whose "
        "server hangs must hit the SMTP timeout before its lease runs out."
    )

# Outbound events (outbound/): signed POSTs to the HTTPS endpoints a unit registers.
MLM_OUTBOUND_ALLOW_PRIVATE = env_bool(
    "MLM_OUTBOUND_ALLOW_PRIVATE",
    False,
    "Allow outbound event endpoints on private, loopback or link-local addresses (and plain "
    "http). Off in production: a unit admin could otherwise make MLM call internal services.",
)
MLM_OUTBOUND_TIMEOUT_MS = env_int(
    "MLM_OUTBOUND_TIMEOUT_MS", 5000, "How long one outbound event POST may take, in ms."
)
MLM_OUTBOUND_RETRY_HOURS = env_int(
    "MLM_OUTBOUND_RETRY_HOURS",
    24,
    "An outbound event not delivered this many hours after it happened is marked failed.",
)
MLM_OUTBOUND_RETRY_BASE_MS = env_int(
    "MLM_OUTBOUND_RETRY_BASE_MS",
    10000,
    "The first retry of an outbound event comes after about this many ms; each next one "
    "after twice as long (with jitter), at most an hour.",
)
MLM_OUTBOUND_PAUSE_HOURS = env_int(
    "MLM_OUTBOUND_PAUSE_HOURS",
    24,
    "An endpoint whose deliveries have all failed for this many hours is paused.",
)
MLM_OUTBOUND_LEASE_SECONDS = env_int(
    "MLM_OUTBOUND_LEASE_SECONDS",
    60,
    "A worker's claim on outbound events; a worker that dies leaves them to others after it.",
)
MLM_OUTBOUND_CONCURRENCY = env_int(
    "MLM_OUTBOUND_CONCURRENCY",
    64,
    "Outbound event POSTs in flight at once per worker (and connections kept open to the "
    "receivers); lower it for receivers that take fewer.",
)
MLM_OUTBOUND_SWEEP_SECONDS = env_int(
    "MLM_OUTBOUND_SWEEP_SECONDS", 15, "How often beat looks for outbound events due a retry."
)

CELERY_BEAT_SCHEDULE = {
    "health": {"task": "mlm.tasks.health", "schedule": 60.0},
    "dispatch-start-due": {
        "task": "campaigns.tasks.start_due_campaigns",
        "schedule": float(MLM_DISPATCH_SWEEP_SECONDS),
    },
    "dispatch-recover": {
        "task": "campaigns.tasks.recover_deliveries",
        "schedule": float(MLM_DISPATCH_SWEEP_SECONDS),
    },
    "purge-subscription-requests": {
        "task": "consent.tasks.purge_subscription_requests",
        "schedule": 3600.0,
    },
    "imports-recover": {"task": "recipients.tasks.recover_imports", "schedule": 60.0},
    "imports-purge": {"task": "recipients.tasks.purge_imports", "schedule": 3600.0},
    "api-idempotency-purge": {"task": "api.tasks.purge_idempotent_requests", "schedule": 3600.0},
    "outbound-deliver": {
        "task": "outbound.tasks.deliver_events",
        "schedule": float(MLM_OUTBOUND_SWEEP_SECONDS),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Campaigns: the institution-wide frequency cap, set by operations; it counts the DM mail of
# every unit to the same address. Each unit may set its own cap too. 0 mails: no cap.
MLM_FREQUENCY_CAP_MAILS = env_int(
    "MLM_FREQUENCY_CAP_MAILS",
    0,
    "Institution-wide frequency cap: at most this many DM mails from all units to one address "
    "per MLM_FREQUENCY_CAP_DAYS (0: no cap).",
)
MLM_FREQUENCY_CAP_DAYS = env_int(
    "MLM_FREQUENCY_CAP_DAYS", 7, "The period of the institution-wide frequency cap, in days."
)
