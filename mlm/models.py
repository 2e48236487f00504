"""Sender units (the tenants), memberships with roles, the audit log, the embedded outbox and
the sending domains with their DKIM keys."""

from __future__ import annotations

import uuid
import zoneinfo
from functools import cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from mlm.languages import text_in


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value: str) -> None:
    if value not in _timezones():
        raise ValidationError(f"{value!r} is not a known time zone (e.g. Asia/Hong_Kong).")


class SenderUnit(models.Model):
    """A department or office that sends mail; every business row belongs to exactly one."""

    name = models.CharField(max_length=200)
    name_zh_hant = models.CharField(
        "name (Traditional Chinese)",
        max_length=200,
        blank=True,
        help_text="For recipients who read Traditional Chinese; empty: the English name.",
    )
    name_zh_hans = models.CharField(
        "name (Simplified Chinese)",
        max_length=200,
        blank=True,
        help_text="For recipients who read Simplified Chinese; empty: the English name.",
    )
    slug = models.SlugField(max_length=60, unique=True, help_text="Used in URLs: /units/<slug>/")
    postal_address = models.TextField(
        help_text="Shown in the footer of every mail (required by anti-spam laws)."
    )
    postal_address_zh_hant = models.TextField(
        "postal address (Traditional Chinese)",
        blank=True,
        help_text="For recipients who read Traditional Chinese; empty: the English address.",
    )
    postal_address_zh_hans = models.TextField(
        "postal address (Simplified Chinese)",
        blank=True,
        help_text="For recipients who read Simplified Chinese; empty: the English address.",
    )
    timezone = models.CharField(
        max_length=64, default="Asia/Hong_Kong", validators=[validate_timezone]
    )
    default_locale = models.CharField(
        max_length=10, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def local_name(self) -> str:
        """The name in the active language, else in English."""
        return text_in(self, "name")

    @property
    def local_postal_address(self) -> str:
        """The postal address in the active language, else in English."""
        return text_in(self, "postal_address")


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    EDITOR = "editor", "Editor"
    APPROVER = "approver", "Approver"
    ADMIN = "admin", "Administrator"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """True if this role is at least `needed` (viewer < editor < approver < admin)."""
        return self.rank >= Role(needed).rank


class Membership(models.Model):
    """A user's role in one unit."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    unit = models.ForeignKey(SenderUnit, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "unit"], name="one_membership_per_user_unit")
        ]
        ordering = ["unit__name"]

    def __str__(self) -> str:
        return f"{self.user} in {self.unit} ({self.get_role_display()})"

    def allows(self, needed: Role) -> bool:
        return Role(self.role).allows(needed)


class UnitScopedQuerySet(models.QuerySet):
    """The one scoping entry: every unit-owned model's rows are read through `for_unit`."""

    def for_unit(self, unit: SenderUnit) -> UnitScopedQuerySet:
        return self.filter(unit=unit)


class AuditEntry(models.Model):
    """Append-only record of who did what to which object in which unit.

    Entries name objects by code or id, never by personal data, so that erasing a recipient
    (I9) leaves nothing personal here.
    """

    unit = models.ForeignKey(
        SenderUnit, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_label = models.CharField(max_length=150, help_text="User name at the time, or 'system'.")
    verb = models.CharField(max_length=64, help_text="What was done, e.g. unit.create.")
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["unit", "-created_at"], name="audit_unit_time")]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_label} {self.verb} {self.object_type} {self.object_repr}".strip()

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValueError("Audit entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit entries are append-only.")


class Heartbeat(models.Model):
    """When a background component last proved it was alive (the worker's health task)."""

    name = models.CharField(max_length=64, primary_key=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.seen_at:%Y-%m-%d %H:%M:%S}"


class OutboxMessage(models.Model):
    """A message kept by the embedded default's mail backend, readable in the browser."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(
        SenderUnit, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    campaign = models.ForeignKey(
        "campaigns.Campaign",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The campaign the message is a mail of (a delivery or a test); empty otherwise.",
    )
    from_email = models.CharField(max_length=320)
    recipients = models.TextField(help_text="Envelope recipients, one per line.")
    about_hash = models.CharField(
        max_length=64,
        blank=True,
        help_text="Keyed hash of the address of the person the message is rendered as, when it "
        "is not mailed to them (a campaign's [TEST] mail as a recipient): their erasure deletes "
        "it, and their export lists it.",
    )
    subject = models.CharField(max_length=500, blank=True)
    raw = models.BinaryField(help_text="The message exactly as a relay would receive it.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["about_hash"], condition=~Q(about_hash=""), name="outbox_about")
        ]

    def __str__(self) -> str:
        return self.subject or "(no subject)"


_DOMAIN_RE = r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$"
_SELECTOR_RE = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"


class SendingDomainQuerySet(models.QuerySet):
    def active_for(self, domain: str) -> SendingDomain | None:
        """The key that signs mail From `domain` now, if operations gave it one."""
        return self.filter(domain=domain.strip().lower().rstrip("."), active=True).first()


class SendingDomain(models.Model):
    """A From domain we sign for on our own SMTP path: its DKIM selector and key pair.

    A unit's From domain is looked up here by name; one key per domain is active at a time, so a
    new key can be published in DNS before it is switched on. The private key is kept encrypted
    (Fernet, MLM_DKIM_ENCRYPTION_KEY) and never shown.
    """

    domain = models.CharField(
        max_length=253,
        validators=[RegexValidator(_DOMAIN_RE, "A lower-case domain name, e.g. example.edu.")],
    )
    selector = models.CharField(
        max_length=63,
        validators=[RegexValidator(_SELECTOR_RE, "Letters, digits and hyphens, e.g. mlm2025.")],
        help_text="The DKIM selector: the key is published at <selector>._domainkey.<domain>.",
    )
    private_key_encrypted = models.TextField(editable=False)
    public_key = models.TextField(
        editable=False, help_text="Base64 of the DER SubjectPublicKeyInfo: the p= of the record."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SendingDomainQuerySet.as_manager()

    class Meta:
        ordering = ["domain", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "selector"], name="one_key_per_selector"),
            models.UniqueConstraint(
                fields=["domain"],
                condition=models.Q(active=True),
                name="one_active_key_per_domain",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"
