"""Delivery of the outbox, run here as a worker's task would run it, to a real receiver on
loopback that verifies each signature."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from consent.models import Channel
from consent.services import dm_type_create, grant, withdraw
from outbound.delivery import events_claim, events_deliver_due
from outbound.models import Endpoint, Event, EventStatus
from outbound.services import endpoint_resume, endpoint_rotate_secret, endpoint_secrets
from recipients.models import Category
from recipients.services import recipient_upsert
from tests.outbound.conftest import register
from tests.outbound.receiver import Faults


@pytest.fixture
def queued(world, receiver, settings):
    """Three events of ria, in order, owed to an endpoint at the receiver."""
    settings.MLM_OUTBOUND_TIMEOUT_MS = 300
    endpoint = register(world, receiver)
    news = dm_type_create(unit=world.unit, key="news", name="News", notice_text="N.", by=None)
    ria, _ = recipient_upsert(
        unit=world.unit, email="ria@partner.org", category=Category.EXTERNAL, by=None
    )
    grant(recipient=ria, dm_types=[news], channel=Channel.ADMIN, evidence="Desk")
    withdraw(recipient=ria, dm_types=[news], channel=Channel.PREFERENCE_CENTRE)
    grant(recipient=ria, dm_types=[news], channel=Channel.ADMIN, evidence="Asked again")
    return endpoint, list(Event.objects.order_by("pk"))


def test_it_delivers_signed_events_the_receiver_verifies(queued, receiver):
    _, events = queued
    events_deliver_due()
    assert [r.event_id for r in receiver.received] == [e.code for e in events]
    assert receiver.refused == 0
    assert set(Event.objects.values_list("status", flat=True)) == {EventStatus.DELIVERED}


def test_a_recipients_later_event_waits_for_the_earlier_one(queued):
    """Order per recipient: only the oldest pending event of a recipient can be claimed."""
    _, events = queued
    [claimed] = events_claim(limit=10)
    assert claimed.code == events[0].code
    assert events_claim(limit=10) == []  # leased: the next one waits behind it


def test_a_500_is_retried_later_with_the_reason_and_no_personal_data(queued, receiver):
    _, events = queued
    receiver.faults = Faults(error_rate=1.0)
    before = timezone.now()
    events_deliver_due()
    first = Event.objects.get(pk=events[0].pk)
    assert (first.status, first.attempts, first.last_error) == ("pending", 1, "HTTP 500")
    assert first.next_attempt_at > before + timedelta(seconds=4)  # the first backoff, jittered
    assert len(receiver.received) == 1  # the others wait behind it
    assert Endpoint.objects.get().failing_since is not None


def test_a_hang_longer_than_the_timeout_is_a_failure_retried(queued, receiver):
    _, events = queued
    receiver.faults = Faults(hang_all=True, hang_seconds=5)
    events_deliver_due()
    assert Event.objects.get(pk=events[0].pk).last_error == "timed out"


def test_past_the_retry_window_an_event_fails_and_the_next_goes(queued, receiver, settings):
    _, events = queued
    Event.objects.filter(pk=events[0].pk).update(created_at=timezone.now() - timedelta(hours=25))
    receiver.faults = Faults(error_rate=1.0)
    events_deliver_due()
    assert Event.objects.get(pk=events[0].pk).status == EventStatus.FAILED
    # The failed one no longer holds the recipient's queue: the next was tried at once.
    assert [r.event_id for r in receiver.received] == [events[0].code, events[1].code]
    assert Event.objects.get(pk=events[1].pk).last_error == "HTTP 500"


def test_an_endpoint_failing_for_a_day_is_paused_and_resumes(queued, receiver, world):
    endpoint, events = queued
    Endpoint.objects.update(failing_since=timezone.now() - timedelta(hours=25))
    receiver.faults = Faults(error_rate=1.0)
    events_deliver_due()
    endpoint.refresh_from_db()
    assert not endpoint.is_active and "failed for 24 hours" in endpoint.paused_reason
    assert events_claim(limit=10) == []  # a paused endpoint gets nothing
    receiver.heal()
    assert endpoint_resume(endpoint=endpoint, by=world.alice)
    events_deliver_due()
    assert Event.objects.filter(status=EventStatus.DELIVERED).count() == len(events)


def test_after_a_rotation_both_secrets_sign_for_a_day(queued, receiver, world):
    endpoint, _ = queued
    old = receiver.secrets[0]
    new = endpoint_rotate_secret(endpoint=endpoint, by=world.alice)
    assert new != old and new.startswith("whsec_")
    endpoint.refresh_from_db()
    assert old not in endpoint.secret_encrypted and new not in endpoint.secret_encrypted
    assert endpoint_secrets(endpoint) == [new, old]
    later = timezone.now() + timedelta(hours=24, seconds=1)
    assert endpoint_secrets(endpoint, now=later) == [new]
    receiver.secrets[:] = [new]  # the receiver switched at once: the new signature verifies
    events_deliver_due()
    assert receiver.refused == 0 and len(receiver.received) == 3
