"""Sender identities: the From names and addresses a unit may send as."""

from __future__ import annotations

import uuid

from django.db import models

from mlm.models import SenderUnit, UnitScopedQuerySet


class IdentityStatus(models.TextChoices):
    PENDING = "pending", "Waiting for operations"
    APPROVED = "approved", "Usable"


class SenderIdentityQuerySet(UnitScopedQuerySet):
    def usable(self) -> SenderIdentityQuerySet:
        """Identities a campaign may send as: those not waiting for operations."""
        return self.filter(status=IdentityStatus.APPROVED)


class SenderIdentity(models.Model):
    """A From name and address a unit may send as: set up by operations in Django admin, or
    requested by the unit's administrator (usable at once when its domain is ready)."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(SenderUnit, on_delete=models.PROTECT, related_name="identities")
    name = models.CharField(max_length=200, help_text="Display name, e.g. Faculty of Engineering.")
    email = models.EmailField(max_length=320)
    reply_to = models.EmailField(max_length=320, blank=True, help_text="Default Reply-To.")
    status = models.CharField(
        max_length=10, choices=IdentityStatus.choices, default=IdentityStatus.APPROVED
    )
    pending_reason = models.TextField(
        blank=True, help_text="Why it waits for operations (its domain's key or DNS checks)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SenderIdentityQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["unit", "email"], name="identity_email_unique_per_unit")
        ]
        ordering = ["name", "email"]
        verbose_name_plural = "sender identities"

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"
