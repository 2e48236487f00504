"""Celery entry points of campaigns: test mails, sending's start, batches and recovery, and the
circuit breaker's mail.

Tasks take ids (JSON), call one service, and classify errors: a lost database or broker is
transient (retried with backoff); everything about a single mail is decided inside the service
and recorded on its delivery row, never retried blindly here. A start or a batch that fails is
written on its campaign (error, attempt, next attempt), so its page never looks merely waiting.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone

from campaigns import enqueue
from campaigns.breaker import build_breaker_mail
from campaigns.mail import CampaignMailer
from campaigns.models import Campaign
from campaigns.sandbox import RenderError
from campaigns.selectors import deferred_due
from campaigns.sending import batches, recovery, start
from campaigns.services.status import (
    TransitionError,
    campaign_clear_send_error,
    campaign_record_send_error,
)
from recipients.models import Recipient

log = logging.getLogger(__name__)


@shared_task(name=enqueue.SEND_TEST)
def send_campaign_test(campaign_id: int, user_id: int, recipient_code: str | None = None) -> None:
    """Send a campaign's [TEST] mail to an editor's own address (no delivery row, not counted)."""
    campaign = (
        Campaign.objects.select_related("unit", "dm_type", "identity", "layout")
        .filter(pk=campaign_id)
        .first()
    )
    user = get_user_model().objects.filter(pk=user_id).first()
    if campaign is None or user is None or not user.email:
        log.warning("campaign test not sent: campaign %s or user %s gone", campaign_id, user_id)
        return
    recipient = None
    if recipient_code:
        recipient = Recipient.objects.for_unit(campaign.unit).filter(code=recipient_code).first()
    try:
        mail = CampaignMailer(campaign).build_test(to=user.email, recipient=recipient)
    except RenderError as error:  # permanent: the template is wrong, retrying will not help
        log.warning("campaign test of %s not sent: %s", campaign.code, error)
        return
    mail.message.send()
    log.info("campaign test of %s sent to %s", campaign.code, user.email)


# Sending ----------------------------------------------------------------------------------------

# PostgreSQL or Redis gone for a moment (a restart): retry with exponential backoff, never give up
# for good while the campaign still has rows (beat's recovery fans its batches out again anyway).
_TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError)
_RETRY = {
    "autoretry_for": _TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 30,
}
# The start and the batches retry the same way, but by hand: each failure is written on the
# campaign first, so its page says that sending fails, why, and when it is tried again (I10).
_RETRY_BY_HAND = {"max_retries": _RETRY["max_retries"]}


def _record(campaign_id: int, error: BaseException | str, **when) -> None:
    try:
        campaign_record_send_error(campaign_id=campaign_id, error=error, **when)
    except _TRANSIENT as lost:  # the database is what fails: the log is all that is left
        log.warning("campaign %s: error not recorded (%s)", campaign_id, type(lost).__name__)


def _retry_later(task, campaign_id: int, error: Exception) -> Exception:
    """Record the failed attempt on the campaign and retry with backoff; past the last retry,
    record that no attempt is planned and fail for good."""
    retries = task.request.retries or 0
    attempt = retries + 1
    if retries >= task.max_retries:
        log.error("campaign %s: sending gave up after %s attempts: %r", campaign_id, attempt, error)
        _record(campaign_id, error, attempt=attempt, next_attempt_at=None)
        return error
    # At least a second: full jitter may draw 0, and a retry at once would meet the same fault.
    countdown = max(
        1,
        get_exponential_backoff_interval(
            factor=_RETRY["retry_backoff"],
            retries=retries,
            maximum=_RETRY["retry_backoff_max"],
            full_jitter=_RETRY["retry_jitter"],
        ),
    )
    next_attempt_at = timezone.now() + timedelta(seconds=countdown)
    log.warning(
        "campaign %s: attempt %s failed, again in %s s: %r", campaign_id, attempt, countdown, error
    )
    _record(campaign_id, error, attempt=attempt, next_attempt_at=next_attempt_at)
    return task.retry(exc=error, countdown=countdown)


@shared_task(
    name=enqueue.SEND_BATCH,
    bind=True,
    time_limit=max(settings.MLM_DISPATCH_LEASE_SECONDS - 10, 5),
    soft_time_limit=max(settings.MLM_DISPATCH_LEASE_SECONDS - 20, 4),
    **_RETRY_BY_HAND,
)
def send_batch(self, campaign_id: int) -> dict:
    """Claim and send one batch of the campaign, then queue the next one (or come back when
    deferred rows are due). Delivered twice, it claims other rows or none: nothing goes twice."""
    try:
        result = batches.batch_send(campaign_id=campaign_id)
    except _TRANSIENT as error:
        raise _retry_later(self, campaign_id, error) from None
    if result.sent or result.finished:
        campaign_clear_send_error(campaign_id=campaign_id)
    elif result.deferred:
        # Nothing went out and the mail server or ESP said "later": say so on the campaign, and
        # that nothing is tried again if that many failures paused it.
        _record(
            campaign_id,
            result.errors[0] if result.errors else "mail deferred",
            next_attempt_at=None if result.paused else deferred_due(campaign_id),
        )
    if result.claimed:
        send_batch.delay(campaign_id)
        log.info(
            "campaign %s batch: %s sent, %s skipped, %s deferred, %s failed%s",
            campaign_id,
            result.sent,
            result.skipped,
            result.deferred,
            result.failed,
            f" ({'; '.join(result.errors)})" if result.errors else "",
        )
    elif result.retry_in is not None:
        send_batch.apply_async((campaign_id,), countdown=result.retry_in)
    return {"claimed": result.claimed, "sent": result.sent, "finished": result.finished}


@shared_task(name=enqueue.START, bind=True, **_RETRY_BY_HAND)
def campaign_start(self, campaign_id: int) -> None:
    """Start a campaign sent "now": the snapshot and the first batches."""
    try:
        campaign = Campaign.objects.select_related("unit", "dm_type").filter(pk=campaign_id).first()
        if campaign is None:
            return
        try:
            start.campaign_start(campaign=campaign, by=None)
        except TransitionError as error:  # cancelled or reopened meanwhile, or already started
            log.info("campaign %s not started: %s", campaign.code, error)
            return
    except _TRANSIENT as error:
        raise _retry_later(self, campaign_id, error) from None
    campaign_clear_send_error(campaign_id=campaign_id)


def _start_failed_at_sweep(campaign_id: int, error: DatabaseError) -> None:
    log.warning("campaign %s: start failed, again at the next sweep: %r", campaign_id, error)
    next_sweep = timezone.now() + timedelta(seconds=settings.MLM_DISPATCH_SWEEP_SECONDS)
    _record(campaign_id, error, next_attempt_at=next_sweep)


@shared_task(name=enqueue.START_DUE, **_RETRY)
def campaigns_start_due() -> list[int]:
    """Beat: start scheduled campaigns whose time has come (or passed while we were down); one
    that fails is written on its page and tried again at the next sweep, the others start."""
    started = start.campaigns_start_due(on_error=_start_failed_at_sweep)
    for campaign_id in started:
        campaign_clear_send_error(campaign_id=campaign_id)
    return started


@shared_task(name=enqueue.RECOVER, **_RETRY)
def recover_deliveries() -> int:
    """Beat: rows whose lease ran out become in doubt; stalled campaigns get batches again."""
    return recovery.deliveries_recover()


@shared_task(name=enqueue.BREAKER_MAIL, bind=True, max_retries=6)
def mail_breaker_pause(self, campaign_id: int) -> None:
    """Mail the unit's administrators that the breaker paused a campaign (default backend)."""
    campaign = Campaign.objects.select_related("unit").filter(pk=campaign_id).first()
    message = build_breaker_mail(campaign) if campaign is not None else None
    if message is None:
        log.warning("breaker pause of campaign %s: no administrator to tell", campaign_id)
        return
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused:
        log.warning("breaker mail for campaign %s: the relay refused the addresses", campaign_id)
    except smtplib.SMTPResponseException as error:
        if 400 <= error.smtp_code < 500:
            raise self.retry(exc=error, countdown=60 * 2**self.request.retries) from error
        log.warning("breaker mail for campaign %s refused (%s)", campaign_id, error.smtp_code)
    except OSError as error:  # connection refused, timeouts: transient
        raise self.retry(exc=error, countdown=60 * 2**self.request.retries) from error
