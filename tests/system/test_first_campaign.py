"""A newcomer's first campaign on the embedded default, in a real browser, from `make run` on a
clean copy: the demo editor writes a campaign in Markdown on the starter layout, the demo
approver approves it, it is sent now, the Outbox holds exactly its mails, the reports open, a
recipient unsubscribes through a link of a kept mail, and the next campaign skips them."""

from __future__ import annotations

import re
import time
import urllib.parse
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from mlm.demo import DEMO_INTERNAL
from tests.system.make_run import free_port, fresh_clone, make_run

# From `make run` on a fresh clone to the first mail in the Outbox, install included.
FIRST_MAIL_WITHIN = 5 * 60

BODY = """# Spring open day

Dear {{ first_name|default("friend") }},

The Faculty opens its **laboratories** on 12 April. Come and see:

- the robotics hall
- the wind tunnel

[Register here](https://www.example.edu/engineering/open-day)
"""


def log_in(page: Page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("User name")).to_be_visible()


def write_and_submit(page: Page, name: str) -> str:
    """As the editor: a Markdown campaign to all staff on the starter layout, submitted; its
    page's path."""
    page.goto("/units/engineering/campaigns/")
    page.get_by_role("button", name="New campaign").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("DM type").select_option(label="Newsletter")
    page.get_by_label("Audience").select_option("internal")
    page.get_by_label("All staff (internal)").check()
    page.get_by_label("From").select_option(index=1)
    page.get_by_label("Layout").select_option(label="Starter layout")
    page.get_by_label("Subject").fill("{{ first_name|default('Friend') }}, " + name)
    page.get_by_label("Markdown", exact=True).check()
    page.get_by_label("Body", exact=True).fill(BODY)
    preview = page.locator("#live-preview")
    expect(preview.locator("iframe")).to_be_visible()
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.locator(".check-fail")).to_have_count(0)
    page.get_by_role("button", name="Submit for approval").click()
    expect(page.get_by_text("Submitted: an approver")).to_be_visible()
    return urllib.parse.urlsplit(page.url).path


def approve_and_send(page: Page, campaign: str, approver: tuple[str, str]) -> int:
    """As the approver: review, approve, send now; the number the review said would get it."""
    log_in(page, *approver)
    page.goto(campaign)
    page.get_by_role("button", name="Review", exact=True).click()
    expect(page.get_by_text("Would receive it")).to_be_visible()
    sendable = int(page.locator(".audience-sendable").first.inner_text())
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.get_by_text("Approved. It can now be scheduled.")).to_be_visible()
    page.get_by_role("button", name="Schedule", exact=True).click()
    page.get_by_label("Send now").check()
    page.get_by_role("button", name="Schedule").click()
    return sendable


def wait_until_sent(page: Page, campaign: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        page.goto(campaign)
        if page.locator(".badge-sent").count():
            return
        assert time.monotonic() < deadline, page.locator("main").inner_text()[:3000]
        page.wait_for_timeout(1000)


def outbox_total(page: Page, campaign_name: str) -> int:
    page.goto("/units/engineering/outbox/")
    page.get_by_label("Campaign").select_option(label=campaign_name)
    page.get_by_role("button", name="Filter").click()
    return int(re.match(r"\d+", page.locator("#outbox-total").inner_text()).group())


@pytest.mark.e2e  # and `system` by its folder
def test_a_newcomers_first_campaign_from_make_run_to_the_report(browser, tmp_path):
    """I1, I5, I6 on the path every newcomer takes: the embedded default, as `make run` starts
    it on a fresh copy, sends, reports, and honours an unsubscribe from one of its mails."""
    with fresh_clone() as workdir:
        _journey(workdir, browser, tmp_path)


def _journey(workdir: Path, browser: Browser, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with make_run(workdir, port) as output:
        _, editor = output.wait_for(r"Demo editor.*user name (\S+)\s+password (\S+)", 600)
        _, approver = output.wait_for(r"Demo approver.*user name (\S+)\s+password (\S+)", 60)
        output.wait_for(r"MLM is running at", timeout=60)
        context = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        page = context.new_page()

        # 1-3. The editor writes in Markdown and submits; the approver approves and sends now.
        log_in(page, *editor.groups())
        first = write_and_submit(page, "Open day")
        log_out(page)
        sendable = approve_and_send(page, first, approver.groups())
        assert sendable > 0
        wait_until_sent(page, first)
        first_mail_after = time.monotonic() - started
        assert first_mail_after < FIRST_MAIL_WITHIN, f"first mail after {first_mail_after:.0f} s"
        print(f"make run to the first campaign sent: {first_mail_after:.1f} s")
        log_out(page)

        # 4. The Outbox holds exactly one mail per recipient who could receive it.
        log_in(page, *editor.groups())
        assert outbox_total(page, "Open day") == sendable

        # 5. The campaign report and the unit report open.
        page.goto(first)
        page.get_by_role("button", name="Report", exact=True).click()
        expect(page.get_by_role("heading", name=re.compile("Open day"))).to_be_visible()
        expect(page.get_by_text(str(sendable)).first).to_be_visible()
        page.goto("/units/engineering/reports/")
        expect(page.get_by_role("heading", level=1)).to_be_visible()

        # 6. A recipient unsubscribes through the link of a kept mail, in a new tab.
        page.goto("/units/engineering/outbox/")
        page.get_by_label("Campaign").select_option(label="Open day")
        page.get_by_role("button", name="Filter").click()
        # A recipient who reads English: the unsubscribe page speaks the recipient's language.
        rows = page.locator("table.outbox-messages tbody tr")
        english = {email for email, *_, locale, _grants in DEMO_INTERNAL if locale == "en"}
        row = next(r for r in rows.all() if r.locator("td").nth(1).inner_text().strip() in english)
        leaver = row.locator("td").nth(1).inner_text().strip()
        row.get_by_role("link").first.click()
        frame = page.frame_locator("iframe.mail-preview")
        expect(frame.get_by_role("heading", name="Spring open day")).to_be_visible()
        with page.expect_popup() as popup:
            frame.get_by_role("link", name="unsubscribe", exact=True).click()
        tab = popup.value
        tab.wait_for_load_state()
        tab.get_by_role("button", name="Unsubscribe from Newsletter").click()
        expect(tab.get_by_text(re.compile("unsubscribed", re.I)).first).to_be_visible()
        tab.close()

        # 7. The next campaign skips that person: one fewer would receive it.
        second = write_and_submit(page, "Open day, reminder")
        log_out(page)
        assert approve_and_send(page, second, approver.groups()) == sendable - 1
        wait_until_sent(page, second)
        log_out(page)
        log_in(page, *editor.groups())
        assert outbox_total(page, "Open day, reminder") == sendable - 1
        page.goto("/units/engineering/outbox/")
        page.get_by_label("Campaign").select_option(label="Open day, reminder")
        page.get_by_label("Address contains").fill(leaver)
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("#outbox-total")).to_have_text(re.compile(r"^0 messages"))
        page.screenshot(path=tmp_path / "outbox.png", full_page=True)
        context.close()
