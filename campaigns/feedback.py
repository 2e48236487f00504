"""Feedback from mail providers: what tracking webhooks and bounce messages say happened.

Every source — anymail's tracking signal for each ESP, `process_bounces` reading delivery status
notifications — turns what it received into `Feedback` values and hands them, in bulk, to
`feedback_record`, which stores each as a `DeliveryEvent` (once, however often it arrives),
finds its delivery and applies its effect (suppression, withdrawal, the circuit breaker:
`campaigns.feedback_effects`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from campaigns.feedback_effects import ACTING, effects_apply
from campaigns.models import BounceKind, Delivery, DeliveryEvent, EventKind
from mlm.db import server_binding_cursor
from recipients.addresses import InvalidAddress, address_hash, normalise_address


@dataclass(frozen=True)
class Feedback:
    """One event as a source reports it, before it is matched to a delivery."""

    source: str  # anymail's ESP name ("amazon_ses", "mailgun", "sendgrid", "postmark") or "dsn"
    event_key: str  # the provider's event id, or a digest of the event when it gives none
    kind: EventKind
    occurred_at: datetime
    message_id: str = ""  # the provider's message id, or our Message-ID (a DSN quotes it)
    delivery_ref: str = ""  # the delivery id we sent as metadata, when the provider echoes it
    email: str = ""  # the recipient's address as reported: hashed to match, never stored
    bounce_kind: BounceKind | str = ""
    description: str = ""  # the provider's explanation or the server's answer
    url: str = ""  # the link, for clicks


@dataclass(frozen=True)
class FeedbackResult:
    """What `feedback_record` did with a batch."""

    stored: int = 0  # new events (unmatched ones included)
    duplicates: int = 0  # events already stored (or twice in the batch): nothing done again
    unmatched: int = 0  # new events whose message is not one of our deliveries: no effect
    paused: tuple[int, ...] = ()  # campaigns the circuit breaker paused


@dataclass(frozen=True)
class Match:
    """The delivery an event is about, as `feedback_record` found it."""

    delivery_id: int
    campaign_id: int
    unit_id: int
    recipient_id: int
    email_hash: str


def _message_id_forms(message_id: str) -> tuple[str, ...]:
    """A message id as written and with or without its angle brackets (providers differ)."""
    text = message_id.strip()[:255]
    if not text:
        return ()
    if text.startswith("<") and text.endswith(">"):
        return (text, text[1:-1])
    return (text, f"<{text}>"[:255])


def _delivery_ref(event: Feedback) -> int | None:
    ref = event.delivery_ref.strip() if event.delivery_ref else ""
    return int(ref) if ref.isdigit() and len(ref) < 19 else None


# Read for every webhook request, hence plain SQL: building the ORM query cost more than
# running it. Each part is written so that its (partial) index serves it; only the parts a
# batch needs are sent (Amazon SES names no delivery id, SendGrid always does).
_MATCH_COLUMNS = (
    "id, campaign_id, unit_id, recipient_id, email_hash, provider_message_id, message_id"
)
_MATCH_BY = {
    "ref": "id = ANY(%s)",
    "provider": "(provider_message_id = ANY(%s) AND provider_message_id <> '')",
    "message": "(message_id = ANY(%s) AND message_id <> '')",
}


def _match(events: Sequence[Feedback]) -> list[Match | None]:
    """Each event's delivery, in one query: by the delivery id the provider echoed from our
    metadata, else by the provider's message id, else by our Message-ID."""
    refs = sorted({ref for e in events if (ref := _delivery_ref(e)) is not None})
    ids = sorted({form for e in events for form in _message_id_forms(e.message_id)})
    if not refs and not ids:
        return [None] * len(events)
    by_pk, by_provider, by_message = {}, {}, {}
    parts = [("ref", refs)] if refs else []
    if ids:
        parts += [("provider", ids), ("message", ids)]
    where = " OR ".join(_MATCH_BY[name] for name, _ in parts)
    sql = f"SELECT {_MATCH_COLUMNS} FROM {Delivery._meta.db_table} WHERE {where}"  # noqa: S608
    with server_binding_cursor() as cursor:
        cursor.execute(sql, [values for _, values in parts])
        rows = cursor.fetchall()
    for pk, campaign_id, unit_id, recipient_id, email_hash, provider_id, message_id in rows:
        match = Match(pk, campaign_id, unit_id, recipient_id, email_hash)
        by_pk[pk] = match
        if provider_id:
            by_provider[provider_id] = match
        if message_id:
            by_message[message_id] = match
    matches: list[Match | None] = []
    for event in events:
        found = by_pk.get(_delivery_ref(event))
        forms = _message_id_forms(event.message_id)
        for table in (by_provider, by_message):
            found = found or next((table[f] for f in forms if f in table), None)
        matches.append(found)
    return matches


def _email_hash(event: Feedback, match: Match | None) -> str:
    if match is not None:
        return match.email_hash
    if not event.email:
        return ""
    try:
        return address_hash(normalise_address(event.email))
    except InvalidAddress:
        return ""


_COLUMNS = (
    "source",
    "event_key",
    "kind",
    "bounce_kind",
    "delivery_id",
    "campaign_id",
    "unit_id",
    "message_id",
    "email_hash",
    "occurred_at",
    "received_at",
    "description",
    "url",
)


# PostgreSQL's types of the columns: a batch travels as one JSON document that the database
# reads as rows (json_to_recordset), so the statement is the same whatever the batch size, and
# preparing 1,300 parameters in Python (or a dozen arrays) is not needed.
_TYPES = (
    "varchar",
    "varchar",
    "varchar",
    "varchar",
    "bigint",
    "bigint",
    "bigint",
    "varchar",
    "varchar",
    "timestamptz",
    "timestamptz",
    "text",
    "text",
)


def _insert(rows: list[tuple]) -> set[tuple[str, str]]:
    """INSERT … ON CONFLICT (source, event_key) DO NOTHING; the (source, key) of the rows
    actually written (RETURNING), so that effects follow new events only."""
    table = DeliveryEvent._meta.db_table
    columns = ", ".join(_COLUMNS)
    conflict = " ON CONFLICT (source, event_key) DO NOTHING RETURNING source, event_key"
    # Only our own table and column names are interpolated; values are parameters.
    with server_binding_cursor() as cursor:
        record = ", ".join(f"{c} {t}" for c, t in zip(_COLUMNS, _TYPES, strict=True))
        sql = (
            f"INSERT INTO {table} ({columns}) SELECT {columns} "  # noqa: S608
            f"FROM json_to_recordset(%s::json) AS r({record}){conflict}"
        )
        document = json.dumps(
            [dict(zip(_COLUMNS, row, strict=True)) for row in rows], default=_json_time
        )
        cursor.execute(sql, [document])
        return set(cursor.fetchall())


def _json_time(value: datetime) -> str:
    return value.isoformat()


def feedback_record(events: Sequence[Feedback]) -> FeedbackResult:
    """Store each event once and apply its effect once (I4: the events are append-only facts;
    I6: a complaint or an unsubscribe stops the rest of the campaign at once).

    Matching and writing are bulk (one lookup, one INSERT); campaign rows are
    neither locked nor updated unless the circuit breaker pauses one. Events and their effects
    are written in one transaction; a batch without bounces, complaints or unsubscribes needs
    none (its one INSERT is atomic), which spares the busiest requests two round trips.
    """
    unique: dict[tuple[str, str], Feedback] = {}
    for event in events:
        if event.kind == EventKind.BOUNCED and not event.bounce_kind:
            # A bounce that does not say otherwise is permanent (a DSN's "failed").
            event = replace(event, bounce_kind=BounceKind.HARD)
        unique.setdefault((event.source[:20], event.event_key[:200]), event)
    # Sorted keys: concurrent batches take the unique index's row locks in one order.
    ordered = [unique[key] for key in sorted(unique)]
    acting = any(event.kind in ACTING for event in ordered)
    with transaction.atomic() if acting else nullcontext():
        return _record(ordered, received=len(events))


def _record(ordered: list[Feedback], *, received: int) -> FeedbackResult:
    matches = _match(ordered)
    now = timezone.now()
    rows = [
        (
            event.source[:20],
            event.event_key[:200],
            str(event.kind),
            str(event.bounce_kind or "") if event.kind == EventKind.BOUNCED else "",
            match.delivery_id if match else None,
            match.campaign_id if match else None,
            match.unit_id if match else None,
            event.message_id[:255],
            _email_hash(event, match),
            event.occurred_at or now,
            now,
            event.description or "",
            event.url or "",
        )
        for event, match in zip(ordered, matches, strict=True)
    ]
    written = _insert(rows) if rows else set()
    new = [
        (event, match)
        for event, match in zip(ordered, matches, strict=True)
        if (event.source[:20], event.event_key[:200]) in written
    ]
    paused = effects_apply([(e, m) for e, m in new if m is not None])
    return FeedbackResult(
        stored=len(new),
        duplicates=received - len(new),
        unmatched=sum(1 for _, m in new if m is None),
        paused=tuple(paused),
    )
