"""The audience preview: sendable from `sendable` (I1), the others sorted by reason, and what
each frequency cap would skip."""

from __future__ import annotations

from datetime import timedelta

from django.test import override_settings
from django.utils import timezone

from campaigns.models import Delivery, DeliveryStatus, SkipReason
from campaigns.selectors import audience_summary
from campaigns.services.settings import unit_settings_update
from consent.models import Channel, SuppressionReason
from consent.services import suppress, withdraw
from recipients.models import Recipient, RecipientStatus
from tests.campaigns import factories


def _world_with_audience(world):
    news = factories.dm_type(world.unit)
    first = factories.recipient_list(world.unit, name="Friends")
    second = factories.recipient_list(world.unit, name="Visitors")
    people = {
        name: factories.member(first, f"{name}@example.com", granted=news)
        for name in ("ok", "ok2", "withdrawn", "suppressed", "bounced")
    }
    people["none"] = factories.member(first, "none@example.com")
    factories.member(second, "ok@example.com")  # on both lists: one duplicate entry
    withdraw(recipient=people["withdrawn"], dm_types=[news], channel=Channel.ONE_CLICK)
    suppress(email="suppressed@example.com", unit=None, reason=SuppressionReason.HARD_BOUNCE)
    Recipient.objects.filter(pk=people["bounced"].pk).update(status=RecipientStatus.BOUNCED)
    campaign = factories.campaign(world, lists=[first, second])
    return campaign, people


def test_it_counts_sendable_and_skipped_by_reason(world):
    """I1: the sendable count is `sendable` restricted to the lists; the rest have a reason."""
    campaign, _ = _world_with_audience(world)
    summary = audience_summary(campaign)
    assert summary.list_entries == 7 and summary.recipients == 6 and summary.duplicates == 1
    assert summary.sendable == 2
    assert summary.skipped == {
        SkipReason.WITHDRAWN: 1,
        SkipReason.SUPPRESSED: 1,
        SkipReason.BOUNCED: 1,
        SkipReason.NO_CONSENT: 1,
        SkipReason.DUPLICATE: 1,
    }
    labels = dict(summary.skipped_rows)
    assert labels["Duplicate address across lists"] == 1


def _sent(campaign, recipient, days_ago: float, *, unit=None, email_hash=None):
    Delivery.objects.create(
        campaign=campaign,
        unit=unit or campaign.unit,
        recipient=recipient,
        email_hash=email_hash or recipient.email_hash,
        status=DeliveryStatus.SENT,
        sent_at=timezone.now() - timedelta(days=days_ago),
    )


def test_the_unit_cap_skips_recipients_mailed_often_lately(world):
    campaign, people = _world_with_audience(world)
    earlier = factories.campaign(world, name="Earlier")
    _sent(earlier, people["ok"], days_ago=1)
    unit_settings_update(
        unit=world.unit,
        allow_self_approval=False,
        frequency_cap_mails=1,
        frequency_cap_days=7,
        banned_words="",
        by=world.alice,
    )
    summary = audience_summary(campaign)
    assert summary.sendable == 1
    assert summary.skipped[SkipReason.UNIT_CAP] == 1
    ((cap, count),) = summary.caps
    assert cap.scope == "unit" and count == 1 and str(cap) == "at most 1 DM mail per 7 days"


def test_the_unit_cap_forgets_mail_older_than_its_period(world):
    campaign, people = _world_with_audience(world)
    _sent(factories.campaign(world, name="Old"), people["ok"], days_ago=10)
    unit_settings_update(
        unit=world.unit,
        allow_self_approval=False,
        frequency_cap_mails=1,
        frequency_cap_days=7,
        banned_words="",
        by=world.alice,
    )
    assert audience_summary(campaign).sendable == 2


@override_settings(MLM_FREQUENCY_CAP_MAILS=2, MLM_FREQUENCY_CAP_DAYS=7)
def test_the_institution_cap_counts_mail_of_every_unit_to_the_address(world):
    campaign, people = _world_with_audience(world)
    other_list = factories.recipient_list(world.other_unit)
    twin = factories.member(other_list, "ok2@example.com")  # the same person, another unit
    other_campaign = factories.campaign(world, unit=world.other_unit, by=world.charlie)
    _sent(other_campaign, twin, days_ago=1)
    _sent(factories.campaign(world, name="Ours"), people["ok2"], days_ago=2)
    summary = audience_summary(campaign)
    assert summary.skipped[SkipReason.INSTITUTION_CAP] == 1
    assert summary.sendable == 1
    assert [c.scope for c, _ in summary.caps] == ["institution"]


def test_both_caps_are_off_by_default(world):
    campaign, people = _world_with_audience(world)
    for days in (1, 2, 3):
        _sent(factories.campaign(world, name=f"Earlier {days}"), people["ok"], days_ago=days)
    summary = audience_summary(campaign)
    assert summary.caps == [] and summary.sendable == 2
