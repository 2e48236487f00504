"""Deliveries: one row per campaign and recipient, what was or was not sent and why."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from campaigns.models.campaign import Campaign
from mlm.models import SenderUnit, UnitScopedQuerySet


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SKIPPED = "skipped", "Skipped"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    DEFERRED = "deferred", "Deferred"
    IN_DOUBT = "in_doubt", "In doubt"


class SkipReason(models.TextChoices):
    """Why a member of a campaign's lists does not get the mail (audience preview, deliveries)."""

    NO_CONSENT = "no_consent", "No consent"
    WITHDRAWN = "withdrawn", "Withdrawn"
    SUPPRESSED = "suppressed", "Suppressed"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    ERASED = "erased", "Erased"
    OTHER_AUDIENCE = "other_audience", "Not of the campaign's audience"
    UNIT_CAP = "unit_cap", "Unit frequency cap"
    INSTITUTION_CAP = "institution_cap", "Institution frequency cap"
    DUPLICATE = "duplicate", "Duplicate address across lists"
    WITHDRAWN_DURING_SENDING = "withdrawn_sending", "Withdrawn during sending"
    CANCELLED = "cancelled", "Campaign cancelled"


class Delivery(models.Model):
    """One (campaign, recipient) row: the ledger of what was, or was not, sent and why (I4, I7).

    Written by sending (campaigns.sending): the snapshot makes it `queued` or `skipped`; a batch
    claims it (`sending`, with a lease); the send makes it `sent`, `deferred` (retried later) or
    `failed`; a lease that runs out makes it `in_doubt` (never re-sent without a person's say).
    The frequency caps count the `sent` rows of the last days.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="deliveries")
    unit = models.ForeignKey(SenderUnit, on_delete=models.PROTECT, related_name="+")
    recipient = models.ForeignKey(
        "recipients.Recipient", on_delete=models.PROTECT, related_name="deliveries"
    )
    email_hash = models.CharField(
        max_length=64, help_text="Keyed hash of the address: the institution-wide cap counts it."
    )
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices)
    reason = models.CharField(max_length=20, choices=SkipReason.choices, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    provider_message_id = models.CharField(
        max_length=255,
        blank=True,
        help_text="The id an ESP gave the message (anymail's message_id): its events name it.",
    )
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="How many times a batch claimed it for sending."
    )
    lease_until = models.DateTimeField(
        null=True, blank=True, help_text="While sending: after this the worker is taken for dead."
    )
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="While deferred: not claimed again before this."
    )
    reply = models.TextField(blank=True, help_text="The server's last answer (failed, deferred).")
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(
        null=True, blank=True, help_text="When it became sent, failed, skipped or in doubt."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "recipient"], name="one_delivery_per_campaign_recipient"
            )
        ]
        indexes = [
            models.Index(
                fields=["recipient", "sent_at"],
                condition=Q(status="sent"),
                name="delivery_sent_by_recipient",
            ),
            models.Index(
                fields=["email_hash", "sent_at"],
                condition=Q(status="sent"),
                name="delivery_sent_by_address",
            ),
            # What batches claim: the queued and deferred rows of a campaign, in id order.
            models.Index(
                fields=["campaign", "id"],
                condition=Q(status__in=["queued", "deferred"]),
                name="delivery_claimable",
            ),
            # What recovery looks at: rows being sent, by lease.
            models.Index(
                fields=["lease_until"], condition=Q(status="sending"), name="delivery_leased"
            ),
            models.Index(fields=["campaign", "status"], name="delivery_campaign_status"),
            # Feedback finds a delivery by the message id an ESP or a bounce names.
            models.Index(
                fields=["provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="delivery_provider_message",
            ),
            models.Index(
                fields=["message_id"], condition=~Q(message_id=""), name="delivery_message_id"
            ),
        ]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"campaign {self.campaign_id} to recipient {self.recipient_id}: {self.status}"
