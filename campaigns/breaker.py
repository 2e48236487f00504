"""The circuit breaker: a sending campaign whose complaint or hard-bounce rate passes its unit's
limit pauses itself, says why on its page and tells the unit's administrators.

Mailbox providers judge a sender by these two rates (Gmail and Yahoo ask for complaints under
0.3%); a campaign that goes wrong must stop before it costs every unit its reputation. The rates
are read from the delivery events (reports aggregate the same rows) only after
BREAKER_MIN_ATTEMPTS attempts, so that the first few events cannot swing them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import Count, Q
from django.template.loader import render_to_string
from django.urls import reverse

from campaigns import enqueue
from campaigns.models import (
    BREAKER_MIN_ATTEMPTS,
    BounceKind,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EventKind,
)
from campaigns.selectors import unit_settings
from campaigns.services.status import TransitionError, campaign_pause
from mlm.models import Membership, Role

log = logging.getLogger(__name__)

# What counts as an attempt: a delivery handed to the backend, or that tried to be.
ATTEMPTED = (
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.IN_DOUBT,
)


@dataclass(frozen=True)
class Trip:
    """A limit a campaign passed, with the figures the unit is told."""

    what: str  # "complaint" or "hard-bounce"
    count: int
    attempts: int
    limit: Decimal

    @property
    def rate(self) -> Decimal:
        return Decimal(self.count * 100) / self.attempts

    def sentence(self) -> str:
        noun = "complaints" if self.what == "complaint" else "hard bounces"
        return (
            f"{self.count:,} {noun} in {self.attempts:,} attempts: a {self.what} rate of "
            f"{self.rate:.3f}%, above the unit's limit of {self.limit.normalize():f}%"
        )


def breaker_reading(campaign: Campaign) -> list[Trip]:
    """The limits `campaign` passes now (empty: none, or fewer than BREAKER_MIN_ATTEMPTS).

    Distinct deliveries are counted, so a provider reporting one complaint twice counts once.
    Attempts are counted only as far as they matter: a rate passes its limit while attempts
    stay under count * 100 / limit, so the count stops there (cheap on a million-row campaign).
    """
    limits = unit_settings(campaign.unit)
    counts = DeliveryEvent.objects.filter(
        campaign=campaign,
        kind__in=[EventKind.COMPLAINED, EventKind.BOUNCED],
        delivery__isnull=False,
    ).aggregate(
        complaints=Count("delivery_id", distinct=True, filter=Q(kind=EventKind.COMPLAINED)),
        hard=Count(
            "delivery_id",
            distinct=True,
            filter=Q(kind=EventKind.BOUNCED, bounce_kind=BounceKind.HARD),
        ),
    )
    candidates = [
        ("complaint", counts["complaints"], limits.complaint_rate_limit),
        ("hard-bounce", counts["hard"], limits.hard_bounce_rate_limit),
    ]
    # Above this many attempts no rate can pass its limit.
    cap = max(int(Decimal(count * 100) / limit) + 1 for _, count, limit in candidates)
    if cap <= BREAKER_MIN_ATTEMPTS:
        return []
    attempts = (
        Delivery.objects.filter(campaign=campaign, status__in=ATTEMPTED)
        .order_by()
        .values("pk")[:cap]
        .count()
    )
    if attempts < BREAKER_MIN_ATTEMPTS:
        return []
    return [
        Trip(what, count, attempts, limit)
        for what, count, limit in candidates
        if Decimal(count * 100) > limit * attempts
    ]


def breaker_check(*, campaign_ids: Iterable[int]) -> list[int]:
    """Pause each sending campaign of `campaign_ids` whose rates pass their limits, with the
    reason on the campaign and in the audit log, and mail its unit's administrators after
    commit. Answers the ids paused (a campaign someone paused first is left as it is)."""
    paused = []
    for campaign in Campaign.objects.select_related("unit").filter(
        pk__in=list(campaign_ids), status=CampaignStatus.SENDING
    ):
        trips = breaker_reading(campaign)
        if not trips:
            continue
        reason = (
            "The circuit breaker paused this campaign: "
            + "; and ".join(t.sentence() for t in trips)
            + ". An approver may resume it once the cause is understood."
        )
        try:
            campaign_pause(campaign=campaign, by=None, reason=reason)
        except TransitionError:
            continue
        log.warning("campaign %s paused by the circuit breaker: %s", campaign.code, reason)
        paused.append(campaign.pk)
        enqueue.breaker_mail_on_commit(campaign_id=campaign.pk)
    return paused


def build_breaker_mail(campaign: Campaign) -> EmailMessage | None:
    """The mail that tells the unit's administrators why a campaign paused itself (None if the
    unit has no administrator with an address)."""
    admins = list(
        Membership.objects.filter(unit=campaign.unit, role=Role.ADMIN, user__is_active=True)
        .exclude(user__email="")
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )
    if not admins:
        return None
    path = reverse("campaign_detail", args=[campaign.unit.slug, campaign.code])
    context = {
        "campaign": campaign,
        "unit": campaign.unit,
        "url": settings.SITE_URL.rstrip("/") + path,
    }
    message = EmailMessage(
        subject=f"Campaign “{campaign.name}” paused itself: too many complaints or bounces",
        body=render_to_string("campaigns/mail/breaker_paused.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=admins,
    )
    message.mlm_unit_id = campaign.unit_id
    return message
