"""What campaigns keep of a person by address alone, for the rights of the person (I9): what
mail providers said of their messages, matched to a delivery or not. recipients.rights reaches
it through the keeper registered here, since recipients sits below campaigns."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from campaigns.models import DeliveryEvent
from recipients.models import Recipient
from recipients.rights import Keeper


def _unmatched_events(email_hash: str) -> list[DeliveryEvent]:
    """Provider events about the address whose message was not found (kept by keyed hash)."""
    found = DeliveryEvent.objects.filter(delivery__isnull=True, email_hash=email_hash)
    return list(found.order_by("occurred_at", "pk"))


def _blank_delivery_events(recipient: Recipient, email_hash: str) -> int:
    """Blank what mail providers said about an erased recipient's messages (their explanations
    and clicked links may quote the address or carry personal tokens); the events stay as facts
    (I4, I9). Events that matched no delivery are found by the keyed hash of the address."""
    said = ~Q(description="") | ~Q(url="")
    # Two statements, so that each uses its index (by delivery; unmatched ones by address).
    blanked = DeliveryEvent.objects.filter(said, delivery__recipient=recipient).update(
        description="", url=""
    )
    blanked += DeliveryEvent.objects.filter(
        said, delivery__isnull=True, email_hash=email_hash
    ).update(description="", url="")
    return blanked


def _unmatched_events_export(email_hash: str) -> list[dict[str, Any]]:
    """What providers said of mail to the address that matched no delivery (kept by hash)."""
    return [
        {
            "time": e.occurred_at.isoformat() if e.occurred_at is not None else None,
            "kind": e.kind,
            "bounce_kind": e.bounce_kind,
            "source": e.source,
            "description": e.description,
        }
        for e in _unmatched_events(email_hash)
    ]


PROVIDER_EVENTS = Keeper(
    name="unmatched_provider_events",
    export=_unmatched_events_export,
    erase=_blank_delivery_events,
)
