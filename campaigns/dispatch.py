"""Dispatch: the snapshot of a campaign's deliveries, the batches workers claim and send, and the
recovery of batches whose worker died (DESIGN §5, I1, I5, I6, I7).

- `campaign_start` moves a scheduled campaign to sending and writes its snapshot in ONE SQL
  statement (an INSERT … SELECT built from `consent.selectors.sendable`): `queued` where I1 holds
  now, else `skipped` with the reason. Then it enqueues the batch tasks, on commit.
- `batch_send` is what one batch task does: claim a few `queued` (or due `deferred`) rows with
  `FOR UPDATE SKIP LOCKED`, mark them `sending` with a lease, re-check `sendable` for all of them
  in one query (a withdrawal that arrived mid-campaign wins: I6), render, sign (not on an ESP's
  path: it signs), send over one connection of the unit's mail backend, and record `sent` (with
  the ESP's message id), `deferred` or `failed`. The claim is the idempotency: a task delivered
  twice claims other rows, or none, and never sends a row twice (I7).
- `deliveries_recover` (beat) marks `sending` rows whose lease ran out `in_doubt`: never re-sent
  unless an approver asks for it (`deliveries_send_in_doubt`).
"""

from __future__ import annotations

import functools
import logging
import smtplib
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.db import DatabaseError, connection, transaction
from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    IntegerField,
    Min,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django.utils.module_loading import import_string

from campaigns.mail import CampaignMessages, message_id_for
from campaigns.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    SkipReason,
    UnitCampaignSettings,
)
from campaigns.sandbox import RenderError
from campaigns.segments import campaign_segment_freeze
from campaigns.selectors import campaign_members, frequency_caps, skip_reason
from campaigns.services import (
    TransitionError,
    campaign_mark_sent,
    campaign_pause,
    campaign_start_sending,
    campaign_transition,
)
from consent.selectors import sendable
from mlm.db import queryset_sql
from mlm.mail.build import HeaderInjection
from mlm.models import Role, SenderUnit
from mlm.scoping import require_role

log = logging.getLogger(__name__)

D = DeliveryStatus
OPEN_STATUSES = (D.QUEUED, D.DEFERRED, D.SENDING)  # a campaign with none of these is done


# --- the snapshot (I1) ---------------------------------------------------------------------------


def _snapshot_select(campaign: Campaign) -> tuple[str, tuple, int, int]:
    """SELECT of every member of the campaign's lists with: may we mail them now (sendable, the
    one definition of I1), why not, and their mails within each frequency cap's window."""
    unit, dm_type, audience = campaign.unit, campaign.dm_type, campaign.audience
    allowed = sendable(unit=unit, dm_type=dm_type, audience=audience).filter(pk=OuterRef("pk"))
    why = skip_reason(campaign)
    caps = {cap.scope: cap for cap in frequency_caps(unit)}

    def recent(scope: str):
        cap = caps.get(scope)
        if cap is None:
            return Value(0, output_field=IntegerField())
        sent = Delivery.objects.filter(status=D.SENT, sent_at__gte=cap.since)
        if scope == "unit":
            sent = sent.filter(recipient=OuterRef("pk"))
        else:
            sent = sent.filter(email_hash=OuterRef("email_hash"))
        count = sent.order_by().values("email_hash").annotate(n=Count("id")).values("n")[:1]
        return Coalesce(Subquery(count, output_field=IntegerField()), 0)

    members = (
        campaign_members(campaign)
        .order_by()
        .annotate(
            m_ok=Exists(allowed),
            m_why=why,
            m_unit_recent=recent("unit"),
            m_inst_recent=recent("institution"),
        )
        .values_list("pk", "email_hash", "m_ok", "m_why", "m_unit_recent", "m_inst_recent")
    )
    sql, params = queryset_sql(members)
    unit_cap = caps["unit"].mails if "unit" in caps else 2**31 - 1
    inst_cap = caps["institution"].mails if "institution" in caps else 2**31 - 1
    return sql, (*params,), unit_cap, inst_cap


@transaction.atomic
def deliveries_snapshot(*, campaign: Campaign) -> int:
    """Write the campaign's delivery rows in one statement: `queued` where sendable now (I1),
    else `skipped` with the reason; rows that exist already are kept (unique per recipient).
    A segment is resolved here, once, from the copy kept as sending starts."""
    campaign_segment_freeze(campaign=campaign)
    select, params, unit_cap, inst_cap = _snapshot_select(campaign)
    table = Delivery._meta.db_table
    # Only our own table name is interpolated; values travel as parameters.
    # MATERIALIZED: each member's row is worked out once; inlined, PostgreSQL evaluated the
    # sendable test once for each CASE that reads `ok` (twice the work, bench/dispatch.py).
    sql = f"""
        WITH m (id, email_hash, ok, why, unit_recent, inst_recent) AS MATERIALIZED ({select})
        INSERT INTO {table} (campaign_id, unit_id, recipient_id, email_hash, status, reason,
                             message_id, provider_message_id, attempts, reply, created_at,
                             updated_at)
        SELECT %s, %s, m.id, m.email_hash,
               CASE WHEN m.ok AND m.unit_recent < %s AND m.inst_recent < %s
                    THEN %s ELSE %s END,
               CASE WHEN NOT m.ok THEN m.why
                    WHEN m.unit_recent >= %s THEN %s
                    WHEN m.inst_recent >= %s THEN %s
                    ELSE '' END,
               '', '', 0, '', %s, %s
        FROM m
        ON CONFLICT (campaign_id, recipient_id) DO NOTHING
    """  # noqa: S608
    now = timezone.now()
    values = [
        campaign.pk,
        campaign.unit_id,
        unit_cap,
        inst_cap,
        D.QUEUED.value,
        D.SKIPPED.value,
        unit_cap,
        SkipReason.UNIT_CAP.value,
        inst_cap,
        SkipReason.INSTITUTION_CAP.value,
        now,
        now,
    ]
    # The SELECT's placeholders come first now, then ours.
    with connection.cursor() as cursor:
        # The plan's cost passes PostgreSQL's JIT thresholds, and compiling it was most of the
        # snapshot's time (bench/dispatch.py): the wait before the first mail. Interpreted, the
        # statement itself takes no longer.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, [*params, *values])
        written = cursor.rowcount
    return written


@transaction.atomic
def campaign_start(*, campaign: Campaign, by: AbstractBaseUser | None = None) -> int:
    """Scheduled → sending with its snapshot, in one transaction; the batch tasks are enqueued
    on commit (a rollback enqueues nothing). Answers how many rows the snapshot wrote."""
    campaign_start_sending(campaign=campaign, by=by)
    written = deliveries_snapshot(campaign=campaign)
    queued = Delivery.objects.filter(campaign=campaign, status=D.QUEUED).count()
    log.info("campaign %s started: %s deliveries, %s queued", campaign.code, written, queued)
    if queued:
        campaign_kick_on_commit(campaign_id=campaign.pk)
    else:
        transaction.on_commit(lambda: campaign_finish_if_done(campaign_id=campaign.pk))
    return written


def campaign_kick_on_commit(*, campaign_id: int, count: int | None = None) -> None:
    """Enqueue `count` batch tasks of the campaign once the transaction commits."""
    from campaigns.tasks import send_batch

    n = count or settings.MLM_DISPATCH_PARALLEL

    def kick() -> None:
        for _ in range(n):
            send_batch.delay(campaign_id)

    transaction.on_commit(kick)


# --- batches (I6, I7) ----------------------------------------------------------------------------


@dataclass
class BatchResult:
    """What one batch did; `claimed` 0 means there was nothing to claim (or the campaign is not
    sending)."""

    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0
    retry_in: float | None = None  # nothing due now, but deferred rows are due in this many s
    finished: bool = False
    paused: bool = False
    errors: list[str] = field(default_factory=list)


@transaction.atomic
def batch_claim(*, campaign_id: int, size: int | None = None) -> list[int]:
    """Claim up to `size` due rows of a sending campaign: `sending`, leased, one more attempt.

    `FOR UPDATE SKIP LOCKED` lets any number of workers claim side by side without waiting; the
    UPDATE is conditional on the status, so a row is claimed by one batch only (I7).
    """
    campaign = Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.SENDING).first()
    if campaign is None:  # paused, cancelled, finished: take effect between batches
        return []
    now = timezone.now()
    ids = list(
        Delivery.objects.select_for_update(skip_locked=True)
        .filter(campaign_id=campaign_id, status__in=[D.QUEUED, D.DEFERRED])
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("id")
        .values_list("id", flat=True)[: size or settings.MLM_DISPATCH_BATCH_SIZE]
    )
    if not ids:
        return []
    updated = Delivery.objects.filter(pk__in=ids, status__in=[D.QUEUED, D.DEFERRED]).update(
        status=D.SENDING,
        lease_until=now + timedelta(seconds=settings.MLM_DISPATCH_LEASE_SECONDS),
        attempts=F("attempts") + 1,
        claimed_at=now,
        next_attempt_at=None,
        updated_at=now,
    )
    if updated != len(ids):  # cannot happen under the row locks; refuse rather than guess
        raise RuntimeError(f"claimed {updated} of {len(ids)} locked deliveries")
    return ids


def batch_recheck(*, campaign: Campaign, ids: list[int]) -> list[Delivery]:
    """The claimed rows whose recipient is still sendable, by ONE query on `sendable` (I1); the
    others become `skipped`, reason withdrawn during sending (I6)."""
    rows = list(
        Delivery.objects.filter(pk__in=ids, status=D.SENDING)
        .select_related("recipient")
        .order_by("id")
    )
    allowed = set(
        sendable(unit=campaign.unit, dm_type=campaign.dm_type, audience=campaign.audience)
        .filter(pk__in=[row.recipient_id for row in rows])
        .values_list("pk", flat=True)
    )
    refused = [row.pk for row in rows if row.recipient_id not in allowed]
    if refused:
        now = timezone.now()
        Delivery.objects.filter(pk__in=refused, status=D.SENDING).update(
            status=D.SKIPPED,
            reason=SkipReason.WITHDRAWN_DURING_SENDING,
            lease_until=None,
            finished_at=now,
            updated_at=now,
        )
    return [row for row in rows if row.recipient_id in allowed]


_messages_cache: OrderedDict[tuple[int, int, bool], CampaignMessages] = OrderedDict()


def campaign_messages(campaign: Campaign, backend_path: str | None = None) -> CampaignMessages:
    """The campaign's compiled messages for its unit's backend (signed or not), built once per
    worker process and campaign revision."""
    sign = _signs(backend_path or backend(campaign.unit))
    key = (campaign.pk, campaign.revision, sign)
    found = _messages_cache.get(key)
    if found is None:
        found = _messages_cache[key] = CampaignMessages(campaign, sign=sign)
        while len(_messages_cache) > 8:
            _messages_cache.popitem(last=False)
    return found


class BackendNotConfigured(ImproperlyConfigured):
    """A unit chose a mail backend that settings.MLM_MAIL_BACKENDS no longer offers."""


def backend(unit: SenderUnit | None = None) -> str:
    """The dotted path of the mail backend that sends `unit`'s campaigns: its choice among
    MLM_MAIL_BACKENDS (campaign settings), else the default EMAIL_BACKEND."""
    name = ""
    if unit is not None:
        name = (
            UnitCampaignSettings.objects.filter(unit_id=unit.pk)
            .values_list("mail_backend", flat=True)
            .first()
        ) or ""
    if not name:
        return settings.EMAIL_BACKEND
    try:
        return settings.MLM_MAIL_BACKENDS[name]
    except KeyError:
        # Not silently the default: the unit chose where its mail goes (an ESP, a relay).
        raise BackendNotConfigured(
            f"the unit's mail backend {name!r} is not in MLM_MAIL_BACKENDS"
        ) from None


@functools.lru_cache(maxsize=32)
def is_esp(backend_path: str) -> bool:
    """Whether the backend is one of anymail's ESPs: they take parts, build their own MIME and
    sign it, and answer with their own message id."""
    from anymail.backends.base import AnymailBaseBackend

    try:
        return issubclass(import_string(backend_path), AnymailBaseBackend)
    except ImportError:
        return backend_path.startswith("anymail.")


def _signs(backend_path: str) -> bool:
    # On ESP paths the ESP builds the MIME and signs; our signature would not travel anyway.
    return not is_esp(backend_path)


def provider_message_id(message: Any) -> str:
    """The id the ESP gave a sent message (anymail's `anymail_status`), or "" (SMTP, Outbox)."""
    status = getattr(message, "anymail_status", None)
    found = getattr(status, "message_id", None)
    if found is None:
        return ""
    if isinstance(found, set | frozenset | list | tuple):  # one per recipient: we send to one
        return ",".join(sorted(str(item) for item in found))[:255]
    return str(found)[:255]


TRANSIENT, PERMANENT = "transient", "permanent"


def classify(error: BaseException) -> tuple[str, str]:
    """(transient or permanent, the server's answer) of a send error: 4xx, timeouts and lost
    connections are transient (retried later); 5xx and refused content are permanent."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()), (550, b"recipient refused"))
        return _by_code(code, reply)
    if isinstance(error, smtplib.SMTPResponseException):
        return _by_code(error.smtp_code, error.smtp_error)
    if isinstance(error, RenderError | HeaderInjection | ValueError | UnicodeError):
        return PERMANENT, f"not built: {error}"
    try:
        from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
    except ImportError:  # pragma: no cover - anymail is a dependency
        AnymailAPIError = AnymailRecipientsRefused = ()
    if AnymailRecipientsRefused and isinstance(error, AnymailRecipientsRefused):
        return PERMANENT, str(error)[:500]
    if AnymailAPIError and isinstance(error, AnymailAPIError):
        status = getattr(error, "status_code", None)
        if status is not None and 400 <= status < 500 and status != 429:
            return PERMANENT, str(error)[:500]
        return TRANSIENT, str(error)[:500]
    if isinstance(error, smtplib.SMTPException | OSError | socket.timeout | TimeoutError):
        return TRANSIENT, f"{type(error).__name__}: {error}"[:500]
    return TRANSIENT, f"{type(error).__name__}: {error}"[:500]


def _by_code(code: int, reply: bytes | str) -> tuple[str, str]:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    answer = f"{code} {text}"[:500]
    return (TRANSIENT if 400 <= code < 500 else PERMANENT), answer


def _close(conn) -> None:
    try:
        conn.close()
    except Exception:
        if hasattr(conn, "connection"):
            conn.connection = None


def _throttle(unit_id: int, backend_path: str) -> None:
    buckets = []
    if settings.MLM_DISPATCH_UNIT_RATE:
        from mlm.mail.throttle import unit_key

        rate = settings.MLM_DISPATCH_UNIT_RATE
        buckets.append((unit_key(unit_id), rate, rate))
    if settings.MLM_DISPATCH_BACKEND_RATE:
        from mlm.mail.throttle import backend_key

        rate = settings.MLM_DISPATCH_BACKEND_RATE
        buckets.append((backend_key(backend_path), rate, rate))
    if buckets:
        from mlm.mail.throttle import throttle

        throttle().take(buckets, timeout=settings.MLM_DISPATCH_LEASE_SECONDS / 4)


def _hand_over(conn, message) -> None:
    """Hand one message to the backend, on the batch's one connection.

    Our prebuilt bytes go to Django's SMTP backend's open connection directly: its
    `send_messages` would parse both addresses again with the email package (1.1 ms a message,
    as much as building it, bench/dispatch.py) to arrive at the same two ASCII addresses, and,
    on a connection it had not opened itself, connect, EHLO and QUIT around every message.
    Anything else (non-ASCII addresses, anymail, the Outbox) takes the backend's own way.
    """
    if not isinstance(conn, SMTPBackend):
        conn.send_messages([message])
        return
    if conn.connection is None:
        conn.open()  # kept open for the batch: send_messages then leaves it open too
    built = getattr(message, "built", None)
    if built is not None and built.from_addr.isascii() and built.to_addr.isascii():
        conn.connection.sendmail(built.from_addr, [built.to_addr], built.raw)
    else:
        conn.send_messages([message])


def _send_one(conn, message, domain: str) -> None:
    limit = settings.MLM_DISPATCH_DOMAIN_CONCURRENCY
    if not limit:
        _hand_over(conn, message)
        return
    from mlm.mail.throttle import concurrency_limiter, domain_key

    with concurrency_limiter().slot(
        domain_key(domain),
        limit=limit,
        lease_seconds=settings.EMAIL_TIMEOUT + 30,
        timeout=settings.EMAIL_TIMEOUT,
    ):
        _hand_over(conn, message)


def batch_send(*, campaign_id: int) -> BatchResult:
    """Claim one batch of the campaign and send it (see the module docstring); the one service
    the batch task calls."""
    result = BatchResult()
    ids = batch_claim(campaign_id=campaign_id)
    if not ids:
        return _nothing_claimed(campaign_id, result)
    result.claimed = len(ids)
    campaign = Campaign.objects.select_related("unit", "dm_type", "identity", "layout").get(
        pk=campaign_id
    )
    rows = batch_recheck(campaign=campaign, ids=ids)
    result.skipped = len(ids) - len(rows)
    sent: list[int] = []
    provider_ids: dict[int, str] = {}  # delivery id -> the ESP's message id
    deferred: list[tuple[Delivery, str, bool]] = []  # (row, reply, attempt counted)
    failed: list[tuple[Delivery, str]] = []
    conn = None
    try:
        path = backend(campaign.unit)
        messages = campaign_messages(campaign, path)
        if rows:
            conn = get_connection(path, fail_silently=False)
    except RenderError as error:  # the template broke: permanent for every row
        failed = [(row, f"not built: {error}") for row in rows]
        rows = []
    except (ImproperlyConfigured, ImportError) as error:
        # No backend to hand mail to (not configured, its library or API key missing): like a
        # server nobody answers, the batch waits and no attempt is counted; failures in a row
        # pause the campaign.
        log.error("campaign %s: mail backend not usable: %s", campaign.code, error)
        reply = f"mail backend not usable: {type(error).__name__}: {error}"[:500]
        deferred = [(row, reply, False) for row in rows]
        rows = []
    on_connection = 0  # mails the server took or refused on the current connection
    for index, row in enumerate(rows):
        try:
            message = messages.build(row.recipient, delivery_id=row.pk)
        except (RenderError, HeaderInjection, ValueError) as error:
            failed.append((row, f"not built: {error}"[:500]))
            continue
        try:
            _throttle(campaign.unit_id, path)
            _send_one(conn, message, row.recipient.email.rpartition("@")[2].lower())
        except Exception as error:
            kind, reply = classify(error)
            if kind == PERMANENT:
                on_connection += 1
                failed.append((row, reply))
                continue
            fresh, on_connection = on_connection == 0, 0
            _close(conn)
            if fresh and _is_connect_error(error):
                # Nobody is answering: the rest of the batch waits too, and as nothing was
                # handed over, no attempt is counted.
                deferred.extend((other, reply, False) for other in rows[index:])
                break
            deferred.append((row, reply, True))
            continue
        on_connection += 1
        sent.append(row.pk)
        if found := provider_message_id(message):
            provider_ids[row.pk] = found
    if conn is not None:
        _close(conn)
    _record(campaign, sent=sent, deferred=deferred, failed=failed, provider_ids=provider_ids)
    result.sent, result.deferred = len(sent), len(deferred)
    result.failed = len(failed)
    result.errors = sorted({reply for _, reply, *_ in (*deferred, *failed)})[:5]
    result.paused = _count_failures(campaign, sent=len(sent), transient=len(deferred))
    return result


def _is_connect_error(error: BaseException) -> bool:
    """Refused, reset, timed out or hung up: on a fresh connection, nobody is taking mail."""
    answered = smtplib.SMTPResponseException | smtplib.SMTPRecipientsRefused  # a 4xx code
    return isinstance(error, OSError | TimeoutError) and not isinstance(error, answered)


@transaction.atomic
def _record(
    campaign: Campaign,
    *,
    sent: list[int],
    deferred: list[tuple[Delivery, str, bool]],
    failed: list[tuple[Delivery, str]],
    provider_ids: dict[int, str] | None = None,
) -> None:
    """Write the batch's outcomes; each UPDATE only touches rows still `sending` (a row whose
    lease ran out meanwhile stays `in_doubt`: it may or may not have gone out)."""
    now = timezone.now()
    domain = campaign.identity.email.rpartition("@")[2].lower()
    if sent:
        extra = {}
        if provider_ids:  # the ESP's ids, which its tracking events name
            extra["provider_message_id"] = Case(
                *(When(pk=pk, then=Value(found)) for pk, found in provider_ids.items()),
                default=Value(""),
                output_field=CharField(),
            )
        Delivery.objects.filter(pk__in=sent, status=D.SENDING).update(
            status=D.SENT,
            sent_at=now,
            finished_at=now,
            lease_until=None,
            reply="",
            updated_at=now,
            # The Message-ID is the delivery's own (message_id_for): one UPDATE writes them all.
            message_id=_message_id_sql(campaign, domain),
            **extra,
        )
    for row, reply in failed:
        Delivery.objects.filter(pk=row.pk, status=D.SENDING).update(
            status=D.FAILED, reply=reply, finished_at=now, lease_until=None, updated_at=now
        )
    limit = settings.MLM_DISPATCH_MAX_ATTEMPTS
    for row, reply, counted in deferred:
        attempts = row.attempts if counted else row.attempts - 1  # the claim counted one
        if counted and attempts >= limit:
            Delivery.objects.filter(pk=row.pk, status=D.SENDING).update(
                status=D.FAILED, reply=reply, finished_at=now, lease_until=None, updated_at=now
            )
            continue
        delay = settings.MLM_DISPATCH_RETRY_SECONDS * 2 ** max(attempts - 1, 0)
        Delivery.objects.filter(pk=row.pk, status=D.SENDING).update(
            status=D.DEFERRED,
            reply=reply,
            attempts=Greatest(F("attempts") - (0 if counted else 1), 0),
            next_attempt_at=now + timedelta(seconds=delay),
            lease_until=None,
            updated_at=now,
        )


def _message_id_sql(campaign: Campaign, domain: str):
    from django.db.models.functions import Cast, Concat

    return Concat(
        Value("<"),
        Cast("id", output_field=CharField()),
        Value(f".{campaign.code.hex[:16]}@{domain}>"),
        output_field=CharField(),
    )


def _count_failures(campaign: Campaign, *, sent: int, transient: int) -> bool:
    """Count transient failures in a row; past the limit the campaign pauses itself. Answers
    whether it paused now."""
    if sent:
        Campaign.objects.filter(pk=campaign.pk, consecutive_failures__gt=0).update(
            consecutive_failures=0
        )
    if not transient or sent:
        return False
    Campaign.objects.filter(pk=campaign.pk).update(
        consecutive_failures=F("consecutive_failures") + transient
    )
    limit = settings.MLM_DISPATCH_PAUSE_AFTER_FAILURES
    failures = Campaign.objects.filter(pk=campaign.pk).values_list(
        "consecutive_failures", flat=True
    )[0]
    if not limit or failures < limit:
        return False
    try:
        campaign_pause(
            campaign=campaign,
            by=None,
            reason=f"{failures} sending failures in a row; the last: see the failed deliveries",
        )
    except TransitionError:
        return False
    Campaign.objects.filter(pk=campaign.pk).update(consecutive_failures=0)
    log.warning("campaign %s paused itself after %s failures in a row", campaign.code, failures)
    return True


def _nothing_claimed(campaign_id: int, result: BatchResult) -> BatchResult:
    """No row was due: finish the campaign if nothing is left, else say when deferred rows are
    due (the task comes back then)."""
    if campaign_finish_if_done(campaign_id=campaign_id):
        result.finished = True
        return result
    status = Campaign.objects.filter(pk=campaign_id).values_list("status", flat=True).first()
    if status != CampaignStatus.SENDING:
        return result
    due = Delivery.objects.filter(campaign_id=campaign_id, status=D.DEFERRED).aggregate(
        at=Min("next_attempt_at")
    )["at"]
    if due is not None:
        result.retry_in = max((due - timezone.now()).total_seconds(), 0.0) + 0.05
    return result


def campaign_finish_if_done(*, campaign_id: int) -> bool:
    """Sending → sent when no delivery is queued, deferred or being sent (in-doubt rows wait for
    a person). Answers whether this call finished it."""
    if Delivery.objects.filter(campaign_id=campaign_id, status__in=OPEN_STATUSES).exists():
        return False
    campaign = Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.SENDING).first()
    if campaign is None:
        return False
    try:
        campaign_mark_sent(campaign=campaign)
    except TransitionError:  # another worker finished it, or someone paused it just now
        return False
    log.info("campaign %s sent", campaign.code)
    return True


# --- recovery (I7) and schedule ------------------------------------------------------------------


@transaction.atomic
def deliveries_recover(*, now=None) -> int:
    """Rows left `sending` past their lease (their worker died) become `in_doubt`: they may have
    gone out, so they are never re-sent without a person's decision (I7). Then stalled campaigns
    get their batch tasks again (lost broker messages) and finished ones are marked sent."""
    now = now or timezone.now()
    lost = Delivery.objects.filter(status=D.SENDING, lease_until__lt=now).update(
        status=D.IN_DOUBT, lease_until=None, finished_at=now, updated_at=now
    )
    if lost:
        log.warning("%s deliveries in doubt: their worker's lease ran out", lost)
    sending = Campaign.objects.filter(status=CampaignStatus.SENDING).values_list("pk", flat=True)
    for campaign_id in sending:
        rows = Delivery.objects.filter(campaign_id=campaign_id)
        if not rows.filter(status__in=OPEN_STATUSES).exists():
            transaction.on_commit(lambda cid=campaign_id: campaign_finish_if_done(campaign_id=cid))
        elif (
            not rows.filter(status=D.SENDING).exists()
            and rows.filter(
                Q(status=D.QUEUED)
                | Q(status=D.DEFERRED, next_attempt_at__lte=now + timedelta(seconds=1))
            ).exists()
        ):
            campaign_kick_on_commit(campaign_id=campaign_id)
    return lost


def campaigns_start_due(
    *, now=None, on_error: Callable[[int, DatabaseError], None] | None = None
) -> list[int]:
    """Start every scheduled campaign whose time has come, also those whose time passed while
    the system was down; each in its own transaction. Answers their ids. With `on_error`, a
    campaign whose start fails at the database is handed to it and the others still start."""
    from campaigns.selectors import campaigns_due

    started = []
    for campaign in campaigns_due(now).select_related("unit", "dm_type"):
        try:
            campaign_start(campaign=campaign, by=None)
        except TransitionError:  # another beat or a person got there first
            continue
        except DatabaseError as error:
            if on_error is None:
                raise
            on_error(campaign.pk, error)
            continue
        started.append(campaign.pk)
    return started


@transaction.atomic
def deliveries_send_in_doubt(*, campaign: Campaign, by: AbstractBaseUser) -> int:
    """An approver's decision to send the campaign's in-doubt rows once more (they may get the
    mail twice); audited, then queued like any other row."""
    require_role(campaign.unit, by, Role.APPROVER)
    now = timezone.now()
    count = Delivery.objects.filter(campaign=campaign, status=D.IN_DOUBT).update(
        status=D.QUEUED, finished_at=None, updated_at=now, reply="sent again by a person"
    )
    if not count:
        return 0
    campaign.refresh_from_db()
    if campaign.status == CampaignStatus.SENT:
        campaign_transition(campaign=campaign, action="redispatch", by=by, data={"rows": count})
    else:
        from mlm.services import audit_record

        audit_record(
            unit=campaign.unit,
            actor=by,
            verb="campaign.send_in_doubt",
            obj=campaign,
            data={"rows": count},
        )
    if campaign.status == CampaignStatus.SENDING:
        campaign_kick_on_commit(campaign_id=campaign.pk)
    return count


@dataclass(frozen=True)
class Progress:
    """Counts of a campaign's deliveries by status, and the recent sending rate."""

    queued: int = 0
    sending: int = 0
    sent: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0
    in_doubt: int = 0
    rate: float = 0.0  # messages a second over the last minute

    @property
    def total(self) -> int:
        return (
            self.queued
            + self.sending
            + self.sent
            + self.skipped
            + self.deferred
            + self.failed
            + self.in_doubt
        )

    def percent(self, name: str) -> float:
        return round(100 * getattr(self, name) / self.total, 1) if self.total else 0.0

    @property
    def done_percent(self) -> float:
        if not self.total:
            return 0.0
        done = self.sent + self.skipped + self.failed + self.in_doubt
        return round(100 * done / self.total, 1)


def campaign_progress(campaign: Campaign) -> Progress:
    """How far the campaign's sending is (one query for counts, one for the rate)."""
    counts = dict(
        Delivery.objects.filter(campaign=campaign)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    since = timezone.now() - timedelta(seconds=60)
    recent = Delivery.objects.filter(campaign=campaign, status=D.SENT, sent_at__gte=since).count()
    return Progress(
        queued=counts.get(D.QUEUED, 0),
        sending=counts.get(D.SENDING, 0),
        sent=counts.get(D.SENT, 0),
        skipped=counts.get(D.SKIPPED, 0),
        deferred=counts.get(D.DEFERRED, 0),
        failed=counts.get(D.FAILED, 0),
        in_doubt=counts.get(D.IN_DOUBT, 0),
        rate=round(recent / 60, 1),
    )


__all__ = [
    "BatchResult",
    "Progress",
    "batch_claim",
    "batch_recheck",
    "batch_send",
    "campaign_finish_if_done",
    "campaign_progress",
    "campaign_start",
    "campaigns_start_due",
    "classify",
    "deliveries_recover",
    "deliveries_send_in_doubt",
    "deliveries_snapshot",
    "message_id_for",
]
