"""The web version of a sent mail in a real browser, on a phone: the mail as received, within
the screen's width, no script and no CSP error, its unsubscribe link working."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.utils import timezone
from playwright.sync_api import Browser, expect

from campaigns.models import Campaign, CampaignStatus
from campaigns.sending.batches import batch_send
from campaigns.sending.start import campaign_start
from tests.campaigns import factories
from tests.personas import make_world

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def fresh_rate_limits(settings):
    settings.MLM_RATE_LIMIT_PREFIX = f"rl:e2e-web:{uuid.uuid4().hex}:"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _sent_mail_link(locale: str = "") -> str:
    """The web version path of a mail the dispatch just sent."""
    world = make_world()
    news = factories.dm_type(world.unit)
    target = factories.recipient_list(world.unit, name="Readers")
    factories.member(target, "erin@example.com", granted=news, locale=locale)
    campaign = factories.campaign(world, lists=[target])
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now() - timedelta(seconds=1)
    )
    campaign.refresh_from_db()
    campaign_start(campaign=campaign, by=None)
    batch_send(campaign_id=campaign.pk)
    html = mail.outbox[-1].alternatives[0][0]
    return urlsplit(re.search(r'href="([^"]+/w/[^"]+)"', html).group(1)).path


def test_a_recipient_opens_the_web_version_on_a_phone(
    browser: Browser, live_server, transactional_db, settings, tmp_path
):
    settings.SITE_URL = live_server.url  # the mail's links lead to this server
    path = _sent_mail_link(locale="zh-hant")
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
    )
    context.set_default_timeout(15_000)
    # The mail's own images live on the unit's web site: not reachable from a test.
    context.route(re.compile(r"^https://"), lambda route: route.abort())
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    response = page.goto(path)
    assert response.status == 200
    assert response.headers["x-robots-tag"] == "noindex, nofollow"
    expect(page.get_by_role("heading", name="Hello friend,")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px phone"
    assert page.evaluate("document.scripts.length") == 0
    assert not [e for e in errors if "Content Security Policy" in e], errors
    page.screenshot(path=tmp_path / "web-version-phone.png", full_page=True)

    page.get_by_role("link", name="取消訂閱").click()
    expect(page.get_by_role("heading", name="取消訂閱")).to_be_visible()
    context.close()
