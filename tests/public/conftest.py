"""Fixtures of the public recipient pages: DM types, recipients with consent, fresh rate limits."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from consent.models import Channel, DMType
from consent.services import dm_type_create, grant
from recipients.models import Category, Recipient
from recipients.services import recipient_upsert
from tests.personas import World


@dataclass
class Mailing:
    world: World
    newsletter: DMType
    events: DMType
    archived: DMType
    other_unit_type: DMType
    erin: Recipient  # external, granted newsletter and events
    ian: Recipient  # internal (staff); events goes to staff by default
    erin_elsewhere: Recipient  # the same address in the other unit, granted there


def make_mailing(world: World) -> Mailing:
    from consent.services import dm_type_archive

    newsletter = dm_type_create(
        unit=world.unit,
        key="newsletter",
        name="Newsletter",
        notice_text="The faculty's monthly newsletter: research, people and events.",
        by=None,
    )
    events = dm_type_create(
        unit=world.unit,
        key="events",
        name="Event invitations",
        notice_text="Invitations to public lectures, open days and alumni evenings.",
        internal_default=True,
        by=None,
    )
    archived = dm_type_create(
        unit=world.unit, key="old", name="Old appeal", notice_text="A past appeal.", by=None
    )
    dm_type_archive(dm_type=archived, by=None)
    other_type = dm_type_create(
        unit=world.other_unit,
        key="reunions",
        name="Reunions",
        notice_text="Class reunions.",
        by=None,
    )
    erin, _ = recipient_upsert(
        unit=world.unit,
        email="erin@example.com",
        category=Category.EXTERNAL,
        first_name="Erin",
        by=None,
    )
    grant(
        recipient=erin,
        dm_types=[newsletter, events],
        channel=Channel.IMPORT,
        evidence="Open-day registration form, consent clause v3",
    )
    ian, _ = recipient_upsert(
        unit=world.unit, email="ian@staff.example.edu", category=Category.STAFF, by=None
    )
    elsewhere, _ = recipient_upsert(
        unit=world.other_unit, email="erin@example.com", category=Category.EXTERNAL, by=None
    )
    grant(
        recipient=elsewhere,
        dm_types=[other_type],
        channel=Channel.IMPORT,
        evidence="Reunion sign-up sheet 2024",
    )
    return Mailing(world, newsletter, events, archived, other_type, erin, ian, elsewhere)


@pytest.fixture
def mailing(world) -> Mailing:
    return make_mailing(world)
