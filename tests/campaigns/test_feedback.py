"""The feedback service: events stored once, matched to deliveries in bulk, and their effects —
suppression, withdrawal, bounced recipients — applied once (I4, I6, I9)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.feedback import Feedback, feedback_record
from campaigns.feedback_effects import SOFT_BOUNCE_LIMIT
from campaigns.models import BounceKind, DeliveryEvent, EventKind
from consent.models import (
    Action,
    Channel,
    ConsentEvent,
    Subscription,
    Suppression,
    SuppressionReason,
)
from consent.selectors import sendable, subscription_mismatches
from mlm.models import AuditEntry
from recipients.addresses import address_hash
from recipients.models import Audience, Recipient, RecipientStatus
from recipients.rights import recipient_erase
from tests.campaigns import factories
from tests.campaigns.sending import message_id, provider_id, sending_campaign, sent_to
from tests.recipients.test_rights import places_holding

ADDRESS = "erin.quayle@partner.org"


def event(key: str, kind: EventKind = EventKind.DELIVERED, **fields) -> Feedback:
    return Feedback(
        source=fields.pop("source", "sendgrid"),
        event_key=key,
        kind=kind,
        occurred_at=fields.pop("occurred_at", timezone.now()),
        **fields,
    )


@pytest.fixture
def mailing(world):
    """A sending newsletter; erin granted it and the unit's events invitations too."""
    news = factories.dm_type(world.unit)
    events = factories.dm_type(world.unit, key="events")
    friends = factories.recipient_list(world.unit)
    erin = factories.member(friends, ADDRESS, granted=news)
    factories.member(friends, ADDRESS, granted=events)
    campaign = sending_campaign(world)
    (delivery,) = sent_to(campaign, [erin])
    return campaign, erin, delivery, news, events


def test_it_stores_an_event_once_however_often_it_arrives(mailing):
    """I4: the same event (source and key) twice in a batch and again later is one row."""
    _, _, delivery, _, _ = mailing
    same = event("sg-1", delivery_ref=str(delivery.pk))
    first = feedback_record([same, same])
    again = feedback_record([same])
    assert (first.stored, first.duplicates, again.stored, again.duplicates) == (1, 1, 0, 1)
    assert DeliveryEvent.objects.get().delivery_id == delivery.pk
    # The same key from another provider is another event.
    assert feedback_record([event("sg-1", source="postmark")]).stored == 1


def test_it_matches_by_metadata_then_provider_id_then_message_id(world, mailing):
    campaign, _, delivery, _, _ = mailing
    other = factories.member(factories.recipient_list(world.unit), "other@example.com")
    (second,) = sent_to(campaign, [other])
    result = feedback_record(
        [
            # The echoed delivery id wins over a message id naming another delivery.
            event("a", delivery_ref=str(delivery.pk), message_id=provider_id(second.pk)),
            event("b", message_id=provider_id(second.pk)),
            # Our Message-ID, as a bounce quotes it, with or without its angle brackets.
            event("c", source="dsn", message_id=message_id(delivery.pk).strip("<>")),
            event("d", message_id="nobody-knows-this-id"),
        ]
    )
    rows = dict(DeliveryEvent.objects.values_list("event_key", "delivery_id"))
    assert rows == {"a": delivery.pk, "b": second.pk, "c": delivery.pk, "d": None}
    assert (result.stored, result.unmatched) == (4, 1)
    assert DeliveryEvent.objects.get(event_key="b").campaign_id == campaign.pk


def test_it_matches_a_batch_in_one_lookup_and_one_insert(world, mailing):
    """Bulk: a hundred events cost one query to match and one INSERT, not one per event."""
    _, _, delivery, _, _ = mailing
    batch = [event(f"k{i}", delivery_ref=str(delivery.pk)) for i in range(100)]
    with CaptureQueriesContext(connection) as queries:
        assert feedback_record(batch).stored == 100
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 2
    assert "FROM campaigns_delivery" in statements[0]
    assert statements[1].startswith("INSERT INTO campaigns_deliveryevent")
    assert not any('UPDATE "campaigns_campaign"' in s for s in statements)


def test_it_keeps_an_unknown_message_without_effect(world):
    """An event about mail we did not send is stored with no delivery, and changes nothing."""
    result = feedback_record(
        [
            event("u1", EventKind.BOUNCED, message_id="<x@elsewhere>", email=ADDRESS),
            event("u2", EventKind.COMPLAINED, message_id="<y@elsewhere>", email=ADDRESS),
        ]
    )
    assert (result.stored, result.unmatched) == (2, 2)
    stored = DeliveryEvent.objects.get(event_key="u1")
    assert stored.delivery_id is None and stored.email_hash == address_hash(ADDRESS)
    assert not Suppression.objects.exists()


def test_it_never_stores_the_address(mailing):
    """I9: the event keeps the keyed hash, never the address itself."""
    _, erin, delivery, _, _ = mailing
    feedback_record([event("h1", EventKind.OPENED, delivery_ref=str(delivery.pk), email=ADDRESS)])
    stored = DeliveryEvent.objects.get()
    assert stored.email_hash == erin.email_hash
    for field in ("event_key", "message_id", "email_hash", "description", "url"):
        assert ADDRESS not in getattr(stored, field)


def test_a_hard_bounce_suppresses_everywhere_and_marks_the_recipient(mailing):
    """I1 afterwards: a hard bounce marks the recipient bounced and suppresses the address
    for every unit; repeated, it changes nothing more."""
    campaign, erin, delivery, news, _ = mailing
    bounce = event(
        "hb", EventKind.BOUNCED, delivery_ref=str(delivery.pk), bounce_kind=BounceKind.HARD
    )
    feedback_record([bounce])
    feedback_record([bounce, event("hb2", EventKind.BOUNCED, delivery_ref=str(delivery.pk))])
    erin.refresh_from_db()
    assert erin.status == RecipientStatus.BOUNCED
    suppression = Suppression.objects.get()
    assert (suppression.unit_id, suppression.reason) == (None, SuppressionReason.HARD_BOUNCE)
    assert not sendable(unit=campaign.unit, dm_type=news, audience=Audience.EXTERNAL).exists()
    assert AuditEntry.objects.filter(verb="recipient.bounced").count() == 1


def test_three_soft_bounces_in_thirty_days_suppress(world, mailing):
    """Soft bounces of three messages to one address within 30 days count as a hard bounce;
    retries of one message count once, and older bounces not at all."""
    _, erin, delivery, _, _ = mailing
    later = [sent_to(sending_campaign(world, name=f"Issue {i}"), [erin])[0] for i in range(3)]

    def soft(key, d, **fields):
        return event(key, EventKind.BOUNCED, delivery_ref=str(d.pk), bounce_kind="soft", **fields)

    old = timezone.now() - timedelta(days=31)
    feedback_record([soft("s0", delivery, occurred_at=old)])
    feedback_record([soft("s1", later[0]), soft("s1-retry", later[0])])
    feedback_record([soft("s2", later[1])])
    assert not Suppression.objects.exists()
    erin.refresh_from_db()
    assert erin.status == RecipientStatus.ACTIVE
    feedback_record([soft("s3", later[2])])
    erin.refresh_from_db()
    assert erin.status == RecipientStatus.BOUNCED
    suppression = Suppression.objects.get()
    assert suppression.unit_id is None
    assert f"{SOFT_BOUNCE_LIMIT} soft bounces" in suppression.note


def test_a_complaint_withdraws_every_dm_type_of_the_unit(mailing):
    """I6: a spam complaint withdraws every DM type of the unit (channel complaint), at once,
    suppresses the address for the unit and marks the recipient; a second report of it writes
    no second withdrawal (I4: the fold still matches the ledger)."""
    campaign, erin, delivery, news, events = mailing
    feedback_record([event("c1", EventKind.COMPLAINED, delivery_ref=str(delivery.pk))])
    feedback_record([event("c2", EventKind.COMPLAINED, message_id=provider_id(delivery.pk))])
    withdrawal = ConsentEvent.objects.get(action=Action.WITHDRAW)
    assert (withdrawal.channel, withdrawal.dm_type_id) == (Channel.COMPLAINT, None)
    assert withdrawal.campaign_code == campaign.code
    for dm_type in (news, events):
        assert not sendable(unit=campaign.unit, dm_type=dm_type, audience=Audience.EXTERNAL)
    suppression = Suppression.objects.get()
    assert (suppression.unit_id, suppression.reason) == (campaign.unit_id, "complaint")
    erin.refresh_from_db()
    assert erin.status == RecipientStatus.COMPLAINED
    assert subscription_mismatches() == []


def test_an_unsubscribe_at_the_provider_withdraws_the_campaigns_dm_type(mailing):
    """I6: an unsubscribe the ESP received withdraws the campaign's DM type, as one-click;
    the recipient's other DM types stay granted."""
    campaign, erin, delivery, news, events = mailing
    unsubscribe = event("us", EventKind.UNSUBSCRIBED, delivery_ref=str(delivery.pk))
    feedback_record([unsubscribe])
    feedback_record([event("us-again", EventKind.UNSUBSCRIBED, delivery_ref=str(delivery.pk))])
    withdrawal = ConsentEvent.objects.get(action=Action.WITHDRAW)
    assert (withdrawal.channel, withdrawal.dm_type_id) == (Channel.ONE_CLICK, news.pk)
    unit = campaign.unit
    assert not sendable(unit=unit, dm_type=news, audience=Audience.EXTERNAL).exists()
    assert sendable(unit=unit, dm_type=events, audience=Audience.EXTERNAL).get() == erin
    assert not Suppression.objects.exists()


def test_an_erased_recipient_gets_no_effect(mailing, world):
    """I9: feedback about an erased person's old mail is stored and changes nothing: their
    address is suppressed for good already, and no consent event is written for them."""
    _, erin, delivery, _, _ = mailing
    recipient_erase(recipient=erin, by=world.alice)
    before = ConsentEvent.objects.count()
    feedback_record([event("late", EventKind.COMPLAINED, delivery_ref=str(delivery.pk))])
    assert DeliveryEvent.objects.get().delivery_id == delivery.pk
    assert ConsentEvent.objects.count() == before
    assert not Suppression.objects.filter(reason=SuppressionReason.COMPLAINT).exists()


def test_erasure_blanks_what_providers_said(mailing, world):
    """I9: erasure blanks the descriptions and links of the person's delivery events, matched
    or found by the address's hash; the events stay as facts."""
    _, erin, delivery, _, _ = mailing
    feedback_record(
        [
            event(
                "e1",
                EventKind.BOUNCED,
                delivery_ref=str(delivery.pk),
                bounce_kind="soft",
                description=f"452 4.2.2 <{ADDRESS}>: mailbox full",
            ),
            event(
                "e2",
                EventKind.CLICKED,
                delivery_ref=str(delivery.pk),
                url=f"https://example.edu/welcome?who={ADDRESS}",
            ),
            event("e3", EventKind.BOUNCED, email=ADDRESS, description=f"550 <{ADDRESS}> unknown"),
        ]
    )
    assert places_holding(ADDRESS)
    recipient_erase(recipient=Recipient.objects.get(pk=erin.pk), by=world.alice)
    assert places_holding(ADDRESS) == []
    assert DeliveryEvent.objects.count() == 3
    assert not DeliveryEvent.objects.exclude(description="", url="").exists()
    assert Subscription.objects.filter(recipient=erin).exists()
