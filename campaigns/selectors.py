"""Reads with rules: a campaign's audience (who would get it and who not, and why), the
frequency caps, the sample and preview recipients, the campaign list."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    IntegerField,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns.models import (
    SEND_ERROR_STATUSES,
    Campaign,
    Delivery,
    DeliveryStatus,
    IdentityStatus,
    SenderIdentity,
    SkipReason,
    UnitCampaignSettings,
)
from campaigns.segments import campaign_segment
from consent.models import DMType, Subscription, SubscriptionState, Suppression
from consent.selectors import sendable
from consent.tokens import read_web_version_token
from mlm.models import Role, SenderUnit
from recipients.models import Category, ListMembership, Recipient, RecipientStatus
from recipients.selectors import segment_narrow


def unit_settings(unit: SenderUnit) -> UnitCampaignSettings:
    """The unit's campaign settings (defaults until an administrator changes them)."""
    found = UnitCampaignSettings.objects.filter(unit=unit).first()
    return found if found is not None else UnitCampaignSettings(unit=unit)


def unit_tracks_engagement(unit_id: int) -> bool:
    """Whether the unit tracks opens and clicks of its mail (off unless it chose so); the
    preference centre says which."""
    found = UnitCampaignSettings.objects.filter(unit_id=unit_id).values_list(
        "tracking_enabled", flat=True
    )
    return bool(found.first())


# Deliveries that may have reached their recipient: only their mail has a web version.
WEB_VERSION_STATUSES = (DeliveryStatus.SENT, DeliveryStatus.IN_DOUBT)


def web_version_delivery(token: str) -> Delivery | None:
    """The delivery whose web version a token asks for, with its campaign and recipient.

    None for a token we did not sign, and for a delivery that never reached its recipient
    (skipped, queued, failed: a campaign cancelled before sending has none), whose recipient is
    erased (I9), or whose unit turned web versions off: the page answers all of them alike.
    """
    data = read_web_version_token(token)
    if data is None:
        return None
    delivery = (
        Delivery.objects.select_related(
            "campaign__unit", "campaign__dm_type", "campaign__identity", "campaign__layout"
        )
        .select_related("recipient")
        .filter(
            campaign__code=data.campaign_code,
            recipient__code=data.recipient_code,
            status__in=WEB_VERSION_STATUSES,
        )
        .exclude(recipient__status=RecipientStatus.ERASED)
        .first()
    )
    if delivery is None or not unit_settings(delivery.campaign.unit).web_version_enabled:
        return None
    return delivery


@dataclass(frozen=True)
class SetupStep:
    """One thing a unit needs before its first campaign can be sent."""

    key: str
    label: str
    url_name: str
    role: Role  # the role whose page does it
    done: bool
    note: str = ""


def pending_identities(unit: SenderUnit) -> list[SenderIdentity]:
    """The unit's From addresses that wait for operations to approve them."""
    return list(SenderIdentity.objects.for_unit(unit).filter(status=IdentityStatus.PENDING))


def setup_steps(unit: SenderUnit) -> list[SetupStep]:
    """What a unit has, and lacks, to send its first campaign, in the order to set it up."""
    pending = pending_identities(unit)
    waiting = ""
    if pending:
        waiting = "Waiting for operations to approve " + ", ".join(i.email for i in pending) + "."
    has_members = ListMembership.objects.filter(recipient_list__unit=unit).exists()
    return [
        SetupStep(
            "identity",
            "Request a From address",
            "identity_request",
            Role.ADMIN,
            SenderIdentity.objects.for_unit(unit).usable().exists(),
            waiting,
        ),
        SetupStep(
            "dm_type",
            "Define a DM type",
            "dm_type_create",
            Role.ADMIN,
            DMType.objects.for_unit(unit).filter(archived_at__isnull=True).exists(),
        ),
        SetupStep(
            "list", "Create a list and add recipients", "list_create", Role.EDITOR, has_members
        ),
        SetupStep(
            "campaign",
            "Write a first campaign",
            "campaign_create",
            Role.EDITOR,
            Campaign.objects.for_unit(unit).exists(),
        ),
    ]


def campaign_list(unit: SenderUnit) -> QuerySet[Campaign]:
    """The unit's campaigns with what the list page shows, sent count from the deliveries."""
    return (
        Campaign.objects.for_unit(unit)
        .select_related("dm_type", "created_by")
        .annotate(
            sent=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.SENT)),
        )
    )


def campaign_members(campaign: Campaign) -> QuerySet[Recipient]:
    """Distinct recipients on the campaign's lists, or of its segment (whatever their consent).

    A segment's lists and conditions are those kept when sending started, once it has."""
    recipients = Recipient.objects.filter(unit_id=campaign.unit_id)
    target = campaign_segment(campaign)
    if target is not None:
        lists = [rl["id"] for rl in target["lists"]]
        return segment_narrow(recipients, lists=lists, conditions=target["conditions"])
    on_lists = ListMembership.objects.filter(
        recipient_list__campaigns=campaign, recipient=OuterRef("pk")
    )
    return recipients.filter(Exists(on_lists))


def campaign_list_entries(campaign: Campaign) -> int:
    """How many list entries the campaign's members have on its lists (a recipient on two
    lists is two entries)."""
    target = campaign_segment(campaign)
    if target is None:
        return ListMembership.objects.filter(recipient_list__campaigns=campaign).count()
    return ListMembership.objects.filter(
        recipient_list__in=[rl["id"] for rl in target["lists"]],
        recipient__in=campaign_members(campaign).values("pk"),
    ).count()


def sample_recipient(campaign: Campaign) -> Recipient | None:
    """The recipient the checks render for: the first active member of the lists, if any."""
    return (
        campaign_members(campaign).filter(status=RecipientStatus.ACTIVE).order_by("email").first()
    )


def preview_recipients(campaign: Campaign, query: str = "", limit: int = 20) -> list[Recipient]:
    """Members of the campaign's lists whose address contains `query` (the preview search)."""
    members = campaign_members(campaign).exclude(status=RecipientStatus.ERASED)
    if query:
        members = members.filter(email__icontains=query.strip())
    return list(members.order_by("email")[:limit])


@dataclass(frozen=True)
class FrequencyCap:
    mails: int
    days: int
    scope: str  # "unit" or "institution"

    @property
    def since(self):
        return timezone.now() - timedelta(days=self.days)

    def __str__(self) -> str:
        return f"at most {self.mails} DM mail{'s' if self.mails != 1 else ''} per {self.days} days"


def frequency_caps(unit: SenderUnit) -> list[FrequencyCap]:
    """The caps in force: the unit's own and the institution's (each off when 0)."""
    caps = []
    own = unit_settings(unit)
    if own.frequency_cap_mails and own.frequency_cap_days:
        caps.append(FrequencyCap(own.frequency_cap_mails, own.frequency_cap_days, "unit"))
    mails = settings.MLM_FREQUENCY_CAP_MAILS
    days = settings.MLM_FREQUENCY_CAP_DAYS
    if mails and days:
        caps.append(FrequencyCap(mails, days, "institution"))
    return caps


def over_cap(queryset: QuerySet[Recipient], cap: FrequencyCap) -> QuerySet[Recipient]:
    """Recipients of `queryset` who already got `cap.mails` DM mails in the cap's window: from
    this unit (unit cap, by recipient) or from any unit to the same address (institution)."""
    sent = Delivery.objects.filter(status=DeliveryStatus.SENT, sent_at__gte=cap.since)
    if cap.scope == "unit":
        sent = sent.filter(recipient=OuterRef("pk"))
    else:
        sent = sent.filter(email_hash=OuterRef("email_hash"))
    count = sent.order_by().values("email_hash").annotate(n=Count("id")).values("n")[:1]
    return queryset.annotate(
        recent=Coalesce(Subquery(count, output_field=IntegerField()), 0)
    ).filter(recent__gte=cap.mails)


@dataclass
class AudienceSummary:
    """Who a campaign would reach now, and why the others would be skipped."""

    list_entries: int = 0
    recipients: int = 0
    duplicates: int = 0
    sendable: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    caps: list[tuple[FrequencyCap, int]] = field(default_factory=list)

    @property
    def skipped_rows(self) -> list[tuple[str, int]]:
        labels = dict(SkipReason.choices)
        return [(labels[k], n) for k, n in self.skipped.items() if n]


def skip_reason(campaign: Campaign) -> Case:
    """Why a member of the campaign's lists is not sendable, as an expression on recipients:
    the reason the audience preview counts and the delivery snapshot records. Meaningful only
    for members `sendable` (I1) refused; it sorts them for people to read, decides nothing."""
    suppressed = Suppression.objects.filter(
        Q(unit_id=campaign.unit_id) | Q(unit__isnull=True), email_hash=OuterRef("email_hash")
    )
    withdrawn = Subscription.objects.filter(
        Q(dm_type=campaign.dm_type) | Q(dm_type__isnull=True),
        recipient=OuterRef("pk"),
        state=SubscriptionState.WITHDRAWN,
    )
    return Case(
        When(status=RecipientStatus.BOUNCED, then=Value(SkipReason.BOUNCED.value)),
        When(status=RecipientStatus.COMPLAINED, then=Value(SkipReason.COMPLAINED.value)),
        When(status=RecipientStatus.ERASED, then=Value(SkipReason.ERASED.value)),
        When(
            ~Q(category__in=Category.of_audience(campaign.audience)),
            then=Value(SkipReason.OTHER_AUDIENCE.value),
        ),
        When(Exists(suppressed), then=Value(SkipReason.SUPPRESSED.value)),
        When(Exists(withdrawn), then=Value(SkipReason.WITHDRAWN.value)),
        default=Value(SkipReason.NO_CONSENT.value),
        output_field=CharField(),
    )


def audience_summary(campaign: Campaign) -> AudienceSummary:
    """Sendable and skipped-by-reason counts for the campaign's lists, now.

    Who is sendable comes from `consent.selectors.sendable` (I1), never from a rule of our own;
    the reasons only sort the others for people to read. Frequency caps then skip some of the
    sendable ones; a recipient on several lists is counted once (the rest are duplicates).
    """
    summary = AudienceSummary()
    summary.list_entries = campaign_list_entries(campaign)
    members = campaign_members(campaign)
    summary.recipients = members.count()
    summary.duplicates = summary.list_entries - summary.recipients
    if not summary.recipients:
        return summary
    allowed = sendable(unit=campaign.unit, dm_type=campaign.dm_type, audience=campaign.audience)
    allowed_ids = allowed.values("pk")
    reasons = (
        members.exclude(pk__in=allowed_ids)
        .annotate(reason=skip_reason(campaign))
        .order_by()
        .values("reason")
        .annotate(n=Count("pk"))
    )
    summary.skipped = {row["reason"]: row["n"] for row in reasons}
    reachable = members.filter(pk__in=allowed_ids)
    capped = Recipient.objects.none()
    for cap in frequency_caps(campaign.unit):
        over = over_cap(reachable, cap)
        summary.caps.append((cap, over.count()))
        capped = capped | Recipient.objects.filter(pk__in=over.values("pk"))
    capped_ids = set(capped.values_list("pk", flat=True)) if summary.caps else set()
    for cap, count in summary.caps:
        reason = SkipReason.UNIT_CAP if cap.scope == "unit" else SkipReason.INSTITUTION_CAP
        summary.skipped[reason] = count
    summary.sendable = reachable.count() - len(capped_ids)
    if summary.duplicates:
        summary.skipped[SkipReason.DUPLICATE] = summary.duplicates
    return summary


def campaigns_due(now=None) -> QuerySet[Campaign]:
    """Scheduled campaigns whose time has come (the beat task of dispatch starts them)."""
    return Campaign.objects.filter(
        status="scheduled", scheduled_at__lte=now or timezone.now()
    ).order_by("scheduled_at")


def deferred_due(campaign_id: int) -> datetime | None:
    """When the campaign's first deferred delivery is due again, or None if none is deferred."""
    rows = Delivery.objects.filter(campaign_id=campaign_id, status=DeliveryStatus.DEFERRED)
    return rows.aggregate(at=Min("next_attempt_at"))["at"]


def campaigns_failing(unit: SenderUnit) -> QuerySet[Campaign]:
    """The unit's campaigns whose sending has an error on record, latest error first."""
    return (
        Campaign.objects.for_unit(unit)
        .exclude(send_error="")
        .filter(status__in=SEND_ERROR_STATUSES)
        .order_by("-send_error_at")
    )


@dataclass(frozen=True)
class Progress:
    """Counts of a campaign's deliveries by status, and the recent sending rate."""

    queued: int = 0
    sending: int = 0
    sent: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0
    in_doubt: int = 0
    rate: float = 0.0  # messages a second over the last minute

    @property
    def total(self) -> int:
        return (
            self.queued
            + self.sending
            + self.sent
            + self.skipped
            + self.deferred
            + self.failed
            + self.in_doubt
        )

    def percent(self, name: str) -> float:
        return round(100 * getattr(self, name) / self.total, 1) if self.total else 0.0

    @property
    def done_percent(self) -> float:
        if not self.total:
            return 0.0
        done = self.sent + self.skipped + self.failed + self.in_doubt
        return round(100 * done / self.total, 1)


def campaign_progress(campaign: Campaign) -> Progress:
    """How far the campaign's sending is (one query for counts, one for the rate)."""
    counts = dict(
        Delivery.objects.filter(campaign=campaign)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )
    since = timezone.now() - timedelta(seconds=60)
    recent = Delivery.objects.filter(
        campaign=campaign, status=DeliveryStatus.SENT, sent_at__gte=since
    ).count()
    return Progress(
        queued=counts.get(DeliveryStatus.QUEUED, 0),
        sending=counts.get(DeliveryStatus.SENDING, 0),
        sent=counts.get(DeliveryStatus.SENT, 0),
        skipped=counts.get(DeliveryStatus.SKIPPED, 0),
        deferred=counts.get(DeliveryStatus.DEFERRED, 0),
        failed=counts.get(DeliveryStatus.FAILED, 0),
        in_doubt=counts.get(DeliveryStatus.IN_DOUBT, 0),
        rate=round(recent / 60, 1),
    )
