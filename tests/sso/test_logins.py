"""Single sign-on without a browser: users and memberships from the identity provider's groups,
the password login kept for operations staff, two-factor left to the identity provider, and
routes that answer 404 while their protocol is off."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from mlm.models import AuditEntry, Membership, MembershipSource, Role
from mlm.services import membership_set
from mlm.sso.models import Identity, IdentityGroupRule, Provider
from mlm.sso.services import LoginRefused, Person, sso_login
from tests.personas import PASSWORD, make_user
from tests.sso.providers import oidc_settings_for

OIDC = "mlm.sso.backends.OidcBackend"


@pytest.fixture
def rules(world):
    for group, unit, role in (
        ("eng-comms-approvers", world.unit, Role.APPROVER),
        ("eng-comms-editors", world.unit, Role.EDITOR),
        ("eng-all", world.unit, Role.VIEWER),
        ("alumni-admins", world.other_unit, Role.ADMIN),
    ):
        IdentityGroupRule.objects.create(provider=Provider.OIDC, group=group, unit=unit, role=role)
    return world


def dora(*groups: str, **changes) -> Person:
    fields = {
        "provider": Provider.OIDC,
        "subject": "sub-dora",
        "username": "dora",
        "email": "dora@staff.example.edu",
        "groups": frozenset(groups),
    }
    return Person(**{**fields, **changes})


def roles(user) -> dict[str, tuple[str, str]]:
    return {m.unit.slug: (m.role, m.source) for m in Membership.objects.filter(user=user)}


def test_it_creates_the_user_without_a_password_and_gives_the_highest_role_of_the_rules(rules):
    user = sso_login(person=dora("eng-all", "eng-comms-approvers", "eng-comms-editors", "other"))
    assert user.username == "dora" and user.email == "dora@staff.example.edu"
    assert not user.has_usable_password()
    assert roles(user) == {"engineering": (Role.APPROVER, MembershipSource.SSO)}
    assert AuditEntry.objects.filter(verb="user.create", data__by="sso").count() == 1
    created = AuditEntry.objects.get(verb="membership.create", data__by="sso")
    assert created.data["role"] == Role.APPROVER and created.data["by"] == "sso"


def test_each_login_adds_changes_and_removes_rule_made_memberships(rules):
    user = sso_login(person=dora("eng-comms-approvers"))
    sso_login(person=dora("eng-all", "alumni-admins"))
    assert roles(user) == {
        "engineering": (Role.VIEWER, MembershipSource.SSO),
        "alumni": (Role.ADMIN, MembershipSource.SSO),
    }
    assert AuditEntry.objects.get(verb="membership.change").data["role"] == Role.VIEWER
    sso_login(person=dora())
    assert roles(user) == {}
    removed = AuditEntry.objects.filter(verb="membership.delete")
    assert {(e.unit.slug, e.data["role"]) for e in removed} == {
        ("engineering", Role.VIEWER),
        ("alumni", Role.ADMIN),
    }


def test_memberships_set_by_hand_are_never_touched(rules):
    user = sso_login(person=dora("eng-comms-editors"))
    membership_set(unit=rules.unit, user=user, role=Role.ADMIN, by=rules.alice)
    membership_set(unit=rules.other_unit, user=user, role=Role.VIEWER, by=rules.charlie)
    sso_login(person=dora("alumni-admins"))
    assert roles(user) == {
        "engineering": (Role.ADMIN, MembershipSource.MANUAL),
        "alumni": (Role.VIEWER, MembershipSource.MANUAL),
    }


def test_the_same_group_of_the_other_protocol_gives_nothing(rules):
    user = sso_login(person=dora("eng-comms-approvers", provider=Provider.SAML))
    assert roles(user) == {}


def test_the_user_is_found_by_subject_so_a_renamed_person_stays_themselves(rules):
    user = sso_login(person=dora("eng-all"))
    again = sso_login(person=dora("eng-all", username="dora.lee", email="dora.lee@example.edu"))
    assert again.pk == user.pk and again.email == "dora.lee@example.edu"
    assert Identity.objects.get().last_login_at is not None


def test_a_local_account_of_the_same_name_is_not_taken_over(rules):
    with pytest.raises(LoginRefused, match="already exists and is not linked"):
        sso_login(person=dora("alumni-admins", username="Alice"))
    assert not Identity.objects.exists()
    assert roles(rules.alice) == {"engineering": (Role.ADMIN, MembershipSource.MANUAL)}


def test_an_account_linked_by_an_operator_logs_in(rules):
    Identity.objects.create(provider=Provider.OIDC, subject="sub-alice", user=rules.alice)
    user = sso_login(person=dora("alumni-admins", subject="sub-alice", username="alice"))
    assert user == rules.alice
    assert roles(user)["alumni"] == (Role.ADMIN, MembershipSource.SSO)


def test_a_disabled_account_is_refused(rules):
    user = sso_login(person=dora("eng-all"))
    user.is_active = False
    user.save(update_fields=["is_active"])
    with pytest.raises(LoginRefused, match="disabled"):
        sso_login(person=dora("eng-all"))


def test_a_login_without_a_name_is_refused(rules):
    with pytest.raises(LoginRefused, match="did not say who you are"):
        sso_login(person=dora("eng-all", username=""))


def test_local_login_for_staff_only_refuses_the_password_of_everyone_else(client, world, settings):
    settings.MLM_LOCAL_LOGIN_STAFF_ONLY = True
    settings.MLM_OIDC_ENABLED = True
    page = client.get("/accounts/login/")
    assert "Log in with single sign-on (OpenID Connect)" in page.text
    assert "Operations staff: log in with a password" in page.text
    refused = client.post("/accounts/login/", {"username": "bob", "password": PASSWORD})
    assert refused.status_code == 200 and "_auth_user_id" not in client.session
    assert "passwords are kept for operations staff" in refused.text
    ops = make_user("ops")
    ops.is_staff = True
    ops.save(update_fields=["is_staff"])
    kept = client.post("/accounts/login/", {"username": "ops", "password": PASSWORD})
    assert kept.status_code == 302 and client.session["_auth_user_id"] == str(ops.pk)


def test_a_password_session_ends_once_local_login_is_for_staff_only(client, world, settings):
    client.force_login(world.bob)
    assert client.get("/units/engineering/").status_code == 200
    settings.MLM_LOCAL_LOGIN_STAFF_ONLY = True
    assert client.get("/units/engineering/").status_code == 302


def test_a_single_sign_on_session_is_not_asked_for_a_second_factor(client, world, settings):
    """MLM_REQUIRE_2FA_FOR governs password logins; the identity provider does its own."""
    settings.MLM_REQUIRE_2FA_FOR = ["admin"]
    for name, value in oidc_settings_for("http://localhost:9").items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, OIDC]
    client.force_login(world.alice, backend=OIDC)
    assert client.get("/units/engineering/").status_code == 200
    client.force_login(world.alice)
    assert client.get("/units/engineering/").url.startswith("/accounts/two-factor/")


@pytest.mark.parametrize(
    "path", ["/sso/saml2/login/", "/sso/saml2/metadata/", "/sso/oidc/authenticate/"]
)
def test_the_protocols_answer_404_while_off(client, db, path):
    assert client.get(path).status_code == 404


def test_the_login_page_offers_no_single_sign_on_while_off(client, db):
    page = client.get("/accounts/login/")
    assert "single sign-on" not in page.text
    assert get_user_model().objects.count() == 0
