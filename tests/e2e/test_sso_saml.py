"""SAML 2.0 single sign-on in a real browser, against an identity provider on loopback that
signs its answers with a key made for the test (tests/sso/providers.py)."""

from __future__ import annotations

import base64
import logging
from urllib.parse import parse_qs, urlencode

import pytest
from playwright.sync_api import Page, Route, expect

from mlm.models import AuditEntry, Membership, MembershipSource, Role
from mlm.sso.models import IdentityGroupRule, Provider
from tests.personas import make_world
from tests.sso.providers import SamlIdentityProvider, serve


@pytest.fixture
def saml_idp(transactional_db, settings, live_server, tmp_path):
    idp = SamlIdentityProvider(tmp_path)
    with serve(idp) as url:
        settings.SAML_CONFIG = idp.configure(url=url, sp_site_url=live_server.url)
        settings.MLM_SAML_ENABLED = True
        settings.AUTHENTICATION_BACKENDS = [
            *settings.AUTHENTICATION_BACKENDS,
            "mlm.sso.backends.SamlBackend",
        ]
        yield idp


@pytest.fixture
def rules(transactional_db):
    world = make_world()
    for group, unit, role in (
        ("eng-comms-approvers", world.unit, Role.APPROVER),
        ("eng-comms-editors", world.unit, Role.EDITOR),
        ("alumni-viewers", world.other_unit, Role.VIEWER),
    ):
        IdentityGroupRule.objects.create(provider=Provider.SAML, group=group, unit=unit, role=role)
    return world


def saml_log_in(page: Page, person: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Log in with single sign-on (SAML)").click()
    expect(page.get_by_role("heading", name="Loopback identity provider")).to_be_visible()
    page.get_by_role("button", name=person).click()


def test_it_logs_in_maps_roles_and_removes_a_lost_group_at_the_next_login(page, saml_idp, rules):
    saml_idp.users["dora"] = {
        "uid": ["dora"],
        "mail": ["dora@staff.example.edu"],
        "givenName": ["Dora"],
        "groups": ["eng-comms-approvers", "eng-comms-editors", "alumni-viewers", "unrelated"],
    }
    saml_log_in(page, "dora")
    expect(page.get_by_role("heading", name="Your sender units")).to_be_visible()
    expect(page.get_by_role("link", name="Faculty of Engineering")).to_be_visible()
    memberships = {
        m.unit.slug: (m.role, m.source) for m in Membership.objects.filter(user__username="dora")
    }
    assert memberships == {
        "engineering": (Role.APPROVER, MembershipSource.SSO),
        "alumni": (Role.VIEWER, MembershipSource.SSO),
    }

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to MLM")).to_be_visible()
    assert saml_idp.logged_out == ["dora"]

    saml_idp.users["dora"]["groups"] = ["eng-comms-editors"]
    saml_log_in(page, "dora")
    # One unit left: the home page goes straight to it.
    expect(page.get_by_text("You are editor of this unit.")).to_be_visible()
    assert {m.unit.slug: m.role for m in Membership.objects.filter(user__username="dora")} == {
        "engineering": Role.EDITOR
    }
    removed = AuditEntry.objects.get(verb="membership.delete", unit=rules.other_unit)
    assert removed.data["user"] == "dora" and removed.data["by"] == "sso"
    assert AuditEntry.objects.filter(verb="login.sso", actor__username="dora").count() == 2
    assert not [e for e in page.csp_errors if "Content Security Policy" in e], page.csp_errors


def test_a_tampered_assertion_is_refused(page, saml_idp, rules, caplog):
    caplog.set_level(logging.INFO, logger="djangosaml2")
    saml_idp.users["eve"] = {"uid": ["eve"], "groups": ["alumni-viewers"]}

    def promote(route: Route) -> None:
        # Between the identity provider and MLM, someone rewrites a group in the signed XML.
        form = parse_qs(route.request.post_data)
        xml = base64.b64decode(form["SAMLResponse"][0]).decode()
        assert "alumni-viewers" in xml
        form["SAMLResponse"] = [
            base64.b64encode(xml.replace("alumni-viewers", "eng-comms-approvers").encode())
        ]
        route.continue_(post_data=urlencode(form, doseq=True))

    page.route("**/sso/saml2/acs/", promote)
    saml_log_in(page, "eve")
    expect(page.get_by_role("heading", name="Single sign-on did not log you in")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("could not be verified")
    assert "Invalid or malformed SAML Assertion" in caplog.text  # the signature, not the rest
    assert not Membership.objects.filter(user__username="eve").exists()
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in to MLM")).to_be_visible()


def test_a_name_taken_by_a_local_account_is_refused_with_its_reason(page, saml_idp, rules):
    saml_idp.users["alice"] = {"uid": ["alice"], "groups": ["eng-comms-approvers"]}
    saml_log_in(page, "alice")
    expect(page.get_by_role("alert")).to_contain_text("already exists")
    assert Membership.objects.get(user=rules.alice).role == Role.ADMIN
