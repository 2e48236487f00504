"""The recipient's journeys in a real browser: unsubscribe and the preference centre, in English
and Traditional Chinese, on a desktop and a phone (I5, I6). Screenshots are kept in tmp_path."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from consent.models import Channel, ConsentEvent
from consent.selectors import sendable
from consent.tokens import make_recipient_token
from tests.personas import make_world
from tests.public.conftest import Mailing, make_mailing


@pytest.fixture
def mailing(transactional_db) -> Mailing:
    return make_mailing(make_world())


def shot(page: Page, tmp_path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    assert path.stat().st_size > 5_000


def no_csp_errors(page: Page) -> None:
    assert not [e for e in page.csp_errors if "Content Security Policy" in e], page.csp_errors


def newsletter_sendable(mailing: Mailing) -> bool:
    return (
        sendable(unit=mailing.world.unit, dm_type=mailing.newsletter, audience="external")
        .filter(pk=mailing.erin.pk)
        .exists()
    )


def test_unsubscribe_journey_in_english(page: Page, mailing, tmp_path):
    """I6: the footer link's page withdraws the DM type at once; undo grants it back."""
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    page.set_extra_http_headers({"Accept-Language": "en-GB,en;q=0.9"})
    page.goto(f"/u/{token}/")
    expect(page.get_by_role("heading", name="Unsubscribe")).to_be_visible()
    expect(page.get_by_text("1 University Road, Hong Kong")).to_be_visible()
    shot(page, tmp_path, "unsubscribe-en")

    page.get_by_role("button", name="Unsubscribe from Newsletter").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text(
        "You will no longer receive “Newsletter” from Faculty of Engineering."
    )
    assert not newsletter_sendable(mailing)
    shot(page, tmp_path, "unsubscribed-en")

    page.get_by_role("button", name="Undo").click()
    expect(page.get_by_role("heading", name="Subscribed again")).to_be_visible()
    assert newsletter_sendable(mailing)
    assert ConsentEvent.objects.filter(recipient=mailing.erin).first().channel == (
        Channel.PREFERENCE_CENTRE
    )
    shot(page, tmp_path, "resubscribed-en")
    no_csp_errors(page)


def test_unsubscribe_journey_in_traditional_chinese(page: Page, mailing, tmp_path):
    type(mailing.erin).objects.filter(pk=mailing.erin.pk).update(locale="zh-HK")
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    page.goto(f"/u/{token}/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hant")
    expect(page.get_by_role("heading", name="取消訂閱")).to_be_visible()
    shot(page, tmp_path, "unsubscribe-zh-hant")

    page.get_by_role("button", name="取消訂閱Faculty of Engineering的所有郵件").click()
    expect(page.get_by_role("heading", name="已取消訂閱")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text(
        "你將不會再收到Faculty of Engineering的任何推廣郵件。"
    )
    assert not sendable(
        unit=mailing.world.unit, dm_type=mailing.events, audience="external"
    ).exists()
    assert not newsletter_sendable(mailing)
    shot(page, tmp_path, "unsubscribed-zh-hant")

    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("button", name="Unsubscribe from Newsletter")).to_be_visible()
    no_csp_errors(page)


def test_preference_centre_journey_in_english(page: Page, mailing, tmp_path):
    """I2, I4: the boxes show the state; saving writes one event per change."""
    token = make_recipient_token(recipient=mailing.erin)
    page.set_extra_http_headers({"Accept-Language": "en"})
    page.goto(f"/p/{token}/")
    newsletter = page.get_by_label("Newsletter")
    events = page.get_by_label("Event invitations")
    expect(newsletter).to_be_checked()
    expect(events).to_be_checked()
    expect(page.get_by_text("The faculty's monthly newsletter")).to_be_visible()
    shot(page, tmp_path, "preferences-en")

    before = ConsentEvent.objects.count()
    newsletter.uncheck()
    page.get_by_role("button", name="Save my choices").click()
    expect(page.get_by_role("status")).to_have_text("Saved: 1 change.")
    expect(page.get_by_label("Newsletter")).not_to_be_checked()
    assert ConsentEvent.objects.count() == before + 1
    assert not newsletter_sendable(mailing)

    page.get_by_label("Newsletter").check()
    page.get_by_role("button", name="Save my choices").click()
    expect(page.get_by_role("status")).to_have_text("Saved: 1 change.")
    grant = ConsentEvent.objects.first()
    assert (grant.action, grant.channel) == ("grant", Channel.PREFERENCE_CENTRE)
    assert "HeadlessChrome" in grant.user_agent or "Chrome" in grant.user_agent
    assert newsletter_sendable(mailing)
    shot(page, tmp_path, "preferences-saved-en")
    no_csp_errors(page)


def test_preference_centre_journey_in_traditional_chinese(page: Page, mailing, tmp_path):
    token = make_recipient_token(recipient=mailing.erin)
    page.set_extra_http_headers({"Accept-Language": "zh-HK,zh;q=0.9,en;q=0.5"})
    page.goto(f"/p/{token}/")
    expect(page.get_by_role("heading", name="你的郵件偏好設定")).to_be_visible()
    page.get_by_label("Event invitations").uncheck()
    page.get_by_role("button", name="儲存我的選擇").click()
    expect(page.get_by_role("status")).to_have_text("已儲存：1 項更改。")  # noqa: RUF001
    assert not sendable(
        unit=mailing.world.unit, dm_type=mailing.events, audience="external"
    ).exists()
    shot(page, tmp_path, "preferences-zh-hant")
    page.get_by_role("link", name="简体中文").click()
    expect(page.get_by_role("heading", name="你的邮件偏好设置")).to_be_visible()
    no_csp_errors(page)


def test_keyboard_users_reach_every_button_and_see_the_focus(page: Page, mailing):
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    page.goto(f"/u/{token}/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    labels, outlines = [], {}
    for _ in range(7):
        page.keyboard.press("Tab")
        label = page.evaluate("document.activeElement.textContent.trim()")
        labels.append(label)
        outlines[label] = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert "Unsubscribe from Newsletter" in labels
    assert "Stop all marketing mail from Example University" in labels
    assert outlines["Unsubscribe from Newsletter"] == "solid"


def test_public_pages_fit_a_phone(phone: Page, mailing, tmp_path):
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    for name, url in (
        ("unsubscribe", f"/u/{token}/"),
        ("preferences", f"/p/{token}/"),
        ("subscribe", "/s/engineering/?lang=zh-hant"),
        ("invalid", "/u/not-a-token/"),
    ):
        phone.goto(url)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{url} is {width}px wide on a 390px phone"
        shot(phone, tmp_path, f"phone-{name}")
