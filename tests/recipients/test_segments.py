"""Segments: saved with lists of one unit and one audience (I3, I8), counted live in the
builder, and targeted by campaigns through the real snapshot (I1)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from campaigns.sending.batches import batch_send
from campaigns.sending.start import campaign_start
from consent.models import Channel
from consent.services import withdraw
from mlm.models import AuditEntry
from recipients.models import Audience, Segment
from recipients.segment_services import segment_create, segment_delete, segment_update
from tests.campaigns import factories


def city(*cities: str) -> dict:
    return {
        "match": "all",
        "groups": [
            {
                "match": "all",
                "conditions": [
                    {"field": "attribute", "key": "city", "op": "one_of", "value": list(cities)}
                ],
            }
        ],
    }


@pytest.fixture
def people(world):
    """Four external friends, three of them granted the newsletter, in two cities."""
    news = factories.dm_type(world.unit)
    friends = factories.recipient_list(world.unit, name="Friends")

    def person(email: str, town: str, year: str, granted=news):
        attributes = {"city": town, "year": year}
        return factories.member(friends, email, granted=granted, attributes=attributes)

    made = {
        "hk": person("hk@example.com", "Hong Kong", "2012"),
        "hk_old": person("old@example.com", "Hong Kong", "1999"),
        "hk_no_consent": person("nc@example.com", "Hong Kong", "2013", granted=None),
        "paris": person("paris@example.com", "Paris", "2012"),
    }
    return friends, news, made


# --- saving ----------------------------------------------------------------------------------


def test_it_saves_a_segment_with_its_audience_and_an_audit_entry(world, people):
    friends, _, _ = people
    segment = segment_create(
        unit=world.unit,
        name="Hong Kong",
        lists=[friends],
        conditions=city("Hong Kong"),
        by=world.bob,
    )
    assert segment.audience == Audience.EXTERNAL
    assert AuditEntry.objects.filter(verb="segment.create", object_id=str(segment.code)).exists()


def test_it_refuses_another_units_lists(world, people):
    """I8: a segment naming another unit's list is refused."""
    foreign = factories.recipient_list(world.other_unit, name="Their friends")
    with pytest.raises(ValidationError, match="belongs to another unit"):
        segment_create(
            unit=world.unit, name="Leak", lists=[foreign], conditions=city("Paris"), by=world.bob
        )
    assert not Segment.objects.exists()


def test_it_refuses_lists_of_both_audiences(world, people):
    """I3: internal and external lists are never mixed in one segment."""
    friends, _, _ = people
    staff = factories.recipient_list(world.unit, audience=Audience.INTERNAL, name="Staff")
    with pytest.raises(ValidationError, match="mix internal and external"):
        segment_create(
            unit=world.unit, name="Mixed", lists=[friends, staff], conditions={}, by=world.bob
        )


def test_it_keeps_the_audience_of_a_segment_campaigns_target(world, people):
    """I3: a campaign's segment cannot turn to the other audience under it."""
    friends, _, _ = people
    segment = segment_create(
        unit=world.unit, name="HK", lists=[friends], conditions=city("Hong Kong"), by=world.bob
    )
    factories.campaign(world, lists=[], segment=segment)
    staff = factories.recipient_list(world.unit, audience=Audience.INTERNAL, name="Staff")
    with pytest.raises(ValidationError, match="must stay of that audience"):
        segment_update(segment=segment, name="HK", lists=[staff], conditions={}, by=world.bob)
    with pytest.raises(ValidationError, match="cannot be deleted"):
        segment_delete(segment=segment, by=world.bob)


# --- campaigns -------------------------------------------------------------------------------


def _start(campaign: Campaign) -> Campaign:
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now() - timedelta(seconds=1)
    )
    campaign.refresh_from_db()
    campaign_start(campaign=campaign, by=None)
    campaign.refresh_from_db()
    return campaign


def test_a_campaign_to_a_segment_reaches_only_its_sendable_members(world, people):
    """I1: the snapshot takes the segment's members, in its one statement, and queues those
    `sendable` allows; the mail goes to them only."""
    friends, news, made = people
    withdraw(recipient=made["hk_old"], dm_types=[news], channel=Channel.ONE_CLICK)
    segment = segment_create(
        unit=world.unit, name="HK", lists=[friends], conditions=city("Hong Kong"), by=world.bob
    )
    with CaptureQueriesContext(connection) as queries:
        campaign = _start(factories.campaign(world, lists=[], segment=segment))
    inserts = [q["sql"] for q in queries.captured_queries if "INTO campaigns_delivery" in q["sql"]]
    assert len(inserts) == 1 and "@>" in inserts[0]  # the segment's condition, in the one
    rows = {
        d.recipient.email: d.status
        for d in Delivery.objects.filter(campaign=campaign).select_related("recipient")
    }
    assert rows == {
        "hk@example.com": DeliveryStatus.QUEUED,
        "old@example.com": DeliveryStatus.SKIPPED,
        "nc@example.com": DeliveryStatus.SKIPPED,
    }
    batch_send(campaign_id=campaign.pk)
    assert [m.to for m in mail.outbox] == [["hk@example.com"]]


def test_the_report_shows_the_segment_as_it_was_when_sent(world, people, client_for):
    """The campaign keeps the segment's name, lists and conditions as sending started; a later
    edit of the segment changes neither the report nor who the snapshot took."""
    friends, _, _ = people
    segment = segment_create(
        unit=world.unit, name="HK", lists=[friends], conditions=city("Hong Kong"), by=world.bob
    )
    campaign = _start(factories.campaign(world, lists=[], segment=segment))
    segment_update(
        segment=segment, name="Paris now", lists=[friends], conditions=city("Paris"), by=world.bob
    )
    assert campaign.segment_sent["name"] == "HK"
    page = client_for(world.vic).get(
        reverse("campaign_report", args=[world.unit.slug, campaign.code])
    )
    text = page.content.decode()
    assert "HK" in text and "as it was when sending started" in text
    assert "attribute “city” is one of “Hong Kong”" in text
    assert "Paris" not in text


def test_a_campaign_cannot_target_another_units_segment(world, people):
    """I8: the campaign service refuses a segment of another unit."""
    theirs = factories.recipient_list(world.other_unit, name="Theirs")
    foreign = segment_create(
        unit=world.other_unit, name="Theirs", lists=[theirs], conditions={}, by=None
    )
    with pytest.raises(ValidationError, match="belongs to another unit"):
        factories.campaign(world, lists=[], segment=foreign)


# --- pages -----------------------------------------------------------------------------------


def _builder_post(friends, news, **extra) -> dict:
    return {
        "name": "Class of 2010-2015 in Hong Kong",
        "lists": [str(friends.code)],
        "dm_type": str(news.code),
        "match": "all",
        "g0-match": "all",
        "g0-c0-field": "attribute",
        "g0-c0-key": "city",
        "g0-c0-op": "equals",
        "g0-c0-value": "Hong Kong",
        "g0-c1-field": "attribute",
        "g0-c1-key": "year",
        "g0-c1-op": "number_range",
        "g0-c1-low": "2010",
        "g0-c1-high": "2015",
        **extra,
    }


def test_the_live_count_shows_members_and_who_would_receive(world, people, client_for):
    friends, news, _ = people
    url = reverse("segment_count", args=[world.unit.slug])
    page = client_for(world.bob).post(url, _builder_post(friends, news))
    text = page.content.decode()
    assert '<strong class="segment-members">2</strong>' in text  # hk and hk_no_consent
    assert '<strong class="segment-sendable">1</strong>' in text  # hk only: granted


def test_the_live_count_says_what_is_wrong(world, people, client_for):
    friends, news, _ = people
    url = reverse("segment_count", args=[world.unit.slug])
    page = client_for(world.bob).post(url, _builder_post(friends, news, **{"g0-c1-low": "soon"}))
    assert "the lower bound is not a number: &#x27;soon&#x27;" in page.content.decode()


def test_the_builder_adds_a_condition_without_saving_then_saves(world, people, client_for):
    friends, news, _ = people
    client = client_for(world.bob)
    url = reverse("segment_create", args=[world.unit.slug])
    page = client.post(url, _builder_post(friends, news, action="add-condition-0"))
    assert page.status_code == 200 and not Segment.objects.exists()
    assert 'name="g0-c2-field"' in page.content.decode()
    assert "city" in page.content.decode()  # the attribute keys of the unit's data
    saved = client.post(url, _builder_post(friends, news))
    segment = Segment.objects.get()
    assert saved.status_code == 302
    assert segment.conditions["groups"][0]["conditions"][1]["value"] == ["2010", "2015"]


def test_the_builder_refuses_another_units_list(world, people, client_for):
    """I8: the form offers the unit's own lists only; another unit's list code is refused."""
    friends, news, _ = people
    theirs = factories.recipient_list(world.other_unit, name="Theirs")
    url = reverse("segment_create", args=[world.unit.slug])
    post = _builder_post(friends, news, lists=[str(theirs.code)])
    page = client_for(world.bob).post(url, post)
    assert page.status_code == 200 and not Segment.objects.exists()
    assert "Select a valid choice" in page.content.decode()


def test_another_units_segment_is_404(world, people, client_for):
    """I8: a segment's code from another unit answers 404."""
    theirs = factories.recipient_list(world.other_unit, name="Theirs")
    foreign = segment_create(
        unit=world.other_unit, name="Theirs", lists=[theirs], conditions={}, by=None
    )
    client = client_for(world.bob)
    assert client.get(f"/units/{world.unit.slug}/segments/{foreign.code}/").status_code == 404
    delete = f"/units/{world.unit.slug}/segments/{foreign.code}/delete/"
    assert client.post(delete).status_code == 404
    assert Segment.objects.filter(pk=foreign.pk).exists()


def test_the_segment_list_names_the_conditions(world, people, client_for):
    friends, _, _ = people
    segment_create(
        unit=world.unit, name="HK", lists=[friends], conditions=city("Hong Kong"), by=world.bob
    )
    page = client_for(world.vic).get(reverse("segments", args=[world.unit.slug]))
    assert "attribute “city” is one of “Hong Kong”" in page.content.decode()


def test_an_editor_writes_a_campaign_to_a_segment_in_the_browser(world, people, client_for):
    """The campaign form takes lists or a segment of the unit; the campaign page names it."""
    friends, news, _ = people
    segment = segment_create(
        unit=world.unit, name="HK", lists=[friends], conditions=city("Hong Kong"), by=world.bob
    )
    form = {
        "name": "Open day invitation",
        "dm_type": news.pk,
        "audience": "external",
        "segment": segment.pk,
        "identity": factories.identity(world.unit).pk,
        "subject": "Come to Open Day",
        "layout": factories.layout(world.unit).pk,
        "body_format": "html",
        "html_body": "<p>See you.</p>",
    }
    client = client_for(world.bob)
    url = reverse("campaign_create", args=[world.unit.slug])
    both = client.post(url, {**form, "lists": [friends.pk]})
    assert "A campaign targets lists or a segment, not both." in both.content.decode()
    neither = client.post(url, {**form, "segment": ""})
    assert "Choose at least one list, or a segment." in neither.content.decode()
    assert client.post(url, form).status_code == 302
    campaign = Campaign.objects.get()
    assert campaign.segment == segment and not campaign.lists.exists()
    page = client.get(reverse("campaign_detail", args=[world.unit.slug, campaign.code]))
    text = page.content.decode()
    assert "attribute “city” is one of “Hong Kong”" in text
    assert '<strong class="audience-sendable">2</strong>' in text  # hk, hk_old
