"""Recipients of a unit and their lists; a list holds one audience only (I3)."""

from __future__ import annotations

import uuid

from django.db import models

from mlm.models import SenderUnit, UnitScopedQuerySet


class Audience(models.TextChoices):
    INTERNAL = "internal", "Internal (staff, students, alumni)"
    EXTERNAL = "external", "External"


class Category(models.TextChoices):
    STAFF = "staff", "Staff"
    STUDENT = "student", "Student"
    ALUMNI = "alumni", "Alumni"
    EXTERNAL = "external", "External"

    @property
    def audience(self) -> Audience:
        return Audience.EXTERNAL if self is Category.EXTERNAL else Audience.INTERNAL

    @classmethod
    def of_audience(cls, audience: str) -> list[str]:
        return [c.value for c in cls if c.audience == audience]


class RecipientStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    ERASED = "erased", "Erased"


class Recipient(models.Model):
    """An address a unit can write to; the address is normalised (see recipients.addresses)."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(SenderUnit, on_delete=models.PROTECT, related_name="recipients")
    email = models.CharField(max_length=320)
    email_hash = models.CharField(
        max_length=64, db_index=True, help_text="Keyed hash of the address (suppression match)."
    )
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    category = models.CharField(max_length=10, choices=Category.choices)
    locale = models.CharField(max_length=10, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=10, choices=RecipientStatus.choices, default=RecipientStatus.ACTIVE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["unit", "email"], name="recipient_email_unique_per_unit"
            )
        ]
        indexes = [
            models.Index(fields=["unit", "category", "status"], name="recipient_unit_cat_status"),
        ]
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @property
    def audit_label(self) -> str:
        # Audit entries never carry personal data (I9): name the recipient by code.
        return f"recipient {self.code}"

    @property
    def audience(self) -> Audience:
        return Category(self.category).audience

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class RecipientList(models.Model):
    """A named set of recipients of one audience."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(SenderUnit, on_delete=models.PROTECT, related_name="lists")
    name = models.CharField(max_length=200)
    audience = models.CharField(max_length=10, choices=Audience.choices)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["unit", "name"], name="list_name_unique_per_unit")
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ListMembership(models.Model):
    """A recipient on a list."""

    recipient_list = models.ForeignKey(
        RecipientList, on_delete=models.CASCADE, related_name="memberships"
    )
    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="list_memberships"
    )
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["recipient_list", "recipient"], name="one_membership_per_list"
            )
        ]
        indexes = [models.Index(fields=["recipient"], name="listmember_recipient")]

    def __str__(self) -> str:
        return f"recipient {self.recipient_id} on list {self.recipient_list_id}"
