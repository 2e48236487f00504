"""Reports: a campaign's figures, timeline, unsubscribes and domains (page and CSV), and the
unit's reports page, computed from deliveries, provider events and consent events."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Delivery, DeliveryStatus, UnitCampaignSettings
from campaigns.reports.buckets import buckets_between, choose_granularity
from campaigns.reports.campaign import campaign_domains, campaign_report
from campaigns.reports.unit import (
    REPORT_WEEKS,
    campaign_history,
    complaint_trend,
    consent_report,
    list_growth,
)
from consent.models import Channel
from consent.services import grant, withdraw
from recipients.models import ListMembership
from tests.campaigns import factories
from tests.campaigns.report_data import recipients, sent_campaign

S = DeliveryStatus


def report_url(world, campaign, name="campaign_report"):
    return reverse(name, args=[world.unit.slug, campaign.code])


def cell(page: str, attribute: str, key: str) -> str:
    found = re.search(rf'data-{attribute}="{re.escape(key)}">([^<]*)<', page)
    assert found, f"no data-{attribute}={key!r} on the page"
    return found.group(1)


EXPECTED = {
    # figure: (deliveries, rate of the 17 sent)
    "sent": ("17", "100.00%"),
    "delivered": ("13", "76.47%"),
    "bounced": ("3", "17.65%"),
    "hard_bounced": ("2", "11.76%"),
    "soft_bounced": ("2", "11.76%"),
    "complained": ("1", "5.88%"),
    "unsubscribed": ("3", "17.65%"),
    "opened": ("3", "17.65%"),
    "clicked": ("1", "5.88%"),
}


def test_it_counts_each_delivery_once_per_kind(world):
    sent = sent_campaign(world)
    report = campaign_report(sent.campaign)
    assert report.deliveries == 23
    for key, (count, _rate) in EXPECTED.items():
        assert report.figure(key).count == int(count), key
    statuses = {f.key: f.count for f in report.statuses}
    assert statuses == {
        "sent": 17,
        "skipped": 3,
        "failed": 1,
        "deferred": 1,
        "in_doubt": 1,
        "queued": 0,
        "sending": 0,
    }
    assert [(f.label, f.count) for f in report.skipped] == [("No consent", 2), ("Withdrawn", 1)]
    assert report.unsubscribes_by_dm_type == [("All DM types", 1), ("Newsletter", 1)]


def test_the_report_page_shows_the_figures(world, client_for, django_assert_max_num_queries):
    sent = sent_campaign(world)
    client = client_for(world.vic)
    with django_assert_max_num_queries(16):  # a fixed number, whatever the size of the campaign
        response = client.get(report_url(world, sent.campaign))
    page = response.content.decode()
    assert response.status_code == 200
    for key, (count, rate) in EXPECTED.items():
        assert cell(page, "figure", key) == count, key
        assert cell(page, "rate", key) == rate, key
    assert cell(page, "status", "failed") == "1"
    assert cell(page, "status", "in_doubt") == "1"
    assert cell(page, "status", "deferred") == "1"
    assert cell(page, "skipped", "skipped_no_consent") == "2"
    assert cell(page, "unsubscribed", "All DM types") == "1"
    assert cell(page, "unsubscribed", "Newsletter") == "1"
    assert "Open and click tracking is off for this unit" in page


def test_the_domains_are_computed_in_sql_and_rare_ones_are_folded(world, client_for):
    sent = sent_campaign(world)
    rows = {d.domain: d for d in campaign_domains(sent.campaign)}
    assert list(rows) == ["example.com", "example.org", "(erased)", "(other domains)"]
    com, org = rows["example.com"], rows["example.org"]
    assert (com.deliveries, com.sent, com.bounced) == (10, 9, 1)
    assert (org.deliveries, org.sent, org.bounced) == (6, 5, 1)
    assert (rows["(erased)"].sent, rows["(erased)"].bounced) == (2, 0)
    # rare.net (2 deliveries, one bounced) and example.net (3 skipped) are too small to name
    other = rows["(other domains)"]
    assert (other.deliveries, other.sent, other.bounced) == (5, 1, 1)
    page = client_for(world.vic).get(report_url(world, sent.campaign)).content.decode()
    row = page.split('data-domain="example.org"')[1].split("</tr>")[0]
    assert re.findall(r'class="num">([^<]*)<', row) == ["6", "5", "1", "20.00%"]
    assert "rare.net" not in page and "a0@example.com" not in page


def test_the_timeline_adds_up_to_the_figures(world):
    sent = sent_campaign(world)
    timeline = campaign_report(sent.campaign).timeline
    assert timeline.granularity == "hour"
    first = timezone.localtime(sent.t0, world.unit.tzinfo).replace(tzinfo=None)
    assert timeline.buckets[0] == first
    assert timeline.series["sent"][:2] == [10, 7]
    assert sum(timeline.series["sent"]) == 17
    assert sum(timeline.series["delivered"]) == 13  # a0's second report is not a new delivery
    assert sum(timeline.series["opened"]) == 3
    assert sum(timeline.series["bounced"]) == 3
    assert sum(timeline.series["unsubscribed"]) == 3
    assert timeline.labels[0] == f"{first:%Y-%m-%d %H}:00"


def test_the_granularity_adapts_to_the_span():
    start = datetime(2026, 3, 2, 9, 30)
    assert choose_granularity(start, start + timedelta(hours=30)) == "hour"
    assert choose_granularity(start, start + timedelta(days=20)) == "day"
    assert choose_granularity(start, start + timedelta(days=300)) == "week"
    assert choose_granularity(start, start + timedelta(days=2000)) == "month"
    weeks = buckets_between(start, start + timedelta(days=20), "week")
    assert weeks[0] == datetime(2026, 3, 2) and len(weeks) == 3
    months = buckets_between(start, datetime(2026, 5, 1), "month")
    assert months == [datetime(2026, 3, 1), datetime(2026, 4, 1), datetime(2026, 5, 1)]


def _csv(response) -> list[list[str]]:
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text)))


def test_the_csv_holds_the_figures_and_domains_and_no_address(world, client_for):
    sent = sent_campaign(world)
    response = client_for(world.vic).get(report_url(world, sent.campaign, "campaign_report_csv"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "spring-news-report.csv" in response["Content-Disposition"]
    rows = _csv(response)
    assert ["Delivered", "13", "76.47"] in rows
    assert ["Hard bounces", "2", "11.76"] in rows
    assert ["Complaints", "1", "5.88"] in rows
    assert ["Unsubscribed", "3", "17.65"] in rows
    assert ["Skipped: No consent", "2", "8.70"] in rows
    assert ["In doubt", "1", "4.35"] in rows
    assert ["All DM types", "1"] in rows
    assert ["example.org", "6", "5", "1", "20.00"] in rows
    assert ["(other domains)", "5", "1", "1", "100.00"] in rows
    assert not any("@" in value for row in rows for value in row)


def test_the_csv_is_formula_safe(world, client_for):
    sent = sent_campaign(world, name='=HYPERLINK("https://evil.example","Click")')
    tricky = recipients(world.unit, [f"p{i}@=2+5.example" for i in range(5)])
    Delivery.objects.bulk_create(
        Delivery(
            campaign=sent.campaign,
            unit=world.unit,
            recipient=r,
            email_hash=r.email_hash,
            status=S.SENT,
            sent_at=sent.t0,
        )
        for r in tricky
    )
    rows = _csv(client_for(world.vic).get(report_url(world, sent.campaign, "campaign_report_csv")))
    assert rows[0] == ["campaign", '\'=HYPERLINK("https://evil.example","Click")']
    assert ["'=2+5.example", "5", "5", "0", "0.00"] in rows
    assert not any(v.startswith(("=", "+", "-", "@")) for row in rows for v in row)


def test_a_campaign_not_sent_yet_has_an_empty_report(world, client_for):
    campaign = factories.campaign(world)
    page = client_for(world.vic).get(report_url(world, campaign)).content.decode()
    assert "Nothing has been sent yet" in page
    assert cell(page, "figure", "sent") == "0"
    assert cell(page, "rate", "delivered") == "—"


def test_the_campaign_page_links_to_its_report(world, client_for):
    sent = sent_campaign(world)
    page = client_for(world.vic).get(
        reverse("campaign_detail", args=[world.unit.slug, sent.campaign.code])
    )
    assert report_url(world, sent.campaign) in page.content.decode()


def test_the_report_says_when_the_unit_tracks_opens(world, client_for):
    sent = sent_campaign(world)
    UnitCampaignSettings.objects.create(unit=world.unit, tracking_enabled=True)
    page = client_for(world.vic).get(report_url(world, sent.campaign)).content.decode()
    assert "Opens and clicks are tracked for this unit" in page


def test_another_units_member_gets_404_for_the_reports(world, client_for):
    """I8: a member of another unit sees neither a campaign's report, its CSV nor the unit's
    reports page."""
    sent = sent_campaign(world)
    client = client_for(world.charlie)
    assert client.get(report_url(world, sent.campaign)).status_code == 404
    assert client.get(report_url(world, sent.campaign, "campaign_report_csv")).status_code == 404
    assert client.get(reverse("reports", args=[world.unit.slug])).status_code == 404
    # and a code of unit A under unit B's address is not found either
    other = reverse("campaign_report", args=[world.other_unit.slug, sent.campaign.code])
    assert client.get(other).status_code == 404


# The unit's reports ------------------------------------------------------------------------


@pytest.fixture
def unit_data(world):
    """Consent events of two DM types, list members added now and long ago, a sent campaign."""
    sent = sent_campaign(world)
    news = factories.dm_type(world.unit)
    events = factories.dm_type(world.unit, key="events")
    friends = factories.recipient_list(world.unit)
    people = [
        factories.member(friends, f"p{i}@example.com", granted=news if i < 3 else events)
        for i in range(4)
    ]
    withdraw(recipient=people[0], dm_types=[news], channel=Channel.PREFERENCE_CENTRE)
    grant(
        recipient=people[1],
        dm_types=[events],
        channel=Channel.ADMIN,
        evidence="Asked at the fair",
    )
    withdraw(recipient=people[1], dm_types=None, channel=Channel.ONE_CLICK)
    long_ago = timezone.now() - timedelta(weeks=40)
    ListMembership.objects.filter(recipient__in=people[:2]).update(added_at=long_ago)
    return sent


def test_the_unit_report_counts_consent_by_dm_type(world, unit_data):
    consent = consent_report(world.unit)
    rows = {r.name: r for r in consent.rows}
    # news: p0..p2 granted, p0 withdrew, p1 left everything → p2 only
    assert (rows["Newsletter"].subscribed, rows["Newsletter"].grants) == (1, 3)
    # a2 withdrew through the campaign as well: 2 newsletter withdrawals in the window
    assert rows["Newsletter"].withdrawals == 2
    assert (rows["Events"].subscribed, rows["Events"].grants) == (1, 2)
    assert (rows["All DM types"].withdrawals, rows["All DM types"].subscribed) == (2, 0)
    assert sum(consent.grants.series["Newsletter"]) == 3
    assert consent.withdrawals.series["All DM types"][-1] == 2
    assert len(consent.grants.weeks) == REPORT_WEEKS


def test_the_unit_report_shows_list_growth_from_membership_times(world, unit_data):
    growth = list_growth(world.unit)
    (row,) = growth.rows
    assert (row.name, row.members, row.added) == ("External friends", 4, 2)
    line = growth.members.series["External friends"]
    assert line[0] == 2 and line[-1] == 4


def test_the_unit_report_lists_campaign_history_and_complaints(world, unit_data):
    (row,) = campaign_history(world.unit)
    assert (row.sent, row.delivered, row.bounced, row.complained, row.unsubscribed) == (
        17,
        13,
        3,
        1,
        3,
    )
    trend = complaint_trend(world.unit)
    assert sum(trend.sent) == 17 and sum(trend.complained) == 1
    this_week = max(i for i, n in enumerate(trend.sent) if n)
    assert f"{trend.rates[this_week]:.2f}" == "5.88"


def test_the_unit_reports_page_shows_the_figures_and_charts(
    world, unit_data, client_for, django_assert_max_num_queries
):
    client = client_for(world.vic)
    with django_assert_max_num_queries(30):
        response = client.get(reverse("reports", args=[world.unit.slug]))
    page = response.content.decode()
    assert response.status_code == 200
    row = page.split(f'data-campaign="{unit_data.campaign.code}"')[1].split("</tr>")[0]
    assert re.findall(r'class="num[^"]*">([^<]*)<', row) == [
        "17",
        "13",
        "17.65%",
        "5.88%",
        "3",
    ]
    newsletter = page.split('data-dm-type="Newsletter"')[1].split("</tr>")[0]
    assert re.findall(r'class="num">([^<]*)<', newsletter) == ["1", "3", "2"]
    assert page.count('role="img" aria-labelledby="chart-') == 5
    assert "0.3% limit" in page and "0.1% warning" in page
    assert '<a href="/units/engineering/reports/" aria-current="page">Reports</a>' in page


def test_the_unit_reports_page_works_for_a_unit_with_nothing_yet(world, client_for):
    response = client_for(world.vic).get(reverse("reports", args=[world.unit.slug]))
    page = response.content.decode()
    assert response.status_code == 200
    assert "No campaign has been sent yet." in page
    assert "Nothing to draw yet." in page
