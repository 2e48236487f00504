"""List membership in bulk by address: one answer per address, the other audience refused (I3),
and a bounded number of queries whatever the number of addresses."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from mlm.models import AuditEntry
from recipients.addresses import AddressHasher
from recipients.memberships import (
    MOST_ADDRESSES,
    Outcome,
    list_members_add,
    list_members_remove,
)
from recipients.models import Audience, Category, ListMembership, Recipient, RecipientStatus
from recipients.rights import recipient_erase
from recipients.services import list_add_members, list_create, recipient_upsert
from tests.processes import wait_for


def add(world, category: str, email: str, unit=None) -> Recipient:
    recipient, _ = recipient_upsert(
        unit=unit or world.unit, email=email, category=category, by=None
    )
    return recipient


def many(unit, count: int) -> list[str]:
    """`count` external recipients of the unit, made in one statement."""
    hasher = AddressHasher()
    emails = [f"guest{n}@partner.example.org" for n in range(count)]
    Recipient.objects.bulk_create(
        Recipient(unit=unit, email=e, email_hash=hasher(e), category=Category.EXTERNAL)
        for e in emails
    )
    return emails


def outcomes(results) -> list[tuple[str, str]]:
    return [(r.address, r.outcome) for r in results]


def test_it_answers_for_every_address_in_order(world, visitors):
    """I3: each address gets its own answer; the other audience is refused with its reason and
    the rest still joins the list."""
    add(world, Category.EXTERNAL, "lee@partner.org")
    already = add(world, Category.EXTERNAL, "kai@partner.org")
    list_add_members(recipient_list=visitors, recipients=[already], by=None)
    add(world, Category.STAFF, "kim@gmail.example.com")
    add(world, Category.EXTERNAL, "zoe@partner.org", unit=world.other_unit)
    results = list_members_add(
        recipient_list=visitors,
        addresses=[
            "LEE@Partner.org",
            "kai@partner.org",
            "kim@gmail.example.com",
            "zoe@partner.org",
            "not an address",
            "lee@partner.org",
        ],
        by=world.bob,
    )
    assert outcomes(results) == [
        ("LEE@Partner.org", Outcome.ADDED),
        ("kai@partner.org", Outcome.ALREADY),
        ("kim@gmail.example.com", Outcome.AUDIENCE_MISMATCH),
        ("zoe@partner.org", Outcome.NOT_RECIPIENT),
        ("not an address", Outcome.INVALID),
        ("lee@partner.org", Outcome.ALREADY),
    ]
    assert "cannot be added to an external list" in results[2].detail
    assert "not a valid address" in results[4].detail
    assert sorted(
        ListMembership.objects.filter(recipient_list=visitors).values_list(
            "recipient__email", flat=True
        )
    ) == ["kai@partner.org", "lee@partner.org"]
    entry = AuditEntry.objects.get(verb="list.add_members", actor=world.bob)
    assert entry.data == {"added": 1}


def test_it_refuses_an_external_recipient_on_an_internal_list(world):
    """I3: an external recipient offered to an internal list is refused, by name."""
    staff_list = list_create(unit=world.unit, name="Staff", audience=Audience.INTERNAL, by=None)
    add(world, Category.EXTERNAL, "lee@partner.org")
    [result] = list_members_add(recipient_list=staff_list, addresses=["lee@partner.org"], by=None)
    assert result.outcome == Outcome.AUDIENCE_MISMATCH
    assert result.detail == (
        "lee@partner.org is an external recipient and cannot be added to an internal list."
    )
    assert not ListMembership.objects.exists()


def test_it_does_not_find_an_erased_recipient(world, visitors):
    """I9: an erased recipient's address matches no recipient any more."""
    recipient = add(world, Category.EXTERNAL, "lee@partner.org")
    recipient_erase(recipient=recipient, by=None)
    [result] = list_members_add(recipient_list=visitors, addresses=["lee@partner.org"], by=None)
    assert result.outcome == Outcome.NOT_RECIPIENT


def test_it_removes_members_and_says_who_was_not_on_the_list(world, visitors):
    on = add(world, Category.EXTERNAL, "lee@partner.org")
    add(world, Category.EXTERNAL, "kai@partner.org")
    list_add_members(recipient_list=visitors, recipients=[on], by=None)
    results = list_members_remove(
        recipient_list=visitors,
        addresses=["Lee@partner.org", "kai@partner.org", "x@nowhere.org", "@", "lee@partner.org"],
        by=world.bob,
    )
    assert outcomes(results) == [
        ("Lee@partner.org", Outcome.REMOVED),
        ("kai@partner.org", Outcome.NOT_MEMBER),
        ("x@nowhere.org", Outcome.NOT_RECIPIENT),
        ("@", Outcome.INVALID),
        ("lee@partner.org", Outcome.NOT_MEMBER),
    ]
    assert not ListMembership.objects.exists()
    assert AuditEntry.objects.get(verb="list.remove_members").data == {"removed": 1}


@pytest.mark.parametrize("count", [0, MOST_ADDRESSES + 1])
def test_it_refuses_an_empty_or_too_large_request(world, visitors, count):
    with pytest.raises(ValidationError, match=r"at least one|at most 1,000"):
        list_members_add(recipient_list=visitors, addresses=["a@b.org"] * count, by=None)


def test_a_thousand_addresses_take_a_few_queries(world, visitors, django_assert_max_num_queries):
    """The whole request is a handful of statements, not one per address."""
    emails = many(world.unit, MOST_ADDRESSES)
    with django_assert_max_num_queries(6):
        results = list_members_add(recipient_list=visitors, addresses=emails, by=world.bob)
    assert {r.outcome for r in results} == {Outcome.ADDED}
    assert ListMembership.objects.filter(recipient_list=visitors).count() == MOST_ADDRESSES
    with django_assert_max_num_queries(6):
        results = list_members_remove(recipient_list=visitors, addresses=emails, by=world.bob)
    assert {r.outcome for r in results} == {Outcome.REMOVED}
    assert not ListMembership.objects.exists()


def _someone_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_an_erasure_under_way_is_waited_for_and_its_recipient_left_out(world, visitors):
    """I9: an erasure locks its recipient, then empties its lists; a bulk call that read the
    recipient before waits for it and does not put the erased recipient back on a list."""
    lee = add(world, Category.EXTERNAL, "lee@partner.org")
    add(world, Category.EXTERNAL, "kai@partner.org")
    locked, release = threading.Event(), threading.Event()
    answers = []

    def erase() -> None:
        try:
            with transaction.atomic():
                Recipient.objects.select_for_update().get(pk=lee.pk)
                Recipient.objects.filter(pk=lee.pk).update(status=RecipientStatus.ERASED)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def add_members() -> None:
        try:
            answers.extend(
                list_members_add(
                    recipient_list=visitors,
                    addresses=["lee@partner.org", "kai@partner.org"],
                    by=None,
                )
            )
        finally:
            connection.close()

    eraser = threading.Thread(target=erase)
    eraser.start()
    assert locked.wait(timeout=10)
    adder = threading.Thread(target=add_members)
    adder.start()
    try:
        wait_for(_someone_waits_for_a_lock, timeout=10, message="the bulk call did not wait")
    finally:
        release.set()
        eraser.join(timeout=30)
        adder.join(timeout=30)
    assert [a.outcome for a in answers] == [Outcome.NOT_RECIPIENT, Outcome.ADDED]
    assert list(ListMembership.objects.values_list("recipient__email", flat=True)) == [
        "kai@partner.org"
    ]
