"""Separate audiences (I3): a list holds one audience; mixing is refused, naming the address."""

from __future__ import annotations

import re

import pytest

from recipients.models import Audience, Category, ListMembership, RecipientList
from recipients.services import (
    AudienceMismatch,
    list_add_members,
    list_create,
    recipient_upsert,
)


@pytest.fixture
def lists(world):
    return (
        list_create(unit=world.unit, name="Partners", audience=Audience.EXTERNAL, by=world.bob),
        list_create(unit=world.unit, name="Staff", audience=Audience.INTERNAL, by=world.bob),
    )


def add(world, category: str, email: str) -> tuple:
    recipient, _ = recipient_upsert(unit=world.unit, email=email, category=category, by=None)
    return recipient


def test_it_refuses_an_internal_domain_address_on_an_external_list(world, lists, settings):
    """I3: an address of the institution's domains cannot join an external list, even when it
    was recorded as external before its domain became the institution's."""
    external, _ = lists
    partner = add(world, Category.EXTERNAL, "pat@newly-merged.org")
    settings.MLM_INTERNAL_DOMAINS = [*settings.MLM_INTERNAL_DOMAINS, "newly-merged.org"]
    with pytest.raises(
        AudienceMismatch, match=re.escape("pat@newly-merged.org is an address of the")
    ):
        list_add_members(recipient_list=external, recipients=[partner], by=world.bob)
    assert not ListMembership.objects.exists()


def test_it_refuses_staff_on_an_external_list(world, lists):
    """I3: an internal category (staff) cannot join an external list, whatever its domain."""
    external, _ = lists
    staff_at_home = add(world, Category.STAFF, "kim@gmail.example.com")
    with pytest.raises(
        AudienceMismatch, match=re.escape("kim@gmail.example.com is staff (an internal")
    ):
        list_add_members(recipient_list=external, recipients=[staff_at_home], by=world.bob)


def test_it_refuses_an_external_recipient_on_an_internal_list(world, lists):
    """I3: an external recipient cannot join an internal list."""
    _, internal = lists
    partner = add(world, Category.EXTERNAL, "lee@partner.org")
    with pytest.raises(
        AudienceMismatch, match=re.escape("lee@partner.org is an external recipient")
    ):
        list_add_members(recipient_list=internal, recipients=[partner], by=world.bob)


def test_it_refuses_an_external_category_for_an_internal_domain(world):
    """I3: an address of the institution's domains (or a subdomain) is never external."""
    for email in ("max@example.edu", "max@eng.staff.example.edu"):
        with pytest.raises(
            AudienceMismatch, match=re.escape(f"{email} is an address of the institution")
        ):
            add(world, Category.EXTERNAL, email)


def test_it_refuses_the_whole_batch_when_one_is_of_the_other_audience(world, lists):
    """I3: one wrong recipient refuses the batch; nobody is half-added."""
    external, _ = lists
    fine = add(world, Category.EXTERNAL, "ok@partner.org")
    wrong = add(world, Category.STUDENT, "stu@example.edu")
    with pytest.raises(AudienceMismatch, match=re.escape("stu@example.edu is student")):
        list_add_members(recipient_list=external, recipients=[fine, wrong], by=world.bob)
    assert not ListMembership.objects.exists()


def test_it_accepts_each_audience_on_its_own_list(world, lists):
    """I3: the right audience joins (internal people may use outside addresses)."""
    external, internal = lists
    assert (
        list_add_members(
            recipient_list=external,
            recipients=[add(world, Category.EXTERNAL, "a@partner.org")],
            by=world.bob,
        )
        == 1
    )
    assert (
        list_add_members(
            recipient_list=internal,
            recipients=[
                add(world, Category.ALUMNI, "old@gmail.example.com"),
                add(world, Category.STAFF, "s@staff.example.edu"),
            ],
            by=world.bob,
        )
        == 2
    )
    assert RecipientList.objects.get(pk=internal.pk).memberships.count() == 2


def test_it_refuses_a_category_change_that_would_mix_a_list(world, lists):
    """I3: changing an external recipient on an external list into staff is refused."""
    external, _ = lists
    partner = add(world, Category.EXTERNAL, "pat@partner.org")
    list_add_members(recipient_list=external, recipients=[partner], by=world.bob)
    with pytest.raises(
        AudienceMismatch, match=re.escape("pat@partner.org is on the external list")
    ):
        add(world, Category.STAFF, "pat@partner.org")
    partner.refresh_from_db()
    assert partner.category == Category.EXTERNAL
