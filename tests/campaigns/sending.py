"""Campaigns that are sending, with deliveries already sent: what feedback is about.

Deliveries are written in bulk, as dispatch would have left them (status sent, our Message-ID,
the ESP's message id), so that a test can have a thousand of them in a blink.
"""

from __future__ import annotations

from typing import Any

from django.db.models import CharField, Value
from django.db.models.functions import Cast, Concat, LPad
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from recipients.addresses import address_hash
from recipients.models import Category, Recipient
from tests.campaigns import factories
from tests.personas import World


def sending_campaign(world: World, **overrides: Any) -> Campaign:
    """The demo newsletter, started (status sending)."""
    campaign = factories.campaign(world, **overrides)
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SENDING, started_at=timezone.now()
    )
    campaign.refresh_from_db()
    return campaign


MESSAGE_ID_DOMAIN = "feedbacktest@mail.example.edu"


def message_id(delivery_id: int) -> str:
    return f"<{delivery_id}.{MESSAGE_ID_DOMAIN}>"


def provider_id(delivery_id: int) -> str:
    return f"esp-{delivery_id:08d}-message"


def sent_to(campaign: Campaign, recipients: list[Recipient], **fields: Any) -> list[Delivery]:
    """A sent delivery of `campaign` to each recipient, with both message ids."""
    now = timezone.now()
    deliveries = Delivery.objects.bulk_create(
        Delivery(
            campaign=campaign,
            unit_id=campaign.unit_id,
            recipient=r,
            email_hash=r.email_hash,
            status=fields.get("status", DeliveryStatus.SENT),
            sent_at=now,
            finished_at=now,
        )
        for r in recipients
    )
    number = Cast("id", output_field=CharField())
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
        message_id=Concat(Value("<"), number, Value(f".{MESSAGE_ID_DOMAIN}>")),
        provider_message_id=Concat(Value("esp-"), LPad(number, 8, Value("0")), Value("-message")),
    )
    for d in deliveries:
        d.message_id, d.provider_message_id = message_id(d.pk), provider_id(d.pk)
    return deliveries


def many_recipients(world: World, count: int, prefix: str = "reader") -> list[Recipient]:
    """`count` external recipients of the unit, written in bulk (no consent: feedback about
    mail already sent does not need it)."""
    emails = [f"{prefix}{i}@example.com" for i in range(count)]
    return Recipient.objects.bulk_create(
        Recipient(unit=world.unit, email=e, email_hash=address_hash(e), category=Category.EXTERNAL)
        for e in emails
    )
