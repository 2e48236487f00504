"""Delivery events: what mail providers and bounce messages say happened to a message."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from campaigns.models.campaign import Campaign
from campaigns.models.deliveries import Delivery
from mlm.models import SenderUnit, UnitScopedQuerySet


class EventKind(models.TextChoices):
    """What a mail provider (or a bounce) says happened to a message: anymail's event types."""

    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    DEFERRED = "deferred", "Deferred"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"
    REJECTED = "rejected", "Rejected"
    UNKNOWN = "unknown", "Unknown"


class BounceKind(models.TextChoices):
    HARD = "hard", "Hard (permanent)"
    SOFT = "soft", "Soft (temporary)"


class DeliveryEvent(models.Model):
    """One thing a mail provider told us about one message: a tracking webhook's event or a
    delivery status notification (bounce). Append-only; the same event twice is stored once
    (unique source and key). An event whose message we cannot find is kept with no delivery.

    The address is never stored: the delivery names the recipient, and `email_hash` (keyed, as
    in suppressions) lets a bounce for an unknown message still suppress the address.
    """

    source = models.CharField(
        max_length=20, help_text="Where it came from: an ESP's name (anymail's), or 'dsn'."
    )
    event_key = models.CharField(
        max_length=200,
        help_text="The provider's event id, or a digest of the event when it gives none.",
    )
    kind = models.CharField(max_length=12, choices=EventKind.choices)
    bounce_kind = models.CharField(max_length=4, choices=BounceKind.choices, blank=True)
    delivery = models.ForeignKey(
        Delivery, null=True, blank=True, on_delete=models.PROTECT, related_name="events"
    )
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    unit = models.ForeignKey(
        SenderUnit, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    message_id = models.CharField(max_length=255, blank=True)
    email_hash = models.CharField(max_length=64, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    description = models.TextField(
        blank=True,
        help_text="The provider's explanation or the server's answer (may quote the address: "
        "erasure blanks it).",
    )
    url = models.TextField(blank=True, help_text="The link clicked (click events).")

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "event_key"], name="one_event_per_key")
        ]
        indexes = [
            models.Index(fields=["campaign", "kind", "occurred_at"], name="event_campaign_kind"),
            models.Index(fields=["unit", "occurred_at"], name="event_unit_time"),
            models.Index(fields=["delivery"], name="event_delivery"),
            # Soft bounces of one address in the last days (feedback: three suppress it).
            models.Index(
                fields=["email_hash", "occurred_at"],
                condition=Q(kind="bounced", bounce_kind="soft"),
                name="event_soft_bounce_address",
            ),
            # Events whose message is not ours, by address: erasure blanks them too (I9).
            models.Index(
                fields=["email_hash"], condition=Q(delivery__isnull=True), name="event_unmatched"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.kind} for delivery {self.delivery_id}"
