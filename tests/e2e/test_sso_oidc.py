"""OpenID Connect single sign-on in a real browser, against a provider on loopback
(oidc-provider-mock) that signs its ID tokens with a key of its own."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import Page, expect

from mlm.models import AuditEntry, Membership, MembershipSource, Role
from mlm.sso.models import IdentityGroupRule, Provider
from tests.personas import make_world
from tests.sso.providers import oidc_provider, oidc_settings_for

DORA = {
    "preferred_username": "dora",
    "email": "dora@staff.example.edu",
    "given_name": "Dora",
    "groups": ["eng-comms-approvers", "alumni-viewers"],
}


@pytest.fixture
def issuer(transactional_db, settings, live_server):
    with oidc_provider({"dora-sub-1": DORA}) as url:
        for name, value in oidc_settings_for(url).items():
            setattr(settings, name, value)
        settings.MLM_OIDC_ENABLED = True
        settings.AUTHENTICATION_BACKENDS = [
            *settings.AUTHENTICATION_BACKENDS,
            "mlm.sso.backends.OidcBackend",
        ]
        yield url


@pytest.fixture
def rules(transactional_db):
    world = make_world()
    IdentityGroupRule.objects.create(
        provider=Provider.OIDC, group="eng-comms-approvers", unit=world.unit, role=Role.APPROVER
    )
    IdentityGroupRule.objects.create(
        provider=Provider.OIDC, group="alumni-viewers", unit=world.other_unit, role=Role.VIEWER
    )
    # A rule of the other protocol gives nothing to an OpenID Connect login.
    IdentityGroupRule.objects.create(
        provider=Provider.SAML, group="alumni-viewers", unit=world.other_unit, role=Role.ADMIN
    )
    return world


def oidc_log_in(page: Page) -> None:
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Log in with single sign-on (OpenID Connect)").click()
    page.get_by_role("button", name="dora-sub-1").click()


def test_it_logs_in_maps_roles_removes_a_lost_group_and_logs_out(page, issuer, rules):
    oidc_log_in(page)
    expect(page.get_by_role("heading", name="Your sender units")).to_be_visible()
    memberships = {
        m.unit.slug: (m.role, m.source) for m in Membership.objects.filter(user__username="dora")
    }
    assert memberships == {
        "engineering": (Role.APPROVER, MembershipSource.SSO),
        "alumni": (Role.VIEWER, MembershipSource.SSO),
    }

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="End Session")).to_be_visible()
    expect(page.get_by_text("Recommended parameter")).to_have_count(0)  # id_token_hint was sent
    page.get_by_role("button", name="End session").click()
    expect(page.get_by_role("heading", name="Log in to MLM")).to_be_visible()

    requests.put(
        f"{issuer}/users/dora-sub-1",
        json={**DORA, "groups": ["alumni-viewers"]},
        timeout=5,
    ).raise_for_status()
    oidc_log_in(page)
    expect(page.get_by_text("You are viewer of this unit.")).to_be_visible()
    assert {m.unit.slug: m.role for m in Membership.objects.filter(user__username="dora")} == {
        "alumni": Role.VIEWER
    }
    removed = AuditEntry.objects.get(verb="membership.delete", unit=rules.unit)
    assert removed.data == {
        "user": "dora",
        "role": Role.APPROVER,
        "by": "sso",
        "provider": "oidc",
        "reason": "no group the identity provider sent gives this unit any more",
    }
    assert not [e for e in page.csp_errors if "Content Security Policy" in e], page.csp_errors


def test_a_callback_with_a_forged_state_logs_nobody_in(page, issuer, rules):
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Log in with single sign-on (OpenID Connect)").click()
    expect(page.get_by_role("button", name="dora-sub-1")).to_be_visible()
    response = page.goto("/sso/oidc/callback/?code=forged&state=forged")
    assert response.status == 400
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in to MLM")).to_be_visible()
    assert not Membership.objects.filter(user__username="dora").exists()


def test_a_refusal_by_the_provider_is_said_on_the_login_page(page, issuer, rules):
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Log in with single sign-on (OpenID Connect)").click()
    page.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("heading", name="Log in to MLM")).to_be_visible()
    expect(page.get_by_text("The identity provider did not log you in")).to_be_visible()
