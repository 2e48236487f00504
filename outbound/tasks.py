"""Celery entry points of outbound events: deliver what is due, kicked after each commit that
queues events and swept by beat; a run that leaves retries pending schedules the next one."""

from __future__ import annotations

import logging

import redis
from celery import shared_task
from django.conf import settings

from outbound.delivery import events_deliver_due, next_due_in

log = logging.getLogger(__name__)

# One follow-up run scheduled at a time, whatever the number of kicks (a Redis key with a TTL).
_SCHEDULED_KEY = "mlm:outbound:scheduled"


@shared_task(name="outbound.tasks.deliver_events", ignore_result=True)
def deliver_events() -> None:
    """Deliver the due outbox; if events remain pending, run again when the next is due."""
    sent = events_deliver_due()
    if sent:
        log.info("outbound: %d events sent", sent)
    wait = next_due_in()
    if wait is None:
        return
    wait = min(max(wait, 0.05), float(settings.MLM_OUTBOUND_SWEEP_SECONDS))
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    if client.set(_SCHEDULED_KEY, "1", nx=True, px=max(int(wait * 1000), 1)):
        deliver_events.apply_async(countdown=wait)
