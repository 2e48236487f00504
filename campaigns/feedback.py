"""Feedback from mail providers: what tracking webhooks and bounce messages say happened.

Every source — anymail's tracking signal for each ESP, `process_bounces` reading delivery status
notifications — turns what it received into `Feedback` values and hands them, in bulk, to
`feedback_record`, which stores each as a `DeliveryEvent` (once, however often it arrives),
finds its delivery and applies its effect (suppression, withdrawal, the circuit breaker).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from campaigns.models import BounceKind, Campaign, Delivery, DeliveryEvent, EventKind
from consent.models import Channel, Suppression, SuppressionReason
from consent.public_services import recipient_unsubscribe
from consent.services import suppress
from mlm.db import server_binding_cursor
from mlm.models import AuditEntry, SenderUnit
from outbound.models import EventType
from outbound.services import recipient_events_emit
from recipients.addresses import InvalidAddress, address_hash, normalise_address
from recipients.models import Recipient, RecipientStatus

# Soft bounces (full mailbox, greylisting given up on…) of this many messages to one address
# within this many days count as a hard bounce: the address is suppressed.
SOFT_BOUNCE_LIMIT = 3
SOFT_BOUNCE_DAYS = 30

# How a source is named in evidence and notes (the ESP names anymail gives, normalised).
SOURCE_NAMES = {
    "amazon_ses": "Amazon SES",
    "mailgun": "Mailgun",
    "sendgrid": "SendGrid",
    "postmark": "Postmark",
    "dsn": "a bounce message",
}

# The events that change something beyond their own row.
_ACTING = {EventKind.BOUNCED, EventKind.COMPLAINED, EventKind.UNSUBSCRIBED}


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
class _Match:
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


def _match(events: Sequence[Feedback]) -> list[_Match | None]:
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
        match = _Match(pk, campaign_id, unit_id, recipient_id, email_hash)
        by_pk[pk] = match
        if provider_id:
            by_provider[provider_id] = match
        if message_id:
            by_message[message_id] = match
    matches: list[_Match | None] = []
    for event in events:
        found = by_pk.get(_delivery_ref(event))
        forms = _message_id_forms(event.message_id)
        for table in (by_provider, by_message):
            found = found or next((table[f] for f in forms if f in table), None)
        matches.append(found)
    return matches


def _email_hash(event: Feedback, match: _Match | None) -> str:
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
    acting = any(event.kind in _ACTING for event in ordered)
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
    paused = _apply_effects([(e, m) for e, m in new if m is not None])
    return FeedbackResult(
        stored=len(new),
        duplicates=received - len(new),
        unmatched=sum(1 for _, m in new if m is None),
        paused=tuple(paused),
    )


# Effects ---------------------------------------------------------------------------------------


_EVENT_TYPES = {
    RecipientStatus.BOUNCED: EventType.BOUNCED,
    RecipientStatus.COMPLAINED: EventType.COMPLAINED,
}


@dataclass
class _Effects:
    """What a batch changes besides its events: recipients marked bounced or complained, and
    suppressions. Gathered while the batch is read, then written in bulk — a few statements per
    batch rather than nine round trips per bounce — with the rows and audit entries that
    `consent.services.suppress` and a status change would write one by one."""

    marks: dict[int, tuple[Recipient, RecipientStatus, dict]] = field(default_factory=dict)
    suppressions: dict[tuple[int | None, str], tuple[SenderUnit | None, str, str]] = field(
        default_factory=dict
    )

    def mark(self, recipient: Recipient, status: RecipientStatus, data: dict) -> None:
        """An active recipient becomes bounced or complained (the first event decides)."""
        if recipient.status == RecipientStatus.ACTIVE:
            self.marks.setdefault(recipient.pk, (recipient, status, data))

    def suppress(
        self, *, email_hash: str, unit: SenderUnit | None, reason: SuppressionReason, note: str
    ) -> None:
        """Suppress the address for `unit`, or every unit; an existing suppression stands."""
        self.suppressions.setdefault(
            (unit.pk if unit else None, email_hash), (unit, str(reason), note)
        )

    def write(self) -> None:
        now = timezone.now()
        audits = []
        for status in (RecipientStatus.BOUNCED, RecipientStatus.COMPLAINED):
            marked = [(r, d) for r, s, d in self.marks.values() if s == status]
            if not marked:
                continue
            # The rows are locked by this transaction and were active: every one changes.
            Recipient.objects.filter(
                pk__in=[r.pk for r, _ in marked], status=RecipientStatus.ACTIVE
            ).update(status=status, updated_at=now)
            audits += [_audit(r.unit, f"recipient.{status}", r, d) for r, d in marked]
            recipient_events_emit(
                type=_EVENT_TYPES[status],
                recipients=[(r, {"source": d["source"]}) for r, d in marked],
            )
        if self.suppressions:
            audits += self._write_suppressions()
        if audits:
            AuditEntry.objects.bulk_create(audits)

    def _write_suppressions(self) -> list[AuditEntry]:
        existing = set(
            Suppression.objects.filter(
                email_hash__in={digest for _, digest in self.suppressions}
            ).values_list("unit_id", "email_hash")
        )
        new = [
            Suppression(unit=unit, email="", email_hash=digest, reason=reason, note=note)
            for (unit_id, digest), (unit, reason, note) in self.suppressions.items()
            if (unit_id, digest) not in existing
        ]
        if not new:
            return []
        try:
            with transaction.atomic():
                Suppression.objects.bulk_create(new)
        except IntegrityError:
            # A concurrent request suppressed one of them first: one by one, keeping theirs.
            for s in new:
                try:
                    with transaction.atomic():
                        suppress(email_hash=s.email_hash, unit=s.unit, reason=s.reason, note=s.note)
                except IntegrityError:
                    pass
            return []
        return [
            _audit(
                s.unit,
                "suppression.create",
                s,
                {"reason": s.reason, "scope": "unit" if s.unit else "global"},
            )
            for s in new
        ]


def _audit(unit: SenderUnit | None, verb: str, obj, data: dict) -> AuditEntry:
    """The entry `mlm.services.audit_record` writes for the system, to be written in bulk."""
    return AuditEntry(
        unit=unit,
        actor=None,
        actor_label="system",
        verb=verb,
        object_type=obj._meta.label_lower,
        object_id=str(obj.code),
        object_repr=obj.audit_label[:200],
        data=data,
    )


def _bounced(effects: _Effects, recipient: Recipient, match: _Match, *, source, note) -> None:
    """A hard bounce, or soft bounces past the limit: recipient bounced, address suppressed
    for every unit."""
    effects.mark(
        recipient, RecipientStatus.BOUNCED, {"source": source, "delivery": match.delivery_id}
    )
    effects.suppress(
        email_hash=match.email_hash, unit=None, reason=SuppressionReason.HARD_BOUNCE, note=note
    )


def _complained(
    effects: _Effects, recipient: Recipient, match: _Match, campaign: Campaign, *, source: str
) -> None:
    """A spam complaint: every DM type of the unit withdrawn (channel complaint) at once, the
    address suppressed for the unit, the recipient marked complained."""
    name = SOURCE_NAMES.get(source, source)
    recipient_unsubscribe(
        recipient=recipient,
        dm_type=None,
        channel=Channel.COMPLAINT,
        evidence=f"Spam complaint reported by {name} about campaign {campaign.code}",
        campaign_code=campaign.code,
        report=False,
    )
    effects.mark(
        recipient, RecipientStatus.COMPLAINED, {"source": source, "delivery": match.delivery_id}
    )
    effects.suppress(
        email_hash=match.email_hash,
        unit=recipient.unit,
        reason=SuppressionReason.COMPLAINT,
        note=f"Spam complaint reported by {name} about campaign {campaign.name}",
    )


def _unsubscribed(recipient: Recipient, campaign: Campaign, *, source: str) -> None:
    """An unsubscribe the provider received (its own link or a List-Unsubscribe it handled):
    the campaign's DM type withdrawn, as a one-click would."""
    name = SOURCE_NAMES.get(source, source)
    recipient_unsubscribe(
        recipient=recipient,
        dm_type=campaign.dm_type,
        channel=Channel.ONE_CLICK,
        evidence=f"Unsubscribe reported by {name} for campaign {campaign.code}",
        campaign_code=campaign.code,
        report=False,
    )


def _soft_bounce_addresses(hashes: Iterable[str]) -> set[str]:
    """The addresses among `hashes` whose messages soft-bounced SOFT_BOUNCE_LIMIT times in
    SOFT_BOUNCE_DAYS (distinct deliveries: retries of one message count once)."""
    hashes = set(hashes)
    if not hashes:
        return set()
    since = timezone.now() - timedelta(days=SOFT_BOUNCE_DAYS)
    return set(
        DeliveryEvent.objects.filter(
            kind=EventKind.BOUNCED,
            bounce_kind=BounceKind.SOFT,
            email_hash__in=hashes,
            occurred_at__gte=since,
            delivery__isnull=False,
        )
        .order_by()
        .values("email_hash")
        .annotate(n=Count("delivery_id", distinct=True))
        .filter(n__gte=SOFT_BOUNCE_LIMIT)
        .values_list("email_hash", flat=True)
    )


def _apply_effects(new: list[tuple[Feedback, _Match]]) -> list[int]:
    """Apply the effects of newly stored, matched events; answers the campaigns paused."""
    from campaigns.breaker import breaker_check

    acting = [(e, m) for e, m in new if e.kind in _ACTING]
    if not acting:
        return []
    soft = {m.email_hash for e, m in acting if e.kind == EventKind.BOUNCED and _is_soft(e)}
    too_soft = _soft_bounce_addresses(soft)
    acting = [
        (e, m)
        for e, m in acting
        if e.kind != EventKind.BOUNCED or not _is_soft(e) or m.email_hash in too_soft
    ]
    if not acting:
        return []
    # One lock per recipient, in id order (as `consent.services.withdraw` takes it): a
    # concurrent batch about the same person waits rather than deciding on stale state.
    recipients = {
        r.pk: r
        for r in Recipient.objects.select_for_update(of=("self",))
        .select_related("unit")
        .filter(pk__in={m.recipient_id for _, m in acting})
        .order_by("pk")
    }
    campaigns = {
        c.pk: c
        for c in Campaign.objects.select_related("dm_type").filter(
            pk__in={m.campaign_id for _, m in acting}
        )
    }
    effects = _Effects()
    for event, match in acting:
        recipient = recipients[match.recipient_id]
        if recipient.status == RecipientStatus.ERASED:
            continue  # its address is suppressed for good already (I9)
        campaign = campaigns[match.campaign_id]
        name = SOURCE_NAMES.get(event.source, event.source)
        if event.kind == EventKind.BOUNCED and _is_soft(event):
            note = (
                f"{SOFT_BOUNCE_LIMIT} soft bounces in {SOFT_BOUNCE_DAYS} days, the last "
                f"reported by {name}"
            )
            _bounced(effects, recipient, match, source=event.source, note=note)
        elif event.kind == EventKind.BOUNCED:
            note = f"Hard bounce reported by {name}"
            _bounced(effects, recipient, match, source=event.source, note=note)
        elif event.kind == EventKind.COMPLAINED:
            _complained(effects, recipient, match, campaign, source=event.source)
        else:
            _unsubscribed(recipient, campaign, source=event.source)
    effects.write()
    touched = {
        m.campaign_id
        for e, m in acting
        if e.kind == EventKind.COMPLAINED
        or (e.kind == EventKind.BOUNCED and e.bounce_kind == BounceKind.HARD)
    }
    return breaker_check(campaign_ids=touched) if touched else []


def _is_soft(event: Feedback) -> bool:
    return event.bounce_kind == BounceKind.SOFT
