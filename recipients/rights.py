"""The rights of the person (I9): export everything held about a recipient, and erase it.

Erasure reaches every table, file and copy the system wrote. What the apps above recipients
keep of a person through the recipient's relations (deliveries) is reached through them; what
they keep by the address alone (campaigns: provider events that matched no delivery) they hand
in as a `Keeper` from their AppConfig.ready(), so this module imports nothing above it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from consent.erasure import anonymise_events, suppress_erased
from consent.models import ConsentEvent, SubscriptionRequest, Suppression
from consent.selectors import recipient_dm_type_states
from mlm.models import OutboxMessage
from mlm.services import audit_record
from outbound.models import EventType
from outbound.services import events_emit, events_redact
from recipients.addresses import address_hash
from recipients.held_files import erase_from_files, erase_from_jobs, files_naming
from recipients.models import ListMembership, Recipient, RecipientStatus


@dataclass(frozen=True)
class Keeper:
    """Personal data an app above recipients keeps by a person's address: `export` lists it
    under `name` in the export (from the keyed hash), `erase` blanks it (recipient, hash)."""

    name: str
    export: Callable[[str], list[dict[str, Any]]]
    erase: Callable[[Recipient, str], int]


_KEEPERS: dict[str, Keeper] = {}


def keeper_register(keeper: Keeper) -> None:
    """Let export and erasure reach what `keeper` holds (called once, from AppConfig.ready)."""
    _KEEPERS[keeper.name] = keeper


def _when(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


@transaction.atomic
def recipient_export(*, recipient: Recipient, by: AbstractBaseUser | None = None) -> dict[str, Any]:
    """Everything held about a recipient, as JSON-ready data (I9): profile, attributes, lists,
    the whole consent history with notice texts, the current state per DM type, deliveries
    and what providers said of them (matched or not), the Outbox's copies of their mail, the
    files that name them, their double opt-in requests, and the suppressions of its unit or of
    every unit that match its address."""
    recipient = Recipient.objects.select_related("unit").get(pk=recipient.pk)
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
            for m in _outbox_copies(recipient)
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
        # What the apps above recipients keep of the address beyond its relations (campaigns:
        # what providers said of mail to it that matched no delivery, kept by hash).
        **{k.name: k.export(recipient.email_hash) for k in _KEEPERS.values()},
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
    audit_record(
        unit=recipient.unit,
        actor=by,
        verb="recipient.export",
        obj=recipient,
        data={"consent_events": len(data["consent_events"])},
    )
    return data


@transaction.atomic
def recipient_erase(*, recipient: Recipient, by: AbstractBaseUser | None) -> None:
    """Remove a recipient's personal data for good (I9): profile blanked, lists left, consent
    events anonymised (the facts stay, I4), mail copies in the outbox and double opt-in
    requests deleted, their rows taken out of the import files that name them and their
    address out of what import jobs say of their files, and the address
    kept only as a keyed hash in a global erasure suppression, so it is never mailed or
    imported again.

    Other units holding the same address keep their own recipient, which the global
    suppression stops mailing. Deliveries keep their facts; server replies are blanked.
    """
    held = Recipient.objects.select_for_update().get(pk=recipient.pk)
    if held.status == RecipientStatus.ERASED:
        raise ValidationError("This recipient was already erased.")
    address, digest = held.email, held.email_hash
    placeholder = f"erased-{held.code}@erased.invalid"
    Recipient.objects.filter(pk=held.pk).exclude(status=RecipientStatus.ERASED).update(
        email=placeholder,
        email_hash=address_hash(placeholder),
        first_name="",
        last_name="",
        locale="",
        attributes={},
        status=RecipientStatus.ERASED,
        updated_at=timezone.now(),
    )
    held.refresh_from_db()
    lists_left, _ = ListMembership.objects.filter(recipient=held).delete()
    events = anonymise_events(recipient=held)
    # Deliveries stay as facts (I4); a server's reply may quote the address, so it goes.
    held.deliveries.exclude(reply="").update(reply="", updated_at=timezone.now())
    for keeper in _KEEPERS.values():
        keeper.erase(held, digest)
    suppress_erased(email_hash=digest, by=by)
    # Outbound events keep the person's code; the address leaves the ones stored, and the
    # erasure is announced by code alone (I9).
    redacted = events_redact(recipient_key=str(held.code))
    events_emit(
        unit_id=held.unit_id,
        type=EventType.ERASED,
        items=[(str(held.code), {"recipient": {"code": str(held.code)}})],
    )
    copies = [m.pk for m in _outbox_copies(held, address, digest)]
    OutboxMessage.objects.filter(pk__in=copies).delete()
    files = erase_from_files(unit=held.unit, address=address)
    jobs = erase_from_jobs(unit=held.unit, address=address)
    # Double opt-in requests of the address (pending or confirmed) hold names, IP and browser.
    requests, _ = SubscriptionRequest.objects.filter(
        unit=held.unit_id, email__iexact=address
    ).delete()
    audit_record(
        unit=held.unit,
        actor=by,
        verb="recipient.erase",
        obj=held,
        data={
            "lists": lists_left,
            "consent_events": events,
            "outbox_messages": len(copies),
            "files": files,
            "import_jobs": jobs,
            "subscription_requests": requests,
            "outbound_events": redacted,
        },
    )
    recipient.refresh_from_db()


def _outbox_copies(
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
