"""Campaigns, their layouts and sender identities, the unit's campaign settings, and deliveries.

A campaign is one message of one DM type from one unit to lists of one audience (I3). Its status
changes only through `campaigns.services.status.campaign_transition` (a conditional UPDATE,
audited).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from mlm.models import SenderUnit, UnitScopedQuerySet
from recipients.models import Audience

# The circuit breaker judges a campaign's complaint and hard-bounce rates only after this many
# attempts (sent, failed or deferred deliveries): before, a few events would swing the rate.
BREAKER_MIN_ATTEMPTS = 1000

# The default banned-words list of a unit: the absolute terms China's Advertising Law (art. 9(3))
# forbids in advertising, and English claims that mislead or trip spam filters. A unit edits its
# own copy on the campaign settings page.
DEFAULT_BANNED_WORDS = [
    "最佳",
    "最高级",
    "最高級",
    "最优",
    "最優",
    "最好",
    "国家级",
    "國家級",
    "世界级",
    "世界級",
    "第一品牌",
    "顶级",
    "頂級",
    "极品",
    "極品",
    "独一无二",
    "獨一無二",
    "绝无仅有",
    "絕無僅有",
    "史无前例",
    "史無前例",
    "万能",
    "萬能",
    "guaranteed",
    "risk-free",
    "risk free",
    "100% free",
    "no obligation",
    "act now",
    "once in a lifetime",
    "best in the world",
    "number one",
]


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


class Layout(models.Model):
    """A reusable HTML wrapper of a unit (Jinja2): header, footer, links; `{{ content }}` marks
    where a campaign's body goes."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(SenderUnit, on_delete=models.PROTECT, related_name="layouts")
    name = models.CharField(max_length=200)
    html = models.TextField(help_text="Jinja2 HTML with {{ content }} where the body goes.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["unit", "name"], name="layout_name_unique_per_unit")
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved"
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    PAUSED = "paused", "Paused"
    SENT = "sent", "Sent"
    CANCELLED = "cancelled", "Cancelled"


class BodyFormat(models.TextChoices):
    """How an editor writes a campaign's body; each is turned into the same Jinja2 HTML."""

    MARKDOWN = "markdown", "Markdown"
    RICH_TEXT = "rich_text", "Rich text"
    HTML = "html", "HTML (Jinja2, for experts)"


# Statuses in which the content may still be edited (an edit sends the campaign back to draft).
EDITABLE_STATUSES = frozenset(
    {
        CampaignStatus.DRAFT,
        CampaignStatus.PENDING,
        CampaignStatus.APPROVED,
        CampaignStatus.SCHEDULED,
    }
)


# Statuses in which a sending error on record is news: sending is yet to start, or under way.
SEND_ERROR_STATUSES = frozenset(
    {CampaignStatus.SCHEDULED, CampaignStatus.SENDING, CampaignStatus.PAUSED}
)


class Campaign(models.Model):
    """One message of one DM type from one unit to lists of one audience (I3)."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    unit = models.ForeignKey(SenderUnit, on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(
        max_length=200, help_text="For your unit only; recipients never see it."
    )
    dm_type = models.ForeignKey(
        "consent.DMType", on_delete=models.PROTECT, related_name="campaigns", verbose_name="DM type"
    )
    audience = models.CharField(max_length=10, choices=Audience.choices)
    lists = models.ManyToManyField("recipients.RecipientList", related_name="campaigns", blank=True)
    # A campaign targets lists or one segment (lists narrowed by conditions), never both.
    segment = models.ForeignKey(
        "recipients.Segment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="campaigns",
    )
    segment_sent = models.JSONField(
        default=dict,
        blank=True,
        help_text="The segment as it was when sending started: name, lists and conditions; "
        "the snapshot and the report read this copy.",
    )
    identity = models.ForeignKey(
        SenderIdentity, on_delete=models.PROTECT, related_name="campaigns", verbose_name="From"
    )
    reply_to = models.EmailField(max_length=320, blank=True)
    subject = models.CharField(max_length=1000, blank=True)
    body_format = models.CharField(
        max_length=10, choices=BodyFormat.choices, default=BodyFormat.MARKDOWN
    )
    html_body = models.TextField(
        blank=True, help_text="The body as written, in the campaign's body format."
    )
    text_body = models.TextField(
        blank=True, help_text="Optional; generated from the HTML when empty."
    )
    layout = models.ForeignKey(
        Layout, null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns"
    )
    status = models.CharField(
        max_length=10, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT, db_index=True
    )
    revision = models.PositiveIntegerField(
        default=1, help_text="Grows with every edit; approval names the revision it saw."
    )
    acknowledgements = models.JSONField(
        default=dict,
        blank=True,
        help_text="Banned-word findings the editor acknowledged: {word: {reason, by, at}}.",
    )
    scheduled_at = models.DateTimeField(null=True, blank=True)
    review_comment = models.TextField(blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who scheduled or started the sending.",
    )
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(
        default=0,
        help_text="Transient send failures since the last success; dispatch pauses at a limit.",
    )
    pause_reason = models.TextField(
        blank=True,
        help_text="Why the system paused it (failures, bounce or complaint rate); empty if a "
        "person did, and cleared on resume.",
    )
    send_error = models.CharField(
        max_length=500,
        blank=True,
        help_text="The last error of its sending (class and message, never an address); cleared "
        "when sending goes forward.",
    )
    send_error_at = models.DateTimeField(null=True, blank=True)
    send_error_attempts = models.PositiveIntegerField(
        default=0, help_text="Attempts that failed in a row with that error."
    )
    send_error_next_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When sending is tried again; empty with an error: no attempt is planned.",
    )

    objects = UnitScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["unit", "status"], name="campaign_unit_status"),
            models.Index(
                fields=["scheduled_at"],
                condition=Q(status="scheduled"),
                name="campaign_due",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def audit_label(self) -> str:
        return f"campaign {self.name}"[:200]

    @property
    def is_editable(self) -> bool:
        return self.status in EDITABLE_STATUSES

    @property
    def send_failing(self) -> bool:
        """Its sending has an error on record and is not over (sent or cancelled)."""
        return bool(self.send_error) and self.status in SEND_ERROR_STATUSES

    @property
    def send_gave_up(self) -> bool:
        """Sending failed and no automatic attempt is planned: a person must look."""
        return bool(self.send_error) and self.send_error_next_at is None


class UnitCampaignSettings(models.Model):
    """A unit's rules for its campaigns: self-approval, its frequency cap, its banned words,
    tracking and web versions."""

    unit = models.OneToOneField(
        SenderUnit, on_delete=models.CASCADE, related_name="campaign_settings"
    )
    allow_self_approval = models.BooleanField(
        default=False, help_text="An approver may approve a campaign they wrote themselves."
    )
    frequency_cap_mails = models.PositiveIntegerField(
        default=0, help_text="At most this many DM mails per recipient (0: no cap)…"
    )
    frequency_cap_days = models.PositiveIntegerField(default=7, help_text="…per this many days.")
    banned_words = models.TextField(
        blank=True,
        default="\n".join(DEFAULT_BANNED_WORDS),
        help_text="One word or phrase per line; matched without regard to case.",
    )
    mail_backend = models.CharField(
        max_length=20,
        blank=True,
        help_text="The unit's mail backend, a name from settings.MLM_MAIL_BACKENDS; empty: the "
        "default (EMAIL_BACKEND).",
    )
    complaint_rate_limit = models.DecimalField(
        max_digits=5,
        decimal_places=3,
        default=Decimal("0.300"),
        validators=[MinValueValidator(Decimal("0.001")), MaxValueValidator(Decimal("0.300"))],
        help_text="Pause a campaign whose complaint rate passes this percentage after "
        f"{BREAKER_MIN_ATTEMPTS:,} attempts (at most 0.3%).",
    )
    hard_bounce_rate_limit = models.DecimalField(
        max_digits=5,
        decimal_places=3,
        default=Decimal("5.000"),
        validators=[MinValueValidator(Decimal("0.001")), MaxValueValidator(Decimal("5.000"))],
        help_text="Pause a campaign whose hard-bounce rate passes this percentage after "
        f"{BREAKER_MIN_ATTEMPTS:,} attempts (at most 5%).",
    )
    tracking_enabled = models.BooleanField(
        default=False,
        help_text="Track opens and clicks (off by default; the preference centre says so).",
    )
    web_version_enabled = models.BooleanField(
        default=True,
        help_text="Every mail links to its web version (on by default); off, the links of "
        "mails already sent show the page of an invalid link.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "unit campaign settings"

    def __str__(self) -> str:
        return f"campaign settings of {self.unit}"

    @property
    def banned_word_list(self) -> list[str]:
        return [w.strip() for w in self.banned_words.splitlines() if w.strip()]


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
