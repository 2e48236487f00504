"""Celery entry points of the core."""

from __future__ import annotations

import logging

from celery import shared_task
from django.contrib.auth import get_user_model

from mlm.mail.outbox import build_test_message
from mlm.models import SenderUnit
from mlm.services import heartbeat_record

log = logging.getLogger(__name__)

WORKER_HEARTBEAT = "worker"


@shared_task(name="mlm.tasks.health")
def health() -> str:
    """Prove that a worker consumes tasks and reaches the database."""
    heartbeat_record(name=WORKER_HEARTBEAT)
    return "ok"


@shared_task(name="mlm.tasks.send_test_mail")
def send_test_mail(unit_id: int, user_id: int) -> None:
    """Send the unit's test message to a member's own address."""
    unit = SenderUnit.objects.filter(pk=unit_id).first()
    user = get_user_model().objects.filter(pk=user_id).first()
    if unit is None or user is None or not user.email:
        log.warning(
            "test mail not sent: unit %s or user %s gone or without address", unit_id, user_id
        )
        return
    build_test_message(unit=unit, to=user.email).send()
    log.info("test mail for unit %s sent to %s", unit.slug, user.email)
