"""DM types with versioned notices, the consent ledger, subscriptions and suppressions."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from mlm.languages import text_in
from mlm.models import SenderUnit, UnitScopedQuerySet


class DMType(models.Model):
    """A kind of direct marketing a unit sends; consent is given and withdrawn per DM type."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(SenderUnit, on_delete=models.PROTECT, related_name="dm_types")
    key = models.SlugField(max_length=60, help_text="Short stable name, e.g. events.")
    name = models.CharField(max_length=200)
    name_zh_hant = models.CharField("name (Traditional Chinese)", max_length=200, blank=True)
    name_zh_hans = models.CharField("name (Simplified Chinese)", max_length=200, blank=True)
    internal_default = models.BooleanField(
        default=False,
        help_text="Internal recipients receive it unless they withdrew.",
    )
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["unit", "key"], name="dmtype_key_unique_per_unit")
        ]
        ordering = ["name"]
        verbose_name = "DM type"

    def __str__(self) -> str:
        return self.name

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def current_notice(self) -> DMTypeNotice | None:
        return self.notices.order_by("-version").first()

    @property
    def local_name(self) -> str:
        """The name in the active language, else in English."""
        return text_in(self, "name")


class DMTypeNotice(models.Model):
    """One version of the text that tells people what marketing a DM type is (PDPO s35C)."""

    dm_type = models.ForeignKey(DMType, on_delete=models.PROTECT, related_name="notices")
    version = models.PositiveIntegerField()
    text = models.TextField()
    text_zh_hant = models.TextField("text (Traditional Chinese)", blank=True)
    text_zh_hans = models.TextField("text (Simplified Chinese)", blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dm_type", "version"], name="one_notice_per_version")
        ]
        ordering = ["dm_type", "-version"]

    def __str__(self) -> str:
        return f"{self.dm_type} v{self.version}"

    @property
    def local_text(self) -> str:
        """The text in the active language, else in English."""
        return text_in(self, "text")


class Action(models.TextChoices):
    GRANT = "grant", "Grant"
    WITHDRAW = "withdraw", "Withdraw"


class Channel(models.TextChoices):
    IMPORT = "import", "Import attestation"
    DOUBLE_OPT_IN = "double_opt_in", "Double opt-in"
    PREFERENCE_CENTRE = "preference_centre", "Preference centre"
    ONE_CLICK = "one_click", "One-click unsubscribe"
    ADMIN = "admin", "Administrator"
    BOUNCE = "bounce", "Bounce"
    COMPLAINT = "complaint", "Complaint"
    API = "api", "API"


ERASED_EVIDENCE = "[erased]"  # what erasure leaves of a consent event's evidence (I9)


class ConsentEvent(models.Model):
    """One append-only fact of the ledger (I4): a grant or a withdrawal, with its proof.

    `dm_type` empty means every DM type of the unit, now and later. The application never
    updates or deletes a row; PostgreSQL triggers refuse it too, with one exception: erasure
    (I9) clears the IP address and user agent of an erased recipient's events and replaces their
    evidence by ERASED_EVIDENCE (consent.erasure.anonymise_events). `actor_label` names staff or
    a role ("recipient", "system"), never the recipient, so that nothing else needs changing.
    """

    # The ledger is read by unit (reports) and by recipient (consent_recipient_latest), never by
    # DM type, notice or actor; DM types and notices are never deleted and actors are not
    # constrained, so no PROTECT looks their events up. Each index would cost every import an
    # entry per event.
    unit = models.ForeignKey(SenderUnit, on_delete=models.PROTECT, related_name="+")
    recipient = models.ForeignKey(
        "recipients.Recipient",
        on_delete=models.PROTECT,
        related_name="consent_events",
        db_index=False,
    )
    dm_type = models.ForeignKey(
        DMType, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    channel = models.CharField(max_length=20, choices=Channel.choices)
    evidence = models.TextField(blank=True)
    notice = models.ForeignKey(
        DMTypeNotice,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
        db_index=False,
    )
    actor_label = models.CharField(max_length=150)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    campaign_code = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(action="withdraw") | ~Q(evidence=""),
                name="consent_grant_has_evidence",
            )
        ]
        indexes = [models.Index(fields=["recipient", "-id"], name="consent_recipient_latest")]
        ordering = ["-id"]

    def __str__(self) -> str:
        scope = self.dm_type.name if self.dm_type_id else "all DM types"
        return f"{self.action} {scope} ({self.channel})"


class SubscriptionState(models.TextChoices):
    GRANTED = "granted", "Subscribed"
    WITHDRAWN = "withdrawn", "Withdrawn"


class Subscription(models.Model):
    """The current state of (recipient, DM type) — the fold of the ledger, written with each event.

    A row with an empty DM type holds the latest event for "all DM types of the unit"; the
    state of (R, T) is whichever of the T row and the all row has the later event (I1, I4).
    """

    unit = models.ForeignKey(SenderUnit, on_delete=models.PROTECT, related_name="+")
    # Kept: the partial unique indexes below cannot serve a plain `recipient_id = X`.
    recipient = models.ForeignKey(
        "recipients.Recipient", on_delete=models.CASCADE, related_name="subscriptions"
    )
    # subscription_by_type leads with it.
    dm_type = models.ForeignKey(
        DMType,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="subscriptions",
        db_index=False,
    )
    state = models.CharField(max_length=10, choices=SubscriptionState.choices)
    # Nothing looks rows up by event, and events are never deleted (I4).
    event = models.ForeignKey(
        ConsentEvent, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "dm_type"],
                condition=Q(dm_type__isnull=False),
                name="one_subscription_per_dm_type",
            ),
            models.UniqueConstraint(
                fields=["recipient"],
                condition=Q(dm_type__isnull=True),
                name="one_all_types_subscription",
            ),
        ]
        # `sendable` (I1) reads state and event from these indexes alone, never the table: on
        # PostgreSQL migration 0006 also makes the "all DM types" unique index cover them.
        indexes = [
            models.Index(
                fields=["dm_type", "recipient", "event", "state"], name="subscription_by_type"
            ),
        ]

    def __str__(self) -> str:
        scope = f"DM type {self.dm_type_id}" if self.dm_type_id else "all DM types"
        return f"recipient {self.recipient_id}: {self.state} ({scope})"


class SuppressionReason(models.TextChoices):
    HARD_BOUNCE = "hard_bounce", "Hard bounce"
    COMPLAINT = "complaint", "Complaint"
    ERASURE = "erasure", "Erasure"
    OPT_OUT = "opt_out", "Opted out of all marketing"
    MANUAL = "manual", "Manual"


class Suppression(models.Model):
    """An address that must not be mailed, by one unit (unit set) or by any (unit empty).

    The keyed hash of the address's identity (every case variant, see recipients.addresses)
    always matches; the address itself is kept for display, except after erasure.
    """

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(
        SenderUnit, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    email = models.CharField(max_length=320, blank=True)
    email_hash = models.CharField(max_length=64)
    case_sensitive = models.BooleanField(
        default=False,
        help_text=(
            "Kept as a hash alone from before addresses matched in any case: its hash is of the "
            "address as written. It is re-hashed when one of its addresses is seen again."
        ),
    )
    reason = models.CharField(max_length=20, choices=SuppressionReason.choices)
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # for_unit: the unit's own suppressions, not the global ones (those of every unit).
    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["unit", "email_hash"],
                condition=Q(unit__isnull=False),
                name="one_suppression_per_unit_address",
            ),
            models.UniqueConstraint(
                fields=["email_hash"],
                condition=Q(unit__isnull=True),
                name="one_global_suppression_per_address",
            ),
        ]
        indexes = [models.Index(fields=["email_hash", "unit"], name="suppression_lookup")]

    def __str__(self) -> str:
        # No address here: the admin's history keeps str(obj), and erasure (I9) must leave
        # nothing behind. The address is shown in its own column while it is held.
        scope = self.unit.name if self.unit_id else "every unit"
        return f"suppression {self.email_hash[:12]} ({self.get_reason_display()}, {scope})"

    @property
    def audit_label(self) -> str:
        return f"suppression {self.code}"


class SubscriptionRequest(models.Model):
    """A double opt-in request from the public form: nothing is granted until its link is
    followed and confirmed (I2). Unconfirmed requests expire and are deleted, leaving no
    recipient behind; the grant's evidence keeps what the form said."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(SenderUnit, on_delete=models.CASCADE, related_name="+")
    email = models.CharField(max_length=320)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    locale = models.CharField(max_length=10, blank=True)
    dm_types = models.ManyToManyField(DMType, related_name="+")
    wording = models.TextField(help_text="What the form said, as the person saw it (evidence).")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"subscription request {self.code}"

    @property
    def audit_label(self) -> str:
        return f"subscription request {self.code}"
