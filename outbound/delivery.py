"""Deliver the outbox: claim due events, POST them signed, record what each answer means.

A claim is one UPDATE over rows locked FOR UPDATE SKIP LOCKED, setting a lease: workers share
the outbox, and the events of a worker that dies are claimed again when its lease runs out —
nothing is lost, a receiver may see an event twice, always with the same id (at-least-once).
An event waits while an earlier event of the same recipient for the same endpoint is still
pending, so each recipient's events arrive in order; different recipients go concurrently.
"""

from __future__ import annotations

# The claim SQL is assembled from model table names; every value is a parameter.
# ruff: noqa: S608
import json
import logging
import random
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from mlm.inserts import table
from outbound import signing
from outbound.models import Endpoint, Event, EventStatus
from outbound.services import endpoint_pause, endpoint_secrets

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=1)

_CLAIM = """
UPDATE {event} SET leased_until = %(lease)s, attempts = attempts + 1
WHERE id IN (
    SELECT e.id FROM {event} e
    JOIN {endpoint} p ON p.id = e.endpoint_id AND p.is_active
    WHERE e.status = 'pending' AND e.next_attempt_at <= %(now)s
      AND (e.leased_until IS NULL OR e.leased_until < %(now)s)
      AND NOT EXISTS (
          SELECT 1 FROM {event} b
          WHERE b.endpoint_id = e.endpoint_id AND b.recipient_key = e.recipient_key
            AND b.status = 'pending' AND b.id < e.id
      )
    ORDER BY e.id LIMIT %(limit)s
    FOR UPDATE OF e SKIP LOCKED
)
RETURNING id, code, endpoint_id, payload, created_at, attempts
"""


@dataclass(frozen=True)
class Claimed:
    id: int
    code: str
    endpoint_id: int
    payload: dict
    created_at: datetime
    attempts: int


@dataclass(frozen=True)
class Outcome:
    claimed: Claimed
    error: str  # empty: delivered


def events_claim(*, limit: int, now: datetime | None = None) -> list[Claimed]:
    """Lease up to `limit` due events, at most one per (endpoint, recipient), oldest first."""
    now = now or timezone.now()
    lease = now + timedelta(seconds=settings.MLM_OUTBOUND_LEASE_SECONDS)
    sql = _CLAIM.format(event=table(Event), endpoint=table(Endpoint))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, {"now": now, "lease": lease, "limit": limit})
        rows = cursor.fetchall()
    return sorted(
        (
            Claimed(i, c, p, json.loads(d) if isinstance(d, str) else d, t, n)
            for i, c, p, d, t, n in rows
        ),
        key=lambda c: c.id,
    )


def _post(client: httpx.Client, url: str, secrets_: list[str], claimed: Claimed) -> Outcome:
    """POST one event; the error is what the page may show (never the body: it is theirs)."""
    body = json.dumps(claimed.payload, separators=(",", ":")).encode()
    headers = signing.headers(
        secrets_=secrets_, event_id=claimed.code, at=timezone.now(), body=body
    )
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        return Outcome(claimed, "timed out")
    except httpx.HTTPError as error:
        return Outcome(claimed, f"connection failed ({type(error).__name__})")
    if 200 <= response.status_code < 300:
        return Outcome(claimed, "")
    return Outcome(claimed, f"HTTP {response.status_code}")


def backoff(attempts: int) -> timedelta:
    """How long after its `attempts`-th failure an event is tried again: doubling, with jitter."""
    base = timedelta(milliseconds=settings.MLM_OUTBOUND_RETRY_BASE_MS) * 2 ** min(attempts - 1, 20)
    return min(base, MAX_BACKOFF) * random.uniform(0.5, 1.5)


def _record(outcomes: list[Outcome]) -> None:
    """Write the outcomes: delivered; or retried later; or, 24 h after the event, failed."""
    now = timezone.now()
    give_up = now - timedelta(hours=settings.MLM_OUTBOUND_RETRY_HOURS)
    delivered = [o.claimed.id for o in outcomes if not o.error]
    retry, failed = [], []
    for o in outcomes:
        if not o.error:
            continue
        if o.claimed.created_at <= give_up:
            failed.append((o.error, o.claimed.id))
        else:
            retry.append((o.error, now + backoff(o.claimed.attempts), o.claimed.id))
    with transaction.atomic(), connection.cursor() as cursor:
        if delivered:
            Event.objects.filter(pk__in=delivered, status=EventStatus.PENDING).update(
                status=EventStatus.DELIVERED, delivered_at=now, leased_until=None, last_error=""
            )
        if retry:
            cursor.executemany(
                f"UPDATE {table(Event)} SET last_error = %s, next_attempt_at = %s, "
                "leased_until = NULL WHERE id = %s AND status = 'pending'",
                retry,
            )
        if failed:
            cursor.executemany(
                f"UPDATE {table(Event)} SET last_error = %s, status = 'failed', "
                "leased_until = NULL WHERE id = %s AND status = 'pending'",
                failed,
            )
        _endpoint_health(outcomes, now)


def _endpoint_health(outcomes: list[Outcome], now: datetime) -> None:
    """An endpoint that answered is healthy; one failing for MLM_OUTBOUND_PAUSE_HOURS is paused."""
    by_endpoint: dict[int, list[bool]] = defaultdict(list)
    for o in outcomes:
        by_endpoint[o.claimed.endpoint_id].append(not o.error)
    healthy = [pk for pk, results in by_endpoint.items() if any(results)]
    failing = [pk for pk, results in by_endpoint.items() if not any(results)]
    Endpoint.objects.filter(pk__in=healthy, failing_since__isnull=False).update(failing_since=None)
    Endpoint.objects.filter(pk__in=failing, failing_since__isnull=True).update(failing_since=now)
    limit = now - timedelta(hours=settings.MLM_OUTBOUND_PAUSE_HOURS)
    for endpoint in Endpoint.objects.filter(
        pk__in=failing, is_active=True, failing_since__lte=limit
    ).select_related("unit"):
        endpoint_pause(
            endpoint=endpoint,
            reason=f"Every delivery failed for {settings.MLM_OUTBOUND_PAUSE_HOURS} hours.",
            by=None,
        )


def _client() -> httpx.Client:
    timeout = settings.MLM_OUTBOUND_TIMEOUT_MS / 1000
    size = settings.MLM_OUTBOUND_CONCURRENCY
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
        follow_redirects=False,
    )


def events_deliver_due(*, budget_seconds: float = 60.0) -> int:
    """Deliver due events batch after batch until none is due or the budget is spent; returns
    how many were sent (delivered or not). One batch is in flight while the one before is
    recorded and the next claimed, so the database round trips do not stall the POSTs."""
    size = settings.MLM_OUTBOUND_CONCURRENCY
    started = timezone.now()
    sent = 0
    in_flight: list[Future[Outcome]] = []
    with _client() as client, ThreadPoolExecutor(max_workers=size) as pool:
        while (timezone.now() - started).total_seconds() < budget_seconds:
            batch = events_claim(limit=size * 4)
            if not batch and not in_flight:
                break
            if batch:
                endpoints = Endpoint.objects.in_bulk({c.endpoint_id for c in batch})
                secrets_ = {pk: endpoint_secrets(e) for pk, e in endpoints.items()}
                posting = [
                    pool.submit(
                        _post, client, endpoints[c.endpoint_id].url, secrets_[c.endpoint_id], c
                    )
                    for c in batch
                ]
            else:
                posting = []
            if in_flight:
                _record([f.result() for f in in_flight])
            in_flight = posting
            sent += len(batch)
        if in_flight:
            _record([f.result() for f in in_flight])
    return sent


def next_due_in(*, now: datetime | None = None) -> float | None:
    """Seconds until the next pending event of an active endpoint is due (its retry time, or
    the end of another worker's lease); None if nothing is pending."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(GREATEST(e.next_attempt_at, COALESCE(e.leased_until, e.next_attempt_at))) "
            f"FROM {table(Event)} e JOIN {table(Endpoint)} p ON p.id = e.endpoint_id "
            "AND p.is_active WHERE e.status = 'pending'"
        )
        (earliest,) = cursor.fetchone()
    if earliest is None:
        return None
    return max((earliest - now).total_seconds(), 0.0)
