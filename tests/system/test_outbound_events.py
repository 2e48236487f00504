"""Outbound events through a real `celery worker` to a real receiver on loopback that
verifies every signature, answers 500 sometimes and hangs past the client's timeout sometimes:
every event arrives, each recipient's in order, and a duplicate only ever repeats an event id
(at-least-once). A worker killed with SIGKILL mid-delivery loses nothing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import pytest

from consent.models import Channel
from consent.services import dm_type_create, grant, withdraw
from outbound.models import Event, EventStatus
from outbound.tasks import deliver_events
from recipients.models import Category
from recipients.services import recipient_upsert
from tests.outbound.conftest import register
from tests.outbound.receiver import Faults, Receiver
from tests.personas import make_world
from tests.processes import Worker, wait_for

RECIPIENTS = 12


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    settings.MLM_OUTBOUND_ALLOW_PRIVATE = True
    found = Receiver(secrets=[]).start()
    try:
        yield found
    finally:
        found.stop()


def worker(tmp_path, name: str, **env: str) -> Worker:
    started = Worker(
        tmp_path / f"{name}.log",
        MLM_OUTBOUND_RETRY_BASE_MS="50",
        MLM_OUTBOUND_LEASE_SECONDS="3",
        **env,
    )
    started.wait_ready()
    return started


def make_events(receiver: Receiver) -> list[Event]:
    """Three consent events of each recipient (grant, withdrawal, grant again), interleaved."""
    world = make_world()
    register(world, receiver)
    news = dm_type_create(unit=world.unit, key="news", name="News", notice_text="N.", by=None)
    people = [
        recipient_upsert(
            unit=world.unit, email=f"p{i}@partner.org", category=Category.EXTERNAL, by=None
        )[0]
        for i in range(RECIPIENTS)
    ]
    for round_ in range(3):
        for person in people:
            if round_ == 1:
                withdraw(recipient=person, dm_types=[news], channel=Channel.PREFERENCE_CENTRE)
            else:
                grant(recipient=person, dm_types=[news], channel=Channel.ADMIN, evidence="Desk")
    return list(Event.objects.order_by("pk"))


def all_delivered(events: list[Event], workers: list[Worker]):
    def check() -> bool:
        return Event.objects.filter(status=EventStatus.DELIVERED).count() == len(events)

    logs = "\n".join(w.log()[-3000:] for w in workers)
    return check, f"not every event was delivered; worker logs:\n{logs}"


def assert_every_event_once_in_order(events: list[Event], receiver: Receiver) -> int:
    """Every event arrived; the first arrivals of each recipient are in the order of the
    changes; any repeat carries an id already received. Returns how many repeats."""
    assert receiver.refused == 0
    expected = {e.code: e for e in events}
    first: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    repeats = 0
    for got in receiver.received:
        assert got.event_id in expected, "an event id the outbox never had"
        assert got.payload == {**expected[got.event_id].payload}
        if got.event_id in seen:
            repeats += 1
            continue
        seen.add(got.event_id)
        first[got.recipient].append(got.event_id)
    assert seen == set(expected)
    for recipient, codes in first.items():
        assert codes == [e.code for e in events if e.recipient_key == recipient]
    return repeats


def test_every_event_arrives_in_order_through_500s_and_hangs(
    transactional_db, flushed_broker, receiver, tmp_path
):
    receiver.faults = Faults(error_rate=0.2, hang_rate=0.05, hang_seconds=2)
    running = worker(tmp_path, "worker", MLM_OUTBOUND_TIMEOUT_MS="300")
    try:
        events = make_events(receiver)  # each commit kicks a delivery
        assert len(events) == 3 * RECIPIENTS
        check, message = all_delivered(events, [running])
        wait_for(check, timeout=90, message=message)
    finally:
        running.stop()
    repeats = assert_every_event_once_in_order(events, receiver)
    assert receiver.requests > len(events)  # faults were met, and overcome
    assert repeats <= receiver.requests - len(events)


def test_a_worker_killed_mid_delivery_loses_nothing(
    transactional_db, flushed_broker, receiver, tmp_path
):
    receiver.faults = Faults(hang_all=True, hang_seconds=60)
    first = worker(tmp_path, "first", MLM_OUTBOUND_TIMEOUT_MS="30000")
    try:
        events = make_events(receiver)
        wait_for(lambda: receiver.requests > 0, message=first.log()[-3000:])
        first.kill_hard()  # with POSTs in flight and their events leased
    finally:
        first.stop()
    in_flight = {r.event_id for r in receiver.received}
    assert Event.objects.filter(status=EventStatus.DELIVERED).count() == 0
    receiver.heal()
    second = worker(tmp_path, "second", MLM_OUTBOUND_TIMEOUT_MS="2000")
    try:
        deliver_events.delay()  # what beat's sweep sends
        check, message = all_delivered(events, [second])
        wait_for(check, timeout=90, message=message)
    finally:
        second.stop()
    assert_every_event_once_in_order(events, receiver)
    # The events in flight when the worker died arrived twice, with the same id each time.
    again = [r.event_id for r in receiver.received[len(in_flight) :]]
    assert in_flight <= set(again)
