"""What the page tests of recipients and lists share: people, lists and DM types of the
personas' unit, and the URL and rows of a page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from consent.models import DMType
from consent.services import dm_type_create
from recipients.models import Audience, Category, Recipient, RecipientList
from recipients.services import list_create, recipient_upsert


def person(world, email: str, category: str = Category.EXTERNAL, **names) -> Recipient:
    recipient, _ = recipient_upsert(
        unit=world.unit, email=email, category=category, by=world.bob, **names
    )
    return recipient


def page_of(world, name: str, *objects) -> str:
    return reverse(name, args=[world.unit.slug, *(o.code for o in objects)])


def shown(response) -> list[str]:
    """The addresses in a page of results, in order."""
    return [r.email for r in response.context["page"].rows]


@pytest.fixture
def partners(world) -> RecipientList:
    return list_create(unit=world.unit, name="Partners", audience=Audience.EXTERNAL, by=world.bob)


@pytest.fixture
def staff(world) -> RecipientList:
    return list_create(unit=world.unit, name="Staff", audience=Audience.INTERNAL, by=world.bob)


@pytest.fixture
def dm_types(world) -> dict[str, DMType]:
    def make(key, name, internal_default=False):
        return dm_type_create(
            unit=world.unit,
            key=key,
            name=name,
            notice_text=f"{name}: notice version 1.",
            internal_default=internal_default,
            by=world.alice,
        )

    return {
        "news": make("news", "Newsletter", internal_default=True),
        "events": make("events", "Event invitations"),
        "seminars": make("seminars", "Research seminars"),
    }
