"""Celery entry points of the consent app."""

from __future__ import annotations

import logging
import smtplib

from celery import shared_task
from django.utils import timezone

from consent.mail import build_subscription_confirmation
from consent.models import SubscriptionRequest
from consent.public_services import subscription_requests_purge

log = logging.getLogger(__name__)


@shared_task(
    name="consent.tasks.send_subscription_confirmation",
    bind=True,
    max_retries=6,
    acks_late=True,
)
def send_subscription_confirmation(self, request_id: int) -> None:
    """Mail the confirmation link of a double opt-in request through the campaigns' backend."""
    subscription_request = (
        SubscriptionRequest.objects.select_related("unit")
        .filter(pk=request_id, confirmed_at__isnull=True, expires_at__gt=timezone.now())
        .first()
    )
    if subscription_request is None:
        log.info("subscription request %s gone, confirmed or expired: no mail", request_id)
        return
    message = build_subscription_confirmation(subscription_request=subscription_request)
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused:
        # Permanent: the relay refuses the address; the request will simply expire.
        # Logs name the request, never the address: a log cannot be erased (I9).
        log.warning("confirmation of request %s refused by the relay", subscription_request.code)
        return
    except smtplib.SMTPResponseException as error:
        if 400 <= error.smtp_code < 500:
            raise self.retry(exc=error, countdown=60 * 2**self.request.retries) from error
        log.warning(
            "confirmation of request %s refused (%s)", subscription_request.code, error.smtp_code
        )
        return
    except OSError as error:  # connection refused, timeouts: transient
        raise self.retry(exc=error, countdown=60 * 2**self.request.retries) from error
    log.info("confirmation of subscription request %s sent", subscription_request.code)


@shared_task(name="consent.tasks.purge_subscription_requests")
def purge_subscription_requests() -> int:
    """Delete expired double opt-in requests (hourly, from beat)."""
    deleted = subscription_requests_purge()
    if deleted:
        log.info("purged %s expired subscription requests", deleted)
    return deleted
