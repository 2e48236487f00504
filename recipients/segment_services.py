"""Segments: saving one (lists of one audience, I3, and valid conditions) and deleting one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from mlm.models import SenderUnit
from mlm.services import audit_record
from recipients.models import Audience, RecipientList, Segment
from recipients.segments import validate_conditions


def segment_audience(*, unit: SenderUnit, lists: Iterable[RecipientList]) -> str:
    """The one audience of `lists`, all of `unit`; refuses other units' lists and mixed
    audiences (I3: internal and external recipients are never mixed)."""
    lists = list(lists)
    if not lists:
        raise ValidationError("Choose at least one list.")
    for recipient_list in lists:
        if recipient_list.unit_id != unit.pk:
            raise ValidationError(f"The list {recipient_list.name!r} belongs to another unit.")
    audiences = {recipient_list.audience for recipient_list in lists}
    if len(audiences) > 1:
        raise ValidationError(
            "These lists mix internal and external recipients: a segment takes lists of one "
            "audience only."
        )
    return audiences.pop()


def _checked(
    *, unit: SenderUnit, name: str, lists: Iterable[RecipientList], conditions: Any
) -> tuple[str, str, list[RecipientList], dict[str, Any]]:
    name = (name or "").strip()
    if not name:
        raise ValidationError("A segment needs a name.")
    lists = list(lists)
    audience = segment_audience(unit=unit, lists=lists)
    return name, audience, lists, validate_conditions(conditions)


def _name_taken(unit: SenderUnit, name: str, segment: Segment | None = None) -> None:
    taken = Segment.objects.for_unit(unit).filter(name=name)
    if segment is not None:
        taken = taken.exclude(pk=segment.pk)
    if taken.exists():
        raise ValidationError(f"This unit already has a segment named {name!r}.")


@transaction.atomic
def segment_create(
    *,
    unit: SenderUnit,
    name: str,
    lists: Iterable[RecipientList],
    conditions: Any,
    by: AbstractBaseUser | None,
) -> Segment:
    """Save a new segment: lists of the unit and of one audience (I3), conditions validated."""
    name, audience, lists, conditions = _checked(
        unit=unit, name=name, lists=lists, conditions=conditions
    )
    _name_taken(unit, name)
    segment = Segment.objects.create(unit=unit, name=name, audience=audience, conditions=conditions)
    segment.lists.set(lists)
    audit_record(
        unit=unit,
        actor=by,
        verb="segment.create",
        obj=segment,
        data={"audience": audience, "lists": [str(rl.code) for rl in lists]},
    )
    return segment


@transaction.atomic
def segment_update(
    *,
    segment: Segment,
    name: str,
    lists: Iterable[RecipientList],
    conditions: Any,
    by: AbstractBaseUser | None,
) -> Segment:
    """Change a segment; its audience may not change while a campaign targets it (I3).

    Campaigns already sending keep the copy they started with."""
    name, audience, lists, conditions = _checked(
        unit=segment.unit, name=name, lists=lists, conditions=conditions
    )
    _name_taken(segment.unit, name, segment)
    if audience != segment.audience and segment.campaigns.exists():
        raise ValidationError(
            f"Campaigns target this segment as {Audience(segment.audience).label.lower()}: "
            "its lists must stay of that audience."
        )
    segment.name, segment.audience, segment.conditions = name, audience, conditions
    segment.save()
    segment.lists.set(lists)
    audit_record(
        unit=segment.unit,
        actor=by,
        verb="segment.edit",
        obj=segment,
        data={"audience": audience, "lists": [str(rl.code) for rl in lists]},
    )
    return segment


@transaction.atomic
def segment_delete(*, segment: Segment, by: AbstractBaseUser | None) -> None:
    """Delete a segment no campaign targets (a campaign's report keeps its own copy)."""
    if segment.campaigns.exists():
        raise ValidationError(
            f"Campaigns target the segment “{segment.name}”: it cannot be deleted."
        )
    audit_record(unit=segment.unit, actor=by, verb="segment.delete", obj=segment)
    segment.delete()
