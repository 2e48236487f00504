"""The shell in a real browser: log in, switch unit, see the dashboard."""

from playwright.sync_api import expect

from mlm.models import Role
from mlm.services import membership_set
from tests.e2e.conftest import log_in
from tests.personas import PASSWORD, make_world


def test_it_logs_in_switches_unit_and_shows_the_dashboard(page, tmp_path):
    world = make_world()
    membership_set(unit=world.other_unit, user=world.alice, role=Role.EDITOR, by=None)

    log_in(page, "alice", PASSWORD)
    expect(page.get_by_role("heading", name="Your sender units")).to_be_visible()
    page.get_by_role("link", name="Faculty of Engineering").click()
    expect(page.get_by_role("heading", name="Faculty of Engineering")).to_be_visible()
    expect(page.get_by_text("You are administrator of this unit.")).to_be_visible()

    page.locator("summary", has_text="switch unit").click()
    page.get_by_role("link", name="Alumni Relations Office").click()
    expect(page.get_by_role("heading", name="Alumni Relations Office")).to_be_visible()
    expect(page.get_by_text("You are editor of this unit.")).to_be_visible()
    assert page.url.endswith(f"/units/{world.other_unit.slug}/")
    page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    assert not [e for e in page.csp_errors if "Content Security Policy" in e], page.csp_errors


def test_a_wrong_password_is_refused_in_the_browser(page):
    make_world()
    log_in(page, "bob", "wrong password")
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")


def test_the_dashboard_fits_a_phone(phone, tmp_path):
    make_world()
    log_in(phone, "bob", PASSWORD)
    expect(phone.get_by_role("heading", name="Faculty of Engineering")).to_be_visible()
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"page is {width}px wide on a 390px phone"
    phone.screenshot(path=tmp_path / "phone.png", full_page=True)


def test_the_header_leaves_the_screen_to_the_content_on_a_phone(browser, live_server, tmp_path):
    """On a 375x667 phone the header takes at most about 120 px before the content, and every
    page of the unit's menu is still one tap away."""
    world = make_world()
    membership_set(unit=world.other_unit, user=world.alice, role=Role.EDITOR, by=None)
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 375, "height": 667},
        is_mobile=True,
        has_touch=True,
    )
    phone = context.new_page()
    log_in(phone, "alice", PASSWORD)
    for path in ("", "lists/", "campaigns/"):
        phone.goto(f"/units/{world.unit.slug}/{path}")
        top = phone.evaluate("document.querySelector('main').getBoundingClientRect().top")
        assert top <= 120, f"the header takes {top}px of a 375px phone on /{path}"
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"/{path} is {width}px wide on a 375px phone"
    phone.screenshot(path=tmp_path / "phone-header.png")
    menu = phone.get_by_role("navigation", name="Faculty of Engineering")
    labels = [link.inner_text() for link in menu.get_by_role("link").all()]
    assert labels[0] == "Dashboard" and "Outbox" in labels
    menu.get_by_role("link", name="Outbox").click()  # scrolled into view, then tapped
    expect(phone.get_by_role("heading", name="Outbox")).to_be_visible()
    phone.locator("summary", has_text="switch unit").click()
    phone.get_by_role("link", name="Alumni Relations Office").click()
    expect(phone.get_by_role("heading", name="Alumni Relations Office")).to_be_visible()
    expect(phone.get_by_role("button", name="Log out")).to_be_visible()
    context.close()
