"""Writing a body without HTML in a real browser: the rich-text editor over the body's textarea
(a static script, within the CSP), the Markdown default, and the plain textarea without
JavaScript."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from campaigns.models import BodyFormat, Campaign
from tests.campaigns import factories
from tests.e2e.conftest import log_in
from tests.personas import PASSWORD, make_world


@pytest.fixture
def world(transactional_db):
    world = make_world()
    factories.dm_type(world.unit)
    factories.recipient_list(world.unit)
    factories.layout(world.unit)
    factories.identity(world.unit)
    return world


def campaign_start(page: Page, world, name: str) -> None:
    log_in(page, "bob", PASSWORD)
    page.goto(f"/units/{world.unit.slug}/campaigns/new/")
    page.get_by_label("Name").fill(name)
    page.get_by_label("DM type").select_option(label="Newsletter")
    page.get_by_label("Audience").select_option("external")
    page.get_by_label("External friends (external)").check()
    page.get_by_label("From").select_option(index=1)
    page.get_by_label("Layout").select_option(label="Newsletter")
    page.get_by_label("Subject").fill("Spring news")


def test_it_writes_a_body_in_the_rich_text_editor(page, world):
    campaign_start(page, world, "Rich spring news")
    body = page.get_by_label("Body", exact=True)
    expect(page.get_by_label("Markdown")).to_be_checked()  # the default
    expect(body).to_be_visible()
    page.get_by_label("Rich text").check()
    editor = page.get_by_role("textbox", name="Body (rich text)")
    expect(editor).to_be_visible()
    expect(body).to_be_hidden()
    editor.click()
    page.keyboard.type("Dear {{ first_name }}, ")
    page.locator(".pell-button[title='Bold']").click()
    page.keyboard.type("see you")
    preview = page.locator("#live-preview")
    frame = preview.frame_locator("iframe")
    expect(frame.locator("b")).to_have_text("see you", timeout=15_000)
    expect(frame.locator("body")).to_contain_text("Dear Chris, see you")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("heading", name="Rich spring news")).to_be_visible()
    campaign = Campaign.objects.get(name="Rich spring news")
    assert campaign.body_format == BodyFormat.RICH_TEXT
    assert "<b>see you</b>" in campaign.html_body
    assert "{{ first_name }}" in campaign.html_body.replace("\xa0", " ")
    assert not [e for e in page.csp_errors if "Content Security Policy" in e], page.csp_errors

    page.get_by_role("button", name="Edit").click()  # the editor opens on the saved text
    expect(page.get_by_role("textbox", name="Body (rich text)").locator("b")).to_have_text(
        "see you"
    )
    page.get_by_label("Markdown").check()  # switching back shows the textarea again
    expect(page.get_by_label("Body", exact=True)).to_be_visible()


def test_the_body_is_a_plain_textarea_without_javascript(browser: Browser, live_server, world):
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    page = context.new_page()
    try:
        campaign_start(page, world, "Plain spring news")
        page.get_by_label("Rich text").check()
        body = page.get_by_label("Body", exact=True)
        expect(body).to_be_visible()
        body.fill('<p onclick="x()">Dear {{ first_name }}</p><script>alert(1)</script>')
        page.get_by_role("button", name="Save draft").click()
        expect(page.get_by_role("heading", name="Plain spring news")).to_be_visible()
    finally:
        context.close()
    campaign = Campaign.objects.get(name="Plain spring news")
    assert campaign.html_body == "<p>Dear {{ first_name }}</p>"
