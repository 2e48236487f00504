"""A sent campaign with known deliveries and events, for the report tests (page, CSV, browser).

Rows are written in bulk, as dispatch and feedback would have left them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from campaigns.models import (
    BounceKind,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EventKind,
    SkipReason,
)
from consent.models import Channel
from consent.services import withdraw
from recipients.addresses import address_hash
from recipients.models import Category, Recipient, RecipientStatus
from tests.campaigns import factories

S, SK = DeliveryStatus, SkipReason


@dataclass
class Sent:
    """A campaign that went out an hour or three ago, with known deliveries and events."""

    campaign: Campaign
    t0: datetime  # the start of the hour the first mails went out
    by_email: dict[str, Delivery]


def recipients(unit, emails, status=RecipientStatus.ACTIVE) -> list[Recipient]:
    return Recipient.objects.bulk_create(
        Recipient(
            unit=unit,
            email=e,
            email_hash=address_hash(e),
            category=Category.EXTERNAL,
            status=status,
        )
        for e in emails
    )


def _event(sent: Sent, email: str, kind: str, hours: float, key: str, bounce: str = ""):
    delivery = sent.by_email[email]
    return DeliveryEvent(
        source="test",
        event_key=key,
        kind=kind,
        bounce_kind=bounce,
        delivery=delivery,
        campaign=sent.campaign,
        unit=sent.campaign.unit,
        occurred_at=sent.t0 + timedelta(hours=hours),
    )


def sent_campaign(world, name: str = "Spring news") -> Sent:
    """23 deliveries: 17 sent (9 to example.com, 5 to example.org, 1 to rare.net, 2 to erased
    recipients), 3 skipped, 1 failed, 1 deferred, 1 in doubt; then deliveries, bounces,
    a complaint, opens, a click and three unsubscribes, some reported twice."""
    unit = world.unit
    campaign = factories.campaign(world, name=name)
    t0 = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.SENT, started_at=t0)
    campaign.refresh_from_db()
    com = recipients(unit, [f"a{i}@example.com" for i in range(10)])
    org = recipients(unit, [f"b{i}@example.org" for i in range(6)])
    rare = recipients(unit, ["c0@rare.net", "c1@rare.net"])
    net = recipients(unit, ["s0@example.net", "s1@example.net", "s2@example.net"])
    erased = recipients(
        unit,
        ["erased-1@erased.invalid", "erased-2@erased.invalid"],
        status=RecipientStatus.ERASED,
    )
    plan = [
        *[(r, S.SENT, "", 10) for r in com[:5]],
        *[(r, S.SENT, "", 70) for r in com[5:9]],
        (com[9], S.IN_DOUBT, "", None),
        *[(r, S.SENT, "", 10) for r in org[:5]],
        (org[5], S.FAILED, "", None),
        (rare[0], S.SENT, "", 70),
        (rare[1], S.DEFERRED, "", None),
        (net[0], S.SKIPPED, SK.NO_CONSENT, None),
        (net[1], S.SKIPPED, SK.NO_CONSENT, None),
        (net[2], S.SKIPPED, SK.WITHDRAWN, None),
        *[(r, S.SENT, "", 70) for r in erased],
    ]
    deliveries = Delivery.objects.bulk_create(
        Delivery(
            campaign=campaign,
            unit=unit,
            recipient=r,
            email_hash=r.email_hash,
            status=status,
            reason=reason,
            sent_at=None if minutes is None else t0 + timedelta(minutes=minutes),
        )
        for r, status, reason, minutes in plan
    )
    by_email = {d.recipient.email: d for d in deliveries}
    sent = Sent(campaign, t0, by_email)
    delivered = [f"a{i}@example.com" for i in range(8)] + [f"b{i}@example.org" for i in range(4)]
    events = [
        *[_event(sent, e, EventKind.DELIVERED, 2, f"dl-{e}") for e in delivered],
        _event(sent, "erased-1@erased.invalid", EventKind.DELIVERED, 2, "dl-erased"),
        _event(sent, "a0@example.com", EventKind.DELIVERED, 2.5, "dl-again"),  # reported twice
        _event(sent, "a8@example.com", EventKind.BOUNCED, 2, "sb-a8", BounceKind.SOFT),
        _event(sent, "a8@example.com", EventKind.BOUNCED, 2.5, "hb-a8", BounceKind.HARD),
        _event(sent, "b4@example.org", EventKind.BOUNCED, 2, "hb-b4", BounceKind.HARD),
        _event(sent, "c0@rare.net", EventKind.BOUNCED, 2, "sb-c0", BounceKind.SOFT),
        _event(sent, "a0@example.com", EventKind.COMPLAINED, 3, "cp-a0"),
        _event(sent, "a0@example.com", EventKind.OPENED, 2, "op-a0"),
        _event(sent, "a0@example.com", EventKind.OPENED, 3, "op-a0-again"),
        _event(sent, "a1@example.com", EventKind.OPENED, 2, "op-a1"),
        _event(sent, "a2@example.com", EventKind.OPENED, 2, "op-a2"),
        _event(sent, "a0@example.com", EventKind.CLICKED, 2, "ck-a0"),
        _event(sent, "a1@example.com", EventKind.UNSUBSCRIBED, 2, "un-a1"),
    ]
    DeliveryEvent.objects.bulk_create(events)
    # An event whose message we could not find counts nowhere.
    DeliveryEvent.objects.create(
        source="test", event_key="lost", kind=EventKind.BOUNCED, occurred_at=t0
    )
    news = campaign.dm_type
    withdraw(
        recipient=by_email["a2@example.com"].recipient,
        dm_types=[news],
        channel=Channel.PREFERENCE_CENTRE,
        actor_label="recipient",
        campaign_code=campaign.code,
    )
    withdraw(
        recipient=by_email["a0@example.com"].recipient,
        dm_types=None,
        channel=Channel.ONE_CLICK,
        actor_label="recipient",
        campaign_code=campaign.code,
    )
    return sent
