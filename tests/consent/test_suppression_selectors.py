"""Suppression look-ups: the unit's own and the global ones, in any case of the address."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from consent.models import Suppression, SuppressionReason
from consent.selectors import address_suppressions
from consent.services import suppress, suppression_add
from recipients.addresses import InvalidAddress, address_hash, case_sensitive_hash
from recipients.rights import recipient_erase
from recipients.services import recipient_upsert


def test_it_finds_the_units_and_the_global_suppressions_in_any_case(world):
    """I1: both scopes stop mail, so both answer a look-up; another unit's does not."""
    own = suppress(email="Lee@Partner.org", unit=world.unit, reason=SuppressionReason.MANUAL)
    everywhere = suppress(email="lee@partner.org", unit=None, reason=SuppressionReason.HARD_BOUNCE)
    suppress(email="lee@partner.org", unit=world.other_unit, reason=SuppressionReason.MANUAL)
    assert address_suppressions(unit=world.unit, email="LEE@partner.ORG") == [own, everywhere]
    assert address_suppressions(unit=world.unit, email="kai@partner.org") == []


def test_it_finds_a_suppression_kept_as_a_hash_of_the_address_as_written(world):
    """I9: a hash-only suppression from before addresses matched in any case still answers."""
    old = Suppression.objects.create(
        unit=None,
        email="",
        email_hash=case_sensitive_hash("Lee@partner.org"),
        case_sensitive=True,
        reason=SuppressionReason.ERASURE,
    )
    assert address_suppressions(unit=world.unit, email="Lee@partner.org") == [old]


def test_it_refuses_an_invalid_address(world):
    with pytest.raises(InvalidAddress):
        address_suppressions(unit=world.unit, email="not an address")


def test_a_unit_adds_a_suppression_once(world):
    first, created = suppression_add(unit=world.unit, email="Lee@Partner.org", note="CRM", by=None)
    again, created_again = suppression_add(unit=world.unit, email="lee@partner.org", by=None)
    assert (created, created_again) == (True, False)
    assert again == first
    assert (first.email, first.reason, first.note) == ("Lee@partner.org", "manual", "CRM")


def test_an_erased_persons_address_is_suppressed_as_a_hash_alone(world):
    """I9: a unit suppressing an erased person's address does not bring the address back."""
    recipient, _ = recipient_upsert(
        unit=world.unit, email="lee@partner.org", category="external", by=None
    )
    recipient_erase(recipient=recipient, by=None)
    suppression, created = suppression_add(unit=world.other_unit, email="lee@partner.org", by=None)
    assert created
    assert suppression.email == ""
    assert suppression.email_hash == address_hash("lee@partner.org")


@pytest.mark.parametrize(
    ("email", "reason", "message"),
    [
        ("not an address", "manual", "is not a valid address"),
        ("lee@partner.org", "hard_bounce", "A unit records the reasons manual or opt_out"),
    ],
)
def test_it_refuses_a_bad_address_or_reason(world, email, reason, message):
    with pytest.raises(ValidationError, match=message):
        suppression_add(unit=world.unit, email=email, reason=reason, by=None)
    assert not Suppression.objects.exists()
