"""Exports of what the app holds: a list's members as formula-safe CSV, and everything held
about one person (I9)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import Q
from django.utils import timezone

from consent.models import ConsentEvent, SubscriptionRequest, Suppression
from consent.selectors import recipient_dm_type_states
from mlm.models import OutboxMessage
from recipients.held_files import files_naming
from recipients.importing.limits import MAX_COLUMNS
from recipients.models import ListMembership, Recipient, RecipientStatus

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> str:
    """A cell that a spreadsheet shows as text and never runs: one starting with = + - @ (or a
    tab or carriage return, which some programs skip first) gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """CSV text of `rows`, formula-safe, with a byte order mark so Excel reads it as UTF-8."""
    writer = csv.writer(_Echo())
    yield "\ufeff"
    for row in rows:
        yield writer.writerow([spreadsheet_safe(v) for v in row])


def list_member_rows(recipient_list) -> Iterator[list[Any]]:
    """The members of a list as spreadsheet rows: a header, then one row per recipient."""
    members = Recipient.objects.filter(list_memberships__recipient_list=recipient_list).exclude(
        status=RecipientStatus.ERASED
    )
    keys: list[str] = []
    seen: set[str] = set()
    for attributes in members.values_list("attributes", flat=True).iterator(chunk_size=2000):
        for key in attributes or {}:
            if key not in seen and len(keys) < MAX_COLUMNS:
                seen.add(key)
                keys.append(key)
    yield ["email", "first_name", "last_name", "category", "locale", "status", *keys]
    fields = ("email", "first_name", "last_name", "category", "locale", "status", "attributes")
    for row in members.order_by("email").values_list(*fields).iterator(chunk_size=2000):
        attributes = row[6] or {}
        yield [*row[:6], *(attributes.get(k, "") for k in keys)]


def _when(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def recipient_data(recipient: Recipient) -> dict[str, Any]:
    """Everything held about a recipient, as JSON-ready data (I9): profile, attributes, lists,
    the whole consent history with notice texts, the current state per DM type, deliveries
    and what providers said of them (matched or not), the Outbox's copies of their mail, the
    files that name them, their double opt-in requests, and the suppressions of its unit or of
    every unit that match its address."""
    memberships = (
        ListMembership.objects.filter(recipient=recipient)
        .select_related("recipient_list")
        .order_by("recipient_list__name")
    )
    events = (
        ConsentEvent.objects.filter(recipient=recipient)
        .select_related("dm_type", "notice")
        .order_by("id")
    )
    suppressions = Suppression.objects.filter(
        Q(unit=recipient.unit_id) | Q(unit__isnull=True), email_hash=recipient.email_hash
    ).order_by("created_at", "id")
    data = {
        "exported_at": _when(timezone.now()),
        "unit": {"name": recipient.unit.name, "slug": recipient.unit.slug},
        "recipient": {
            "code": str(recipient.code),
            "email": recipient.email,
            "first_name": recipient.first_name,
            "last_name": recipient.last_name,
            "category": recipient.category,
            "audience": str(recipient.audience),
            "locale": recipient.locale,
            "status": recipient.status,
            "attributes": recipient.attributes,
            "created_at": _when(recipient.created_at),
            "updated_at": _when(recipient.updated_at),
        },
        "lists": [
            {
                "code": str(m.recipient_list.code),
                "name": m.recipient_list.name,
                "audience": m.recipient_list.audience,
                "added_at": _when(m.added_at),
            }
            for m in memberships
        ],
        "consent_events": [
            {
                "id": event.pk,
                "time": _when(event.created_at),
                "action": event.action,
                "dm_type": event.dm_type.name if event.dm_type_id else None,
                "dm_type_key": event.dm_type.key if event.dm_type_id else None,
                "scope": event.dm_type.name if event.dm_type_id else "all DM types of the unit",
                "notice_version": event.notice.version if event.notice_id else None,
                "notice_text": event.notice.text if event.notice_id else None,
                # The same notice as the person may have read it in Chinese.
                "notice_text_zh_hant": event.notice.text_zh_hant if event.notice_id else None,
                "notice_text_zh_hans": event.notice.text_zh_hans if event.notice_id else None,
                "channel": event.channel,
                "evidence": event.evidence,
                "actor": event.actor_label,
                "ip_address": event.ip_address,
                "user_agent": event.user_agent,
                "campaign_code": str(event.campaign_code) if event.campaign_code else None,
            }
            for event in events
        ],
        "consent_now": [
            {
                "dm_type": state.dm_type.name,
                "dm_type_key": state.dm_type.key,
                "archived": state.dm_type.is_archived,
                "subscribed": state.subscribed,
                "by_default": state.by_default,
                "event_id": state.event.pk if state.event is not None else None,
            }
            for state in recipient_dm_type_states(recipient)
        ],
        "deliveries": [
            {
                "campaign": str(d.campaign.code),
                "campaign_name": d.campaign.name,
                "status": d.status,
                "reason": d.reason,
                "message_id": d.message_id,
                "reply": d.reply,
                "sent_at": _when(d.sent_at),
                "created_at": _when(d.created_at),
                # What the mail providers reported about the message (bounces, opens…).
                "events": [
                    {
                        "time": _when(e.occurred_at),
                        "kind": e.kind,
                        "bounce_kind": e.bounce_kind,
                        "source": e.source,
                        "description": e.description,
                        "url": e.url,
                    }
                    for e in sorted(d.events.all(), key=lambda e: (e.occurred_at, e.pk))
                ],
            }
            for d in recipient.deliveries.select_related("campaign")
            .prefetch_related("events")
            .order_by("created_at", "pk")
        ],
        # Copies of the mail kept by the Outbox (the embedded default's mail backend): to them,
        # or to an editor and rendered as them (a [TEST] mail).
        "outbox_messages": [
            {
                "subject": m.subject,
                "from": m.from_email,
                "copy_of": "a test mail to staff, rendered as them"
                if m.about_hash
                else "mail to them",
                "kept_at": _when(m.created_at),
            }
            for m in outbox_copies(recipient)
        ],
        # Files the app keeps that name the person (uploads and rejected-rows reports).
        "files": [
            {
                "import": str(held.job.code),
                "file_name": held.job.file_name,
                "kind": held.kind,
                "uploaded_at": _when(held.job.created_at),
            }
            for held in files_naming(unit=recipient.unit, address=recipient.email)
        ],
        # What providers said of mail to the address that matched no delivery (kept by hash).
        "unmatched_provider_events": [
            {
                "time": _when(e.occurred_at),
                "kind": e.kind,
                "bounce_kind": e.bounce_kind,
                "source": e.source,
                "description": e.description,
            }
            for e in _unmatched_events(recipient.email_hash)
        ],
        # Double opt-in requests from the public form that name the address.
        "subscription_requests": [
            {
                "code": str(r.code),
                "email": r.email,
                "first_name": r.first_name,
                "last_name": r.last_name,
                "locale": r.locale,
                "dm_types": sorted(t.name for t in r.dm_types.all()),
                "wording": r.wording,
                "ip_address": r.ip_address,
                "user_agent": r.user_agent,
                "created_at": _when(r.created_at),
                "confirmed_at": _when(r.confirmed_at),
            }
            for r in SubscriptionRequest.objects.filter(
                unit=recipient.unit_id, email__iexact=recipient.email
            )
            .prefetch_related("dm_types")
            .order_by("created_at", "pk")
        ],
        "suppressions": [
            {
                "code": str(s.code),
                "scope": "this unit" if s.unit_id else "every unit",
                "reason": s.reason,
                "note": s.note,
                "created_at": _when(s.created_at),
            }
            for s in suppressions
        ],
    }
    return data


def outbox_copies(
    recipient: Recipient, address: str | None = None, email_hash: str | None = None
) -> list[OutboxMessage]:
    """The Outbox's copies of mail to the recipient's address (in any case), and of mail to
    someone else rendered as them (a campaign's [TEST] mail)."""
    address, email_hash = address or recipient.email, email_hash or recipient.email_hash
    found = OutboxMessage.objects.filter(
        Q(unit=recipient.unit_id) | Q(unit__isnull=True),
        Q(recipients__icontains=address) | Q(about_hash=email_hash),
    )
    return [
        m
        for m in found.order_by("created_at", "pk")
        if m.about_hash == email_hash
        or address.lower() in {line.strip().lower() for line in m.recipients.splitlines()}
    ]


def _unmatched_events(email_hash: str) -> list:
    """Provider events about the address whose message was not found (kept by keyed hash)."""
    from campaigns.models import DeliveryEvent

    found = DeliveryEvent.objects.filter(delivery__isnull=True, email_hash=email_hash)
    return list(found.order_by("occurred_at", "pk"))
