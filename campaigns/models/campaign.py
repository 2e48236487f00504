"""Campaigns and the layouts they are wrapped in; the campaign's statuses and body formats.

A campaign is one message of one DM type from one unit to lists of one audience (I3). Its status
changes only through `campaigns.services.status.campaign_transition` (a conditional UPDATE,
audited).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from campaigns.models.identities import SenderIdentity
from mlm.models import SenderUnit, UnitScopedQuerySet
from recipients.models import Audience


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
