"""A campaign's journey in a real browser: an editor writes it with the live preview, the
checks pass, an approver who is not the author approves it, the editor schedules it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from campaigns.demo import DEMO_BODY
from campaigns.models import Campaign, CampaignStatus
from tests.campaigns import factories
from tests.e2e.conftest import log_in
from tests.personas import PASSWORD, make_world


@pytest.fixture
def world(transactional_db):
    world = make_world()
    news = factories.dm_type(world.unit)
    friends = factories.recipient_list(world.unit)
    factories.member(friends, "ann@example.com", first_name="Ann", granted=news)
    factories.member(friends, "ben@example.com", first_name="Ben")  # no consent: skipped
    factories.layout(world.unit)
    factories.identity(world.unit)
    return world


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()


def test_it_writes_approves_and_schedules_a_campaign(page, world, tmp_path):
    log_in(page, "bob", PASSWORD)
    page.get_by_role("link", name="Campaigns").first.click()
    page.get_by_role("button", name="New campaign").click()
    page.get_by_label("Name").fill("Spring news")
    page.get_by_label("DM type").select_option(label="Newsletter")
    page.get_by_label("Audience").select_option("external")
    page.get_by_label("External friends (external)").check()
    page.get_by_label("From").select_option(index=1)
    page.get_by_label("Layout").select_option(label="Newsletter")
    page.get_by_label("Subject").fill("{{ first_name|default('Friend') }}, spring news")
    page.get_by_label("HTML (Jinja2, for experts)").check()
    page.get_by_label("Body", exact=True).fill(DEMO_BODY)
    preview = page.locator("#live-preview")
    # the live pane follows the typing
    expect(preview).to_contain_text("Chris, spring news", timeout=15_000)
    expect(preview.locator("iframe")).to_be_visible()
    page.screenshot(path=tmp_path / "1-editor.png", full_page=True)
    page.get_by_role("button", name="Save draft").click()

    expect(page.get_by_role("heading", name="Spring news")).to_be_visible()
    expect(page.locator(".check-fail")).to_have_count(0)
    expect(page.locator(".audience-sendable")).to_have_text("1")
    page.get_by_role("button", name="Submit for approval").click()
    expect(page.get_by_text("Submitted: an approver")).to_be_visible()
    page.screenshot(path=tmp_path / "2-submitted.png", full_page=True)
    log_out(page)

    log_in(page, "amy", PASSWORD)
    campaign = Campaign.objects.get(name="Spring news")
    page.goto(f"/units/{world.unit.slug}/campaigns/{campaign.code}/")
    page.get_by_role("button", name="Review", exact=True).click()
    expect(page.get_by_text("Would receive it")).to_be_visible()
    expect(page.get_by_text("Skipped: No consent")).to_be_visible()
    page.get_by_label("Comment").fill("Looks good.")
    page.screenshot(path=tmp_path / "3-review.png", full_page=True)
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_text("Approved. It can now be scheduled.")).to_be_visible()
    log_out(page)

    log_in(page, "bob", PASSWORD)
    page.goto(f"/units/{world.unit.slug}/campaigns/{campaign.code}/")
    page.get_by_role("button", name="Schedule", exact=True).click()
    page.get_by_label("Send at a time").check()
    page.get_by_label("Date and time").fill("2099-01-02T09:30")
    page.get_by_role("button", name="Schedule").click()
    expect(page.get_by_text("Scheduled for 2099-01-02 09:30")).to_be_visible()
    page.screenshot(path=tmp_path / "4-scheduled.png", full_page=True)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SCHEDULED
    assert campaign.approved_by == world.amy and campaign.created_by == world.bob

    page.get_by_role("button", name="Cancel campaign").click()
    expect(page.locator(".badge-cancelled").first).to_be_visible()
    for name in ("1-editor", "2-submitted", "3-review", "4-scheduled"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    assert not [e for e in page.csp_errors if "Content Security Policy" in e], page.csp_errors


def test_the_preview_shows_a_recipient_at_phone_width(page, world, tmp_path):
    campaign = factories.campaign(world)
    log_in(page, "bob", PASSWORD)
    page.goto(f"/units/{world.unit.slug}/campaigns/{campaign.code}/preview/")
    page.get_by_label("Preview for a recipient of the lists").fill("ann")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="ann@example.com").click()
    expect(page.get_by_text("Ann, your spring news")).to_be_visible()
    frame = page.frame_locator("iframe.mail-preview")
    expect(frame.get_by_role("heading", name="Hello Ann,")).to_be_visible()
    page.get_by_text("Phone", exact=True).click()
    width = page.locator("iframe.mail-preview").evaluate("e => e.getBoundingClientRect().width")
    assert width <= 390
    expect(page.locator("pre.mail-text")).to_contain_text("Hello Ann,")
    page.screenshot(path=tmp_path / "preview-phone.png", full_page=True)
    assert not [e for e in page.csp_errors if "Content Security Policy" in e], page.csp_errors
