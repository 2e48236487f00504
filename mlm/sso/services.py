"""Single sign-on logins: the user an identity provider vouches for, created at the first login,
with the memberships the mapping rules give their groups reconciled at each login."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from mlm.models import Membership, MembershipSource, Role
from mlm.services import audit_record
from mlm.sso.models import Identity, IdentityGroupRule, Provider


class LoginRefused(Exception):
    """An identity provider vouched for someone MLM will not log in; the message says why."""


@dataclass(frozen=True)
class Person:
    """What an identity provider said about the person logging in."""

    provider: Provider
    subject: str
    username: str
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    groups: frozenset[str] = field(default_factory=frozenset)


@transaction.atomic
def sso_login(*, person: Person) -> AbstractBaseUser:
    """The user linked to the provider's subject (created, without a password, at the first
    login) with their memberships reconciled with the mapping rules, recorded."""
    if not person.subject or not person.username:
        raise LoginRefused(
            "The identity provider did not say who you are (no user name came with the login). "
            "Ask the identity provider's administrators to release it to MLM."
        )
    identity = (
        Identity.objects.select_for_update()
        .select_related("user")
        .filter(provider=person.provider, subject=person.subject)
        .first()
    )
    if identity is None:
        user = _user_create(person)
        identity = Identity.objects.create(
            provider=person.provider, subject=person.subject, user=user
        )
    else:
        user = identity.user
        if not user.is_active:
            raise LoginRefused("Your MLM account is disabled. Ask an administrator.")
        _user_update(user, person)
    identity.last_login_at = timezone.now()
    identity.save(update_fields=["last_login_at"])
    memberships_reconcile(user=user, provider=person.provider, groups=person.groups)
    audit_record(unit=None, actor=user, verb="login.sso", data={"provider": person.provider})
    return user


def _user_create(person: Person) -> AbstractBaseUser:
    User = get_user_model()
    if User.objects.filter(username__iexact=person.username).exists():
        raise LoginRefused(
            f"An MLM account named {person.username} already exists and is not linked to "
            "single sign-on. Ask an administrator to link it (Single sign-on → Identities) or "
            "to rename it."
        )
    user = User(
        username=person.username,
        email=person.email,
        first_name=person.first_name[:150],
        last_name=person.last_name[:150],
    )
    user.set_unusable_password()
    user.save()
    audit_record(
        unit=None,
        actor=None,
        verb="user.create",
        obj=user,
        data={"user": user.get_username(), "by": "sso", "provider": person.provider},
    )
    return user


def _user_update(user: AbstractBaseUser, person: Person) -> None:
    changed = {
        name: value[:150] if name != "email" else value
        for name, value in (
            ("email", person.email),
            ("first_name", person.first_name),
            ("last_name", person.last_name),
        )
        if value and getattr(user, name) != value
    }
    if changed:
        for name, value in changed.items():
            setattr(user, name, value)
        user.save(update_fields=list(changed))


def roles_for_groups(*, provider: Provider, groups: Iterable[str]) -> dict[int, Role]:
    """The role each unit gives these groups: the highest of the matching rules, by unit id."""
    wanted: dict[int, Role] = {}
    for unit_id, role in IdentityGroupRule.objects.filter(
        provider=provider, group__in=list(groups)
    ).values_list("unit_id", "role"):
        if unit_id not in wanted or Role(role).rank > wanted[unit_id].rank:
            wanted[unit_id] = Role(role)
    return wanted


@transaction.atomic
def memberships_reconcile(
    *, user: AbstractBaseUser, provider: Provider, groups: Iterable[str]
) -> None:
    """Make the user's rule-made memberships those the rules give their groups now: add, change
    and remove them, each with an audit entry. Memberships set by hand are never touched."""
    wanted = roles_for_groups(provider=provider, groups=groups)
    held = {
        m.unit_id: m
        for m in Membership.objects.select_for_update().filter(user=user).select_related("unit")
    }
    username = user.get_username()
    for unit_id, role in wanted.items():
        membership = held.get(unit_id)
        if membership is None:
            membership = Membership.objects.create(
                user=user, unit_id=unit_id, role=role, source=MembershipSource.SSO
            )
            verb = "membership.create"
        elif membership.source == MembershipSource.SSO and membership.role != role:
            membership.role = role
            membership.save(update_fields=["role"])
            verb = "membership.change"
        else:
            continue
        audit_record(
            unit=membership.unit,
            actor=None,
            verb=verb,
            obj=membership,
            data={"user": username, "role": str(role), "by": "sso", "provider": provider},
        )
    for unit_id, membership in held.items():
        if membership.source == MembershipSource.SSO and unit_id not in wanted:
            audit_record(
                unit=membership.unit,
                actor=None,
                verb="membership.delete",
                data={
                    "user": username,
                    "role": membership.role,
                    "by": "sso",
                    "provider": provider,
                    "reason": "no group the identity provider sent gives this unit any more",
                },
            )
            membership.delete()
