"""Reads of the shell: the unit's audit log and Outbox, filtered, and the choices their filters
offer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from mlm.models import AuditEntry, Membership, OutboxMessage, SenderUnit

SYSTEM_ACTOR = "system"


def audit_actor_choices(unit: SenderUnit) -> list[tuple[str, str]]:
    """The unit's members as (user id, user name) for the actor filter."""
    members = Membership.objects.filter(unit=unit).select_related("user")
    return [
        (str(m.user_id), m.user.get_username())
        for m in sorted(members, key=lambda m: m.user.get_username().lower())
    ]


def audit_verbs(unit: SenderUnit) -> list[str]:
    """The verbs the unit's log holds, for the verb filter."""
    entries = AuditEntry.objects.for_unit(unit).order_by("verb")
    return list(entries.values_list("verb", flat=True).distinct())


def _start_of(day: date, unit: SenderUnit) -> datetime:
    return datetime.combine(day, time.min, tzinfo=unit.tzinfo)


def audit_entries(
    unit: SenderUnit,
    *,
    actor: str = "",
    verb: str = "",
    date_from: date | None = None,
    date_to: date | None = None,
) -> QuerySet[AuditEntry]:
    """The unit's audit entries, newest first: by one member (or "system"), one verb, and the
    days from `date_from` to `date_to` inclusive, in the unit's time zone."""
    entries = AuditEntry.objects.for_unit(unit).select_related("actor")
    if actor == SYSTEM_ACTOR:
        entries = entries.filter(actor__isnull=True)
    elif actor:
        entries = entries.filter(actor_id=int(actor))
    if verb:
        entries = entries.filter(verb=verb)
    if date_from:
        entries = entries.filter(created_at__gte=_start_of(date_from, unit))
    if date_to:
        entries = entries.filter(created_at__lt=_start_of(date_to + timedelta(days=1), unit))
    return entries


def audit_rows(unit: SenderUnit, entries: Iterable[AuditEntry]) -> Iterator[list[Any]]:
    """Audit entries as spreadsheet rows: a header, then one row per entry (time in the
    unit's zone)."""
    yield ["when", "who", "what", "object type", "object id", "object", "details"]
    for e in entries:
        yield [
            timezone.localtime(e.created_at, unit.tzinfo).isoformat(),
            e.actor_label,
            e.verb,
            e.object_type,
            e.object_id,
            e.object_repr,
            json.dumps(e.data, ensure_ascii=False, sort_keys=True, default=str) if e.data else "",
        ]


def outbox_campaign_choices(unit: SenderUnit) -> list[tuple[str, str]]:
    """The unit's campaigns that have mail in the Outbox, as (campaign code, name), by name."""
    rows = (
        OutboxMessage.objects.for_unit(unit)
        .filter(campaign__unit=unit)
        .order_by("campaign__name", "campaign__code")
        .values_list("campaign__code", "campaign__name")
        .distinct()
    )
    return [(str(code), name) for code, name in rows]


def outbox_messages(
    unit: SenderUnit, *, campaign: str = "", address: str = ""
) -> QuerySet[OutboxMessage]:
    """The unit's Outbox, newest first, without the raw bytes: the mail of one campaign (by
    code) and to addresses containing `address`, case-insensitively."""
    outbox = OutboxMessage.objects.for_unit(unit).defer("raw").select_related("campaign")
    if campaign:
        outbox = outbox.filter(campaign__code=campaign, campaign__unit=unit)
    if address:
        outbox = outbox.filter(recipients__icontains=address)
    return outbox
