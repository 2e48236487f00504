"""The API in a real browser: a unit admin makes a key, uses it from the documentation page
(Swagger UI served by MLM under its own CSP), and revokes it."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from api.models import ApiKey
from tests.e2e.conftest import log_in
from tests.personas import PASSWORD, make_world


def test_an_admin_makes_a_key_sees_it_once_and_revokes_it(page):
    make_world()
    log_in(page, "alice", PASSWORD)
    page.goto("/units/engineering/campaigns/settings/")
    page.get_by_role("link", name="API keys", exact=True).click()
    page.get_by_label("Name").fill("Alumni portal")
    page.get_by_label("Role").select_option("consent-writer")
    page.get_by_role("button", name="Make key").click()
    secret = page.locator("#new-api-key").inner_text()
    assert re.fullmatch(r"mlm_[0-9a-f]{8}_[\w-]{43}", secret)
    page.goto("/units/engineering/api-keys/")
    expect(page.get_by_text(secret)).to_have_count(0)
    row = page.get_by_role("row", name=re.compile("Alumni portal"))
    expect(row).to_contain_text("Active")
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("revoked: it no longer works")).to_be_visible()
    assert ApiKey.objects.get(name="Alumni portal").revoked_at is not None
    assert not [e for e in page.csp_errors if "Content Security Policy" in e], page.csp_errors


def test_the_api_documentation_renders_under_the_csp(page):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto("/api/docs/")
    expect(page.get_by_text("MLM API").first).to_be_visible()
    expect(page.get_by_text("/api/v1/consent/").first).to_be_visible()
    assert not [e for e in page.csp_errors if "Content Security Policy" in e], page.csp_errors
    base = page.url.split("/api/docs/")[0]
    assert all(url.startswith((base, "data:")) for url in requests), requests
