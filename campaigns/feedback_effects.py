"""The effects of feedback: what a bounce, a complaint or an unsubscribe changes beyond its own
event (the recipient's status, suppressions, withdrawals, the circuit breaker)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from campaigns.models import BounceKind, Campaign, DeliveryEvent, EventKind
from consent.models import Channel, Suppression, SuppressionReason
from consent.public_services import recipient_unsubscribe
from consent.services import suppress
from mlm.models import AuditEntry, SenderUnit
from outbound.models import EventType
from outbound.services import recipient_events_emit
from recipients.models import Recipient, RecipientStatus

if TYPE_CHECKING:  # annotations only: campaigns.feedback imports this module
    from campaigns.feedback import Feedback, Match

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
ACTING = {EventKind.BOUNCED, EventKind.COMPLAINED, EventKind.UNSUBSCRIBED}


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


def _bounced(effects: _Effects, recipient: Recipient, match: Match, *, source, note) -> None:
    """A hard bounce, or soft bounces past the limit: recipient bounced, address suppressed
    for every unit."""
    effects.mark(
        recipient, RecipientStatus.BOUNCED, {"source": source, "delivery": match.delivery_id}
    )
    effects.suppress(
        email_hash=match.email_hash, unit=None, reason=SuppressionReason.HARD_BOUNCE, note=note
    )


def _complained(
    effects: _Effects, recipient: Recipient, match: Match, campaign: Campaign, *, source: str
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


def effects_apply(new: list[tuple[Feedback, Match]]) -> list[int]:
    """Apply the effects of newly stored, matched events; answers the campaigns paused."""
    from campaigns.breaker import breaker_check

    acting = [(e, m) for e, m in new if e.kind in ACTING]
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
