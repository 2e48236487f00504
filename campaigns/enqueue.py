"""Enqueue campaigns' Celery tasks by their registered names, once the transaction commits.

`campaigns.tasks` is the top layer: it imports the status machine and sending. Those never import
it back; what they must set going afterwards (the start of a campaign sent now, the batches of a
campaign that starts, resumes or has rows to send again, a test mail) they enqueue here by name.
Each name is the `name=` its task registers with, so a message queued before an upgrade still
finds its task after it.
"""

from __future__ import annotations

from celery import current_app
from django.conf import settings
from django.db import transaction

from mlm.queue import enqueue_on_commit

START = "campaigns.tasks.start_campaign"
SEND_BATCH = "campaigns.tasks.send_batch"
SEND_TEST = "campaigns.tasks.send_campaign_test"
START_DUE = "campaigns.tasks.start_due_campaigns"
RECOVER = "campaigns.tasks.recover_deliveries"
# The name it had when it lived in campaigns/breaker.py: messages already queued keep working.
BREAKER_MAIL = "campaigns.breaker.mail_breaker_pause"


def start_on_commit(*, campaign_id: int) -> None:
    """Start the campaign (snapshot, then its batches) in a worker once the transaction commits."""
    enqueue_on_commit(START, campaign_id)


def batches_fan_out(*, campaign_id: int, count: int | None = None) -> None:
    """Enqueue `count` (MLM_DISPATCH_PARALLEL) batch tasks of the campaign once the transaction
    commits: the fan-out of DESIGN §5; each batch queues the next one itself."""
    n = count or settings.MLM_DISPATCH_PARALLEL

    def fan_out() -> None:
        for _ in range(n):
            current_app.send_task(SEND_BATCH, (campaign_id,))

    transaction.on_commit(fan_out)


def test_mail_on_commit(*, campaign_id: int, user_id: int, recipient_code: str | None) -> None:
    """Send a campaign's [TEST] mail in a worker once the transaction commits."""
    enqueue_on_commit(SEND_TEST, campaign_id, user_id, recipient_code)


def breaker_mail_on_commit(*, campaign_id: int) -> None:
    """Mail the unit's administrators that the breaker paused the campaign, once the transaction
    commits (robust: a broker down must not undo the pause)."""
    enqueue_on_commit(BREAKER_MAIL, campaign_id, robust=True)
