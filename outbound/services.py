"""Outbound events: endpoints a unit registers, and the outbox every change writes to.

The writers of the changes (consent.ledger, consent.services.suppress, campaigns.feedback_effects,
recipients.services.recipient_erase) call `events_emit` or `events_emit_sql` inside their own
transaction: the event exists if and only if the change does (the outbox pattern). A unit
without an endpoint for the type costs one EXISTS query and writes nothing.
"""

from __future__ import annotations

# The emit SQL is assembled from model table names; every value is a parameter.
# ruff: noqa: S608
import ipaddress
import json
import socket
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from mlm.inserts import table
from mlm.models import SenderUnit
from mlm.queue import enqueue_on_commit
from mlm.services import audit_record
from outbound import signing
from outbound.models import Endpoint, Event, EventStatus, EventType

if TYPE_CHECKING:  # outbound stands below recipients: it only names the type
    from recipients.models import Recipient

ROTATION_OVERLAP = timedelta(hours=24)
# The delivery task, enqueued by the name it registers with (outbound.tasks).
DELIVER_TASK = "outbound.tasks.deliver_events"

# --- the outbox -------------------------------------------------------------------------------


def emit_statement(source: str) -> str:
    """INSERT … SELECT that queues one event per row of `source` for every endpoint of its unit
    subscribed to its type, in the order of `ord` (the order a recipient's events must keep).

    `source` yields unit_id, type (text), recipient_key (text), data (jsonb), at (timestamptz)
    and ord. consent.ledger puts this in its one-click statement as a CTE.
    """
    return f"""
INSERT INTO {table(Event)} (code, unit_id, endpoint_id, type, recipient_key, payload, status,
                            attempts, next_attempt_at, last_error, created_at)
SELECT x.code, x.unit_id, x.endpoint_id, x.type, x.recipient_key,
       jsonb_build_object('id', x.code, 'type', x.type, 'timestamp',
                          to_char(x.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                          'data', x.data),
       '{EventStatus.PENDING.value}', 0, x.at, '', x.at
FROM (
    SELECT 'evt_' || replace(gen_random_uuid()::text, '-', '') AS code, s.unit_id, s.type,
           s.recipient_key, s.data, s.at, p.id AS endpoint_id
    FROM ({source}) s
    JOIN {table(Endpoint)} p ON p.unit_id = s.unit_id AND s.type = ANY(p.event_types)
    ORDER BY s.ord, p.id
) x
"""


def _has_endpoint(unit_id: int, type: EventType) -> bool:
    return Endpoint.objects.filter(unit_id=unit_id, event_types__contains=[type.value]).exists()


def events_emit(
    *, unit_id: int, type: EventType, items: Sequence[tuple[str, dict]], at=None
) -> int:
    """Queue an event of `type` for each (recipient key, data) of `items`, in that order, in
    the caller's transaction. Returns how many rows were queued (events times endpoints)."""
    if not items or not _has_endpoint(unit_id, type):
        return 0
    source = (
        "SELECT %s::bigint AS unit_id, %s::text AS type, k AS recipient_key, d AS data, "
        "%s::timestamptz AS at, n AS ord "
        "FROM unnest(%s::text[], %s::jsonb[]) WITH ORDINALITY AS u(k, d, n)"
    )
    params = [
        unit_id,
        type.value,
        at or timezone.now(),
        [key for key, _ in items],
        [json.dumps(data) for _, data in items],
    ]
    return _run(emit_statement(source), params)


def _run(sql: str, params: list) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        queued = cursor.rowcount
    if queued:
        events_kick()
    return queued


def events_kick() -> None:
    """Start delivering once the current transaction commits (nothing if it rolls back)."""
    enqueue_on_commit(DELIVER_TASK)


def events_emit_sql(*, unit_id: int, type: EventType, source: str, params: list) -> int:
    """Queue the events a SELECT yields (columns as `emit_statement` says), for bulk writers:
    one statement whatever the number. Nothing but one EXISTS without an endpoint."""
    if not _has_endpoint(unit_id, type):
        return 0
    return _run(emit_statement(source), params)


def recipient_events_emit(
    *, type: EventType, recipients: Iterable[tuple[Recipient, dict]], at=None
) -> int:
    """Queue an event of `type` about each recipient (their code and address, and the extra
    data given with them), grouped by unit. Returns how many rows were queued."""
    by_unit: dict[int, list[tuple[str, dict]]] = defaultdict(list)
    for recipient, extra in recipients:
        data = {"recipient": {"code": str(recipient.code), "address": recipient.email}, **extra}
        by_unit[recipient.unit_id].append((str(recipient.code), data))
    return sum(
        events_emit(unit_id=unit_id, type=type, items=items, at=at)
        for unit_id, items in by_unit.items()
    )


def events_redact(*, recipient_key: str) -> int:
    """Take the address out of every stored event about an erased person (I9); the events stay
    with the recipient's code. Returns how many were changed."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table(Event)} SET payload = payload #- '{{data,recipient,address}}' "
            "WHERE recipient_key = %s AND payload #> '{data,recipient}' ? 'address'",
            [recipient_key],
        )
        return cursor.rowcount


# --- endpoints --------------------------------------------------------------------------------


def _url_problem(url: str) -> str | None:
    """Why `url` may not receive events, or None: HTTPS to a public address only, unless
    MLM_OUTBOUND_ALLOW_PRIVATE (tests, a closed network)."""
    parts = urlsplit(url)
    allow_private = settings.MLM_OUTBOUND_ALLOW_PRIVATE
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "Enter an https:// URL."
    if parts.scheme != "https" and not allow_private:
        return "Endpoints must use https://: events carry personal data."
    if allow_private:
        return None
    try:
        port = parts.port or 443
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return f"The host {parts.hostname} does not resolve."
    for *_, address in found:
        if not ipaddress.ip_address(address[0].split("%")[0]).is_global:
            return (
                f"{parts.hostname} is a private, loopback or reserved address: endpoints must "
                "be reachable on the public internet."
            )
    return None


def _event_types(event_types: Sequence[str]) -> list[str]:
    chosen = [t for t in EventType.values if t in set(event_types)]
    if not chosen or len(chosen) != len(set(event_types)):
        raise ValidationError("Choose one or more of the event types offered.")
    return chosen


@transaction.atomic
def endpoint_create(
    *,
    unit: SenderUnit,
    url: str,
    description: str = "",
    event_types: Sequence[str],
    by: AbstractBaseUser | None,
) -> tuple[Endpoint, str]:
    """Register an endpoint; returns it and its secret, which is shown this once only."""
    if problem := _url_problem(url):
        raise ValidationError(problem)
    secret = signing.new_secret()
    endpoint = Endpoint.objects.create(
        unit=unit,
        url=url,
        description=description,
        event_types=_event_types(event_types),
        secret_encrypted=signing.encrypt_secret(secret),
    )
    audit_record(
        unit=unit,
        actor=by,
        verb="endpoint.create",
        obj=endpoint,
        data={"event_types": endpoint.event_types},
    )
    return endpoint, secret


@transaction.atomic
def endpoint_rotate_secret(*, endpoint: Endpoint, by: AbstractBaseUser | None) -> str:
    """Give an endpoint a new secret, shown this once; the old one keeps signing beside it
    for 24 hours so the receiver can switch without losing an event."""
    held = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
    secret = signing.new_secret()
    held.previous_secret_encrypted = held.secret_encrypted
    held.previous_secret_expires_at = timezone.now() + ROTATION_OVERLAP
    held.secret_encrypted = signing.encrypt_secret(secret)
    held.save(
        update_fields=[
            "secret_encrypted",
            "previous_secret_encrypted",
            "previous_secret_expires_at",
        ]
    )
    audit_record(unit=held.unit, actor=by, verb="endpoint.rotate", obj=held)
    return secret


def endpoint_secrets(endpoint: Endpoint, *, now=None) -> list[str]:
    """The secrets that sign now: the current one, and the previous one during its overlap."""
    found = [signing.decrypt_secret(endpoint.secret_encrypted)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted and expires and expires > (now or timezone.now()):
        found.append(signing.decrypt_secret(endpoint.previous_secret_encrypted))
    return found


@transaction.atomic
def endpoint_pause(*, endpoint: Endpoint, reason: str, by: AbstractBaseUser | None) -> bool:
    """Stop delivering to an endpoint (events keep queuing for it). False if already paused."""
    paused = Endpoint.objects.filter(pk=endpoint.pk, is_active=True).update(
        is_active=False, paused_reason=reason[:200]
    )
    if paused:
        audit_record(
            unit=endpoint.unit, actor=by, verb="endpoint.pause", obj=endpoint, data={"why": reason}
        )
    return bool(paused)


@transaction.atomic
def endpoint_resume(*, endpoint: Endpoint, by: AbstractBaseUser | None) -> bool:
    """Deliver to a paused endpoint again, its waiting events at once. False if it was active."""
    resumed = Endpoint.objects.filter(pk=endpoint.pk, is_active=False).update(
        is_active=True, paused_reason="", failing_since=None
    )
    if resumed:
        Event.objects.filter(endpoint=endpoint, status=EventStatus.PENDING).update(
            next_attempt_at=timezone.now()
        )
        audit_record(unit=endpoint.unit, actor=by, verb="endpoint.resume", obj=endpoint)
        events_kick()
    return bool(resumed)


@transaction.atomic
def endpoint_delete(*, endpoint: Endpoint, by: AbstractBaseUser | None) -> None:
    """Remove an endpoint and the events it was owed."""
    audit_record(unit=endpoint.unit, actor=by, verb="endpoint.delete", obj=endpoint)
    endpoint.delete()
