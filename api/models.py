"""API keys: per unit, with a role, stored as a hash with a short visible prefix."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from mlm.models import SenderUnit, UnitScopedQuerySet


class ApiRole(models.TextChoices):
    VIEWER = "viewer", "Viewer (reads)"
    EDITOR = "editor", "Editor (reads and writes)"
    CONSENT_WRITER = "consent-writer", "Consent writer (records consent only)"

    def allows(self, needed: ApiRole) -> bool:
        """An editor may do what a viewer may; a consent writer only records consent."""
        return self == needed or (self == ApiRole.EDITOR and needed == ApiRole.VIEWER)


class ApiKey(models.Model):
    """A secret another system sends as `Authorization: Bearer <key>`; only its SHA-256 is kept
    (the secret has 256 bits of entropy, so a plain hash cannot be reversed by guessing)."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(SenderUnit, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="Which system uses it, e.g. Alumni portal.")
    role = models.CharField(max_length=20, choices=ApiRole.choices)
    prefix = models.CharField(max_length=16, unique=True, help_text="Shown to identify the key.")
    secret_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def api_role(self) -> ApiRole:
        return ApiRole(self.role)


class IdempotentRequest(models.Model):
    """The answer given to a request sent with an `Idempotency-Key` header, kept for a day so
    that a retried request gets the same answer instead of a second write. Holds no personal
    data: the body is known only by a keyed hash, the answer names recipients by code."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField()
    body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "key"], name="one_answer_per_idempotency_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"
