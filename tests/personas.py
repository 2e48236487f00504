"""The people of the tests.

alice (admin), bob (editor), vic (viewer) and amy (approver) of the Faculty of Engineering, and
charlie, admin of the Alumni office, who must see 404 everywhere in Engineering.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser

from campaigns.units import unit_create
from mlm.models import Role, SenderUnit
from mlm.services import membership_set

PASSWORD = "correct horse battery staple"


@dataclass
class World:
    unit: SenderUnit
    other_unit: SenderUnit
    alice: AbstractUser
    bob: AbstractUser
    vic: AbstractUser
    amy: AbstractUser
    charlie: AbstractUser


def make_user(username: str) -> AbstractUser:
    return get_user_model().objects.create_user(
        username, email=f"{username}@staff.example.edu", password=PASSWORD
    )


def make_world() -> World:
    unit = unit_create(
        name="Faculty of Engineering",
        slug="engineering",
        postal_address="Faculty of Engineering\n1 University Road, Hong Kong",
        by=None,
    )
    other = unit_create(
        name="Alumni Relations Office",
        slug="alumni",
        postal_address="Alumni Relations Office\n1 University Road, Hong Kong",
        by=None,
    )
    people = {name: make_user(name) for name in ("alice", "bob", "vic", "amy", "charlie")}
    for name, role in (
        ("alice", Role.ADMIN),
        ("bob", Role.EDITOR),
        ("vic", Role.VIEWER),
        ("amy", Role.APPROVER),
    ):
        membership_set(unit=unit, user=people[name], role=role, by=None)
    membership_set(unit=other, user=people["charlie"], role=Role.ADMIN, by=None)
    return World(unit=unit, other_unit=other, **people)
