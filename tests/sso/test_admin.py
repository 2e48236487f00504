"""Operations' admin for single sign-on: mapping rules and identity links, audited; a membership
saved by an operator becomes one set by hand, which the rules leave alone."""

from __future__ import annotations

from django.urls import reverse

from mlm.models import AuditEntry, Membership, MembershipSource, Role
from mlm.sso.models import Identity, IdentityGroupRule, Provider
from mlm.sso.services import Person, sso_login


def test_an_operator_adds_and_deletes_a_rule_with_audit_entries(world, admin_client):
    added = admin_client.post(
        reverse("admin:sso_identitygrouprule_add"),
        {
            "provider": "saml",
            "group": "eng-comms-approvers",
            "unit": world.unit.pk,
            "role": "approver",
        },
    )
    assert added.status_code == 302, added.content.decode()
    rule = IdentityGroupRule.objects.get()
    assert AuditEntry.objects.get(verb="sso_rule.create").data == {
        "provider": "saml",
        "group": "eng-comms-approvers",
        "role": "approver",
    }
    admin_client.post(
        reverse("admin:sso_identitygrouprule_changelist"),
        {"action": "delete_selected", "_selected_action": [rule.pk], "post": "yes"},
    )
    assert not IdentityGroupRule.objects.exists()
    assert AuditEntry.objects.filter(verb="sso_rule.delete", unit=world.unit).count() == 1
    assert admin_client.get(reverse("admin:sso_identitygrouprule_changelist")).status_code == 200


def test_an_operator_links_an_account_to_its_subject(world, admin_client):
    linked = admin_client.post(
        reverse("admin:sso_identity_add"),
        {"provider": "oidc", "subject": "sub-bob", "user": world.bob.pk},
    )
    assert linked.status_code == 302
    assert Identity.objects.get().user == world.bob
    assert AuditEntry.objects.get(verb="sso_identity.create").data["user"] == "bob"


def test_a_membership_saved_in_admin_is_set_by_hand_from_then_on(world, admin_client):
    IdentityGroupRule.objects.create(
        provider=Provider.OIDC, group="alumni-viewers", unit=world.other_unit, role=Role.VIEWER
    )
    dora = sso_login(
        person=Person(
            provider=Provider.OIDC,
            subject="sub-dora",
            username="dora",
            groups=frozenset({"alumni-viewers"}),
        )
    )
    membership = Membership.objects.get(user=dora)
    assert membership.source == MembershipSource.SSO
    changed = admin_client.post(
        reverse("admin:mlm_membership_change", args=[membership.pk]),
        {"user": dora.pk, "unit": world.other_unit.pk, "role": "editor"},
    )
    assert changed.status_code == 302
    membership.refresh_from_db()
    assert (membership.role, membership.source) == (Role.EDITOR, MembershipSource.MANUAL)
    sso_login(person=Person(provider=Provider.OIDC, subject="sub-dora", username="dora"))
    assert Membership.objects.get(user=dora).role == Role.EDITOR
