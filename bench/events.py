"""Outbound events: 10,000 events delivered by the outbox's delivery loop to a receiver on
loopback that verifies every signature.

Creates its own database (mlm_bench_events, next to DATABASE_URL's), migrates it, registers one
endpoint of one unit and queues BENCH_EVENTS events (default 10,000) through
`outbound.services.events_emit`: BENCH_EVENTS / 5 recipients with five events each, so that
the order per recipient is at work. The receiver (tests/outbound/receiver.py) runs in a
process of its own, verifies each Standard Webhooks signature and records each event id.

First the floor: the receiver alone, hit by a bare loop of signed POSTs from as many threads
over the same pooled client as the delivery uses (no database). Then the delivery, as the
Celery task runs it (`outbound.delivery.events_deliver_due`: claim with a lease, POST
concurrently, record), timed until every event is delivered. Afterwards the receiver's record
is compared with the outbox: an event never received is lost, one received twice a
duplicate. The database is dropped. Last line:
`events: <n> delivered in <s> s = <r> events/s, <lost> lost, <dup> duplicates`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _served import PYTHON, ROOT, drop_database, prepare

BENCH_DB = "mlm_bench_events"
EVENTS = int(os.environ.get("BENCH_EVENTS", "10000"))
PER_RECIPIENT = 5
FLOOR_POSTS = int(os.environ.get("BENCH_FLOOR_POSTS", "3000"))


def start_receiver(secret: str) -> tuple[subprocess.Popen, int]:
    receiver = subprocess.Popen(
        [PYTHON, "-m", "tests.outbound.receiver", secret],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    return receiver, int(receiver.stdout.readline())


def stop_receiver(receiver: subprocess.Popen) -> tuple[list[str], int]:
    receiver.terminate()
    out, _ = receiver.communicate(timeout=60)
    lines = [json.loads(line) for line in out.splitlines() if line]
    return [line["id"] for line in lines if "id" in line], lines[-1]["refused"]


def seed(url: str) -> tuple[str, list[str]]:
    """One unit, its endpoint at `url`, and the queued events; returns the secret and codes."""
    import django

    django.setup()
    from django.db import connection, transaction

    from campaigns.units import unit_create
    from outbound.models import Event, EventType
    from outbound.services import endpoint_create, events_emit

    with transaction.atomic():
        unit = unit_create(name="Bench", slug="bench", postal_address="1 Road", by=None)
        _, secret = endpoint_create(unit=unit, url=url, event_types=EventType.values, by=None)
        items = []
        for n in range(EVENTS):
            key = f"recipient-{n % (EVENTS // PER_RECIPIENT):06d}"
            data = {
                "recipient": {"code": key, "address": f"reader{n}@example.com"},
                "dm_type": {"code": "news", "key": "news", "name": "Newsletter"},
                "scope": "dm_type",
                "channel": "admin",
            }
            items.append((key, data))
        for start in range(0, len(items), 2000):
            events_emit(
                unit_id=unit.pk, type=EventType.CONSENT_GRANTED, items=items[start : start + 2000]
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return secret, list(Event.objects.values_list("code", flat=True))


def floor(url: str, secret: str) -> float:
    """Signed POSTs in a bare loop from the delivery's number of threads: the receiver's rate."""
    from django.conf import settings
    from django.utils import timezone

    from outbound import signing
    from outbound.delivery import _client

    body = json.dumps({"id": "floor", "type": "floor", "data": {"recipient": {"code": "f"}}})
    with _client() as client, ThreadPoolExecutor(settings.MLM_OUTBOUND_CONCURRENCY) as pool:

        def post(n: int) -> int:
            event_id = f"floor_{n}"
            payload = body.replace('"floor"', json.dumps(event_id), 1).encode()
            headers = signing.headers(
                secrets_=[secret], event_id=event_id, at=timezone.now(), body=payload
            )
            return client.post(url, content=payload, headers=headers).status_code

        started = time.perf_counter()
        codes = list(pool.map(post, range(FLOOR_POSTS)))
        elapsed = time.perf_counter() - started
    assert set(codes) == {200}, set(codes)
    return FLOOR_POSTS / elapsed


def main() -> None:
    _, env = prepare(BENCH_DB, "bench/events.py", MLM_OUTBOUND_ALLOW_PRIVATE="1")
    sys.path.insert(0, str(Path(ROOT)))
    receiver = None
    try:
        # The receiver needs the secret, the endpoint the receiver's port: a placeholder first.
        import django

        django.setup()
        secret, codes = seed("http://127.0.0.1:9/events")
        receiver, port = start_receiver(secret)
        url = f"http://127.0.0.1:{port}/events"
        from outbound.models import Endpoint, Event, EventStatus

        Endpoint.objects.update(url=url)
        rate_floor = floor(url, secret)
        print(f"floor: the receiver alone takes {rate_floor:.0f} signed POSTs/s", flush=True)

        from outbound.delivery import events_deliver_due

        started = time.perf_counter()
        while Event.objects.filter(status=EventStatus.PENDING).exists():
            events_deliver_due(budget_seconds=600)
        elapsed = time.perf_counter() - started
        delivered = Event.objects.filter(status=EventStatus.DELIVERED).count()
        received, refused = stop_receiver(receiver)
        receiver = None
        got = [r for r in received if not r.startswith("floor_")]
        lost = len(set(codes) - set(got))
        duplicates = len(got) - len(set(got))
        print(f"detail: {refused} signatures refused, load {os.getloadavg()[0]:.1f}")
        print(
            f"events: {delivered} delivered in {elapsed:.1f} s = {delivered / elapsed:.0f} "
            f"events/s, {lost} lost, {duplicates} duplicates"
        )
    finally:
        if receiver is not None:
            receiver.kill()
        from django.db import connections

        connections.close_all()
        drop_database(env, BENCH_DB)


if __name__ == "__main__":
    main()
