"""axe-core in a real browser: no serious or critical violation on any unit page or public page,
in English and Traditional Chinese, on a desktop and a phone. The unit pages are the isolation
test's walk, so a new page is checked as soon as it has a URL. (The unit pages are not
translated yet: asked for in Chinese they answer in English, and are checked as they answer.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from campaigns.mail import CampaignMessages
from consent.models import SubscriptionRequest
from consent.tokens import make_recipient_token, make_subscription_token
from mlm.mail.outbox import OutboxBackend
from mlm.models import OutboxMessage
from recipients.models import ListMembership
from tests.campaigns import factories
from tests.campaigns.report_data import sent_campaign
from tests.e2e.conftest import log_in
from tests.personas import PASSWORD, World, make_world
from tests.public.conftest import Mailing, make_mailing
from tests.url_objects import unit_urls

AXE = (Path(__file__).parent / "assets" / "axe.min.js").read_text()
# Each page is checked at both widths: a table that fits a desktop scrolls on a phone.
DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 375, "height": 667}
LANGUAGES = {"en": "en-GB,en;q=0.9", "zh-hant": "zh-HK,zh;q=0.9,en;q=0.5"}

# Frames are left out: each frame on our pages shows a mail, what the unit wrote, with scripts
# disabled, where axe cannot run.
RUN_AXE = """async () => {
  const result = await axe.run(document, {iframes: false, resultTypes: ['violations']});
  return result.violations
    .filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary.replace(/\\s+/g, ' ')),
    }));
}"""


def serious_violations(page: Page) -> list[dict]:
    """axe's serious and critical findings on the page as it is, on a desktop and on a phone."""
    # Evaluated through the DevTools protocol, which the pages' CSP does not govern.
    page.evaluate(AXE)
    found = []
    for size, width in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page.set_viewport_size(size)
        found += [{**v, "id": f"{v['id']} on a {width}"} for v in page.evaluate(RUN_AXE)]
    page.set_viewport_size(DESKTOP)
    return found


def described(found: dict[str, list[dict]]) -> str:
    lines = []
    for where, violations in found.items():
        for v in violations:
            lines.append(f"{where}: {v['id']} ({v['impact']}) {v['help']}")
            lines.extend(f"    {node}" for node in v["nodes"][:5])
    return "\n".join(lines)


@pytest.fixture
def page_in(browser: Browser, live_server) -> Iterator[Callable[[str], Page]]:
    """One browser context per language, closed after the test."""
    contexts = []

    def open_page(language: str) -> Page:
        context = browser.new_context(
            base_url=live_server.url,
            viewport=DESKTOP,
            extra_http_headers={"Accept-Language": LANGUAGES[language]},
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def richer_unit(world: World) -> list[str]:
    """Objects beyond the walk's own, so that the pages show tables, states and figures: a
    sent campaign with deliveries, one of its real mails in the Outbox (long headers such as
    List-Unsubscribe), a list with members. Returns the extra URLs to check."""
    sent = sent_campaign(world, name="Sent news")
    delivery = next(iter(sent.by_email.values()))
    mail = CampaignMessages(sent.campaign).build(delivery.recipient, delivery_id=delivery.pk)
    OutboxBackend().send_messages([mail])
    kept = OutboxMessage.objects.for_unit(world.unit).latest("created_at")
    friends = factories.recipient_list(world.unit)
    news = factories.dm_type(world.unit)
    factories.member(friends, "ann@example.com", first_name="Ann", granted=news)
    factories.member(friends, "ben@example.com", first_name="Ben")
    assert ListMembership.objects.filter(recipient_list=friends).count() == 2
    base = f"/units/{world.unit.slug}"
    return [
        f"{base}/campaigns/{sent.campaign.code}/",
        f"{base}/campaigns/{sent.campaign.code}/report/",
        f"{base}/lists/{friends.code}/",
        f"{base}/outbox/{kept.code}/",
    ]


@pytest.mark.parametrize("language", LANGUAGES)
def test_unit_pages_have_no_serious_violation(page_in, transactional_db, language):
    world = make_world()
    extra = richer_unit(world)
    urls = [url for _route, url in unit_urls(world)] + extra
    page = page_in(language)
    log_in(page, "alice", PASSWORD)
    found, checked = {}, []
    for url in dict.fromkeys(urls):
        # Asked first without the page: POST-only actions (405), redirects and downloads are
        # not pages, nor are HTMX fragments, checked inside the pages that hold them.
        response = page.request.get(url, max_redirects=0)
        content_type = response.headers.get("content-type", "")
        if response.status != 200 or not content_type.startswith("text/html"):
            continue
        if not response.text().lstrip().lower().startswith("<!doctype"):
            continue
        # A mail's own HTML, served for the sandboxed frames of the pages that show it: no
        # script runs in it, axe included, and what it holds is what the unit wrote.
        if "sandbox" in response.headers.get("content-security-policy", ""):
            continue
        page.goto(url)
        checked.append(url)
        if violations := serious_violations(page):
            found[url] = violations
    assert len(checked) >= 25, checked
    assert not found, "\n" + described(found)


def submit(page: Page) -> None:
    """Press the first button of the page's form and wait for the page it answers with."""
    with page.expect_navigation():
        page.locator("main form button[type=submit]").first.click()


def public_pages(page: Page, mailing: Mailing, language: str) -> Iterator[str]:
    """Walk the recipient's pages as a person would, yielding the name of each stop."""
    unsubscribe = f"/u/{make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)}/"
    page.goto(unsubscribe)
    yield "unsubscribe"
    submit(page)
    yield "unsubscribed"
    submit(page)
    yield "resubscribed"
    page.goto(f"/u/{make_recipient_token(recipient=mailing.erin)}/")
    yield "unsubscribe without a DM type"
    page.goto(f"/p/{make_recipient_token(recipient=mailing.erin)}/")
    yield "preferences"
    submit(page)
    yield "preferences saved"
    page.goto(f"/p/{make_recipient_token(recipient=mailing.ian)}/")
    yield "preferences of staff"
    page.goto("/s/engineering/")
    yield "subscribe"
    submit(page)
    yield "subscribe with errors"
    page.locator("input[name=email]").fill(f"new-{language}@example.com")
    page.locator("input[name=first_name]").fill("Nora")
    page.locator("input[name=dm]").first.check()
    submit(page)
    yield "subscribe sent"
    request = SubscriptionRequest.objects.get(email=f"new-{language}@example.com")
    page.goto(f"/s/confirm/{make_subscription_token(request_code=request.code)}/")
    yield "subscribe confirm"
    submit(page)
    yield "subscribe done"
    page.goto("/u/not-a-token/")
    yield "invalid link"


@pytest.mark.parametrize("language", LANGUAGES)
def test_public_pages_have_no_serious_violation(page_in, transactional_db, settings, language):
    mailing = make_mailing(make_world())
    page = page_in(language)
    found, checked = {}, []
    for name in public_pages(page, mailing, language):
        assert page.locator("html").get_attribute("lang") == language, name
        checked.append(name)
        if violations := serious_violations(page):
            found[name] = violations
    settings.MLM_RATE_LIMITS = {**settings.MLM_RATE_LIMITS, "page_ip": "1/m"}
    page.goto("/s/engineering/")
    response = page.goto("/s/engineering/")
    assert response.status == 429
    if violations := serious_violations(page):
        found["too many requests"] = violations
    assert len(checked) == 13, checked
    assert not found, "\n" + described(found)
