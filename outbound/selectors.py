"""Reads of the endpoints page."""

from __future__ import annotations

from django.db.models import QuerySet

from mlm.models import SenderUnit
from outbound.models import Event, EventStatus

RECENT = 50


def recent_events(unit: SenderUnit) -> QuerySet[Event]:
    """The unit's latest events, every endpoint together, newest first."""
    return (
        Event.objects.filter(unit=unit)
        .select_related("endpoint")
        .only("code", "type", "status", "attempts", "last_error", "created_at", "endpoint__url")
        .order_by("-pk")[:RECENT]
    )


def failed_events(unit: SenderUnit) -> QuerySet[Event]:
    """Events of the unit given up after the retry window, newest first."""
    return (
        Event.objects.filter(unit=unit, status=EventStatus.FAILED)
        .select_related("endpoint")
        .only("code", "type", "status", "attempts", "last_error", "created_at", "endpoint__url")
        .order_by("-pk")[:RECENT]
    )
