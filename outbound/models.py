"""Endpoints a unit registers, and the outbox of events they are owed (one row per event and
endpoint, written in the transaction of the change it reports)."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from mlm.models import SenderUnit


class EventType(models.TextChoices):
    CONSENT_GRANTED = "consent.granted", "Consent granted"
    CONSENT_WITHDRAWN = "consent.withdrawn", "Consent withdrawn"
    SUPPRESSED = "recipient.suppressed", "Suppressed"
    BOUNCED = "recipient.bounced", "Bounced"
    COMPLAINED = "recipient.complained", "Complained"
    ERASED = "recipient.erased", "Erased"


class EndpointQuerySet(models.QuerySet):
    def for_unit(self, unit: SenderUnit) -> EndpointQuerySet:
        return self.filter(unit=unit)


class Endpoint(models.Model):
    """An HTTPS URL of another system that receives a unit's events, signed with its secret
    (Standard Webhooks). The secret is kept encrypted (Fernet, MLM_DKIM_ENCRYPTION_KEY); after a
    rotation the previous one signs too until `previous_secret_expires_at`."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(SenderUnit, on_delete=models.CASCADE, related_name="endpoints")
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    secret_encrypted = models.TextField(editable=False)
    previous_secret_encrypted = models.TextField(editable=False, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    event_types = ArrayField(models.CharField(max_length=30, choices=EventType.choices))
    is_active = models.BooleanField(default=True)
    paused_reason = models.CharField(max_length=200, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = EndpointQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["unit", "is_active"], name="outbound_endpoint_active")]

    def __str__(self) -> str:
        return self.url

    @property
    def audit_label(self) -> str:
        return self.url


class EventStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class Event(models.Model):
    """One event owed to one endpoint. `code` is its stable id (webhook-id, `evt_…`): a retry
    sends the same id, so a receiver drops duplicates (at-least-once). Events of one
    `recipient_key` reach an endpoint in order. `last_error` never holds personal data."""

    code = models.CharField(max_length=40, unique=True, editable=False)
    unit = models.ForeignKey(SenderUnit, on_delete=models.CASCADE, related_name="+")
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=30, choices=EventType.choices)
    recipient_key = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=EventStatus.choices, default=EventStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    leased_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="outbound_event_due",
                condition=Q(status="pending"),
            ),
            models.Index(
                fields=["endpoint", "recipient_key", "id"],
                name="outbound_event_order",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["recipient_key"], name="outbound_event_recipient"),
            models.Index(fields=["endpoint", "-id"], name="outbound_event_recent"),
        ]

    def __str__(self) -> str:
        return self.code
