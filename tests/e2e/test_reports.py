"""Reports in a real browser: a viewer opens the unit's reports from the menu, then a
campaign's report, on a desktop and on a phone; the figures are visible, the charts drawn
(inline SVG, no script), nothing overflows the phone's width. Screenshots are kept in tmp_path."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from consent.models import Channel
from consent.services import withdraw
from recipients.models import ListMembership
from tests.campaigns import factories
from tests.campaigns.report_data import sent_campaign
from tests.e2e.conftest import log_in
from tests.personas import PASSWORD, make_world


@pytest.fixture
def sent(transactional_db):
    world = make_world()
    sent = sent_campaign(world)
    friends = factories.recipient_list(world.unit)
    news = factories.dm_type(world.unit)
    people = [factories.member(friends, f"p{i}@example.com", granted=news) for i in range(3)]
    ListMembership.objects.filter(recipient=people[0]).update(
        added_at=timezone.now() - timedelta(weeks=8)
    )
    withdraw(recipient=people[1], dm_types=[news], channel=Channel.PREFERENCE_CENTRE)
    return sent


def shot(page: Page, tmp_path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    assert path.stat().st_size > 10_000


def fits(page: Page, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"page is {scroll}px wide on a {width}px screen"


def no_csp_errors(page: Page) -> None:
    assert not [e for e in page.csp_errors if "Content Security Policy" in e], page.csp_errors


def test_a_viewer_reads_the_reports_on_a_desktop(page: Page, sent, tmp_path):
    log_in(page, "vic", PASSWORD)
    page.get_by_role("link", name="Reports", exact=True).click()
    expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()
    history = page.locator(f'[data-campaign="{sent.campaign.code}"]')
    expect(history).to_contain_text("Spring news")
    expect(history.locator("td").nth(1)).to_have_text("17")
    expect(history.locator("td").nth(4)).to_have_text("5.88%")
    expect(page.locator('[data-dm-type="Newsletter"] td').nth(1)).to_have_text("3")
    charts = page.locator("figure.chart svg[role=img]")
    expect(charts).to_have_count(5)
    expect(page.locator(".chart-legend").get_by_text("0.3% limit").first).to_be_visible()
    assert charts.first.bounding_box()["width"] > 300
    shot(page, tmp_path, "unit-reports-desktop")

    history.get_by_role("link", name="Spring news").click()
    expect(page.get_by_role("heading", name="Report: Spring news")).to_be_visible()
    expect(page.locator('[data-figure="sent"]')).to_have_text("17")
    expect(page.locator('[data-figure="delivered"]')).to_have_text("13")
    expect(page.locator('[data-rate="delivered"]')).to_have_text("76.47%")
    expect(page.locator('[data-rate="complained"]')).to_have_text("5.88%")
    expect(page.locator('[data-figure="unsubscribed"]')).to_have_text("3")
    expect(page.locator('[data-domain="example.com"]')).to_contain_text("11.11%")
    timeline = page.locator("figure.chart").first
    expect(timeline.locator("svg[role=img] path").first).to_be_visible()
    timeline.get_by_text("The numbers").click()
    expect(timeline.locator("table")).to_contain_text("10")
    no_csp_errors(page)
    shot(page, tmp_path, "campaign-report-desktop")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download as CSV").click()
    content = download_info.value.path().read_text(encoding="utf-8-sig")
    assert "Delivered,13,76.47" in content


def test_the_reports_fit_a_phone(phone: Page, sent, tmp_path):
    log_in(phone, "vic", PASSWORD)
    phone.goto(f"/units/{sent.campaign.unit.slug}/campaigns/{sent.campaign.code}/report/")
    expect(phone.get_by_role("heading", name="Report: Spring news")).to_be_visible()
    expect(phone.locator('[data-figure="sent"]')).to_have_text("17")
    expect(phone.locator(".kpis")).to_contain_text("76.47%")
    chart = phone.locator("figure.chart svg[role=img]").first
    expect(chart).to_be_visible()
    assert chart.bounding_box()["width"] <= 390
    fits(phone, 390)
    shot(phone, tmp_path, "campaign-report-phone")
    phone.locator("figure.chart").first.screenshot(path=tmp_path / "timeline-phone.png")

    phone.goto(f"/units/{sent.campaign.unit.slug}/reports/")
    expect(phone.get_by_role("heading", name="Campaign history")).to_be_visible()
    expect(phone.locator(f'[data-campaign="{sent.campaign.code}"] td').nth(1)).to_have_text("17")
    fits(phone, 390)
    shot(phone, tmp_path, "unit-reports-phone")
