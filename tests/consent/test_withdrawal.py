"""A withdrawal wins at once (I6), and opting out of the whole institution reaches every unit."""

from __future__ import annotations

import pytest

from consent.models import Action, Channel, ConsentEvent, Suppression, SuppressionReason
from consent.selectors import sendable
from consent.services import dm_type_create, grant, withdraw, withdraw_everywhere
from mlm.models import AuditEntry
from recipients.models import Audience, Category
from recipients.services import recipient_upsert


@pytest.fixture
def subscribed(world):
    """An external and an internal recipient, both granted two DM types."""
    events = dm_type_create(
        unit=world.unit, key="events", name="Events", notice_text="Invitations.", by=None
    )
    news = dm_type_create(
        unit=world.unit,
        key="news",
        name="News",
        notice_text="News.",
        internal_default=True,
        by=None,
    )
    ext, _ = recipient_upsert(
        unit=world.unit, email="ria@partner.org", category=Category.EXTERNAL, by=None
    )
    staff, _ = recipient_upsert(
        unit=world.unit, email="sol@staff.example.edu", category=Category.STAFF, by=None
    )
    for recipient in (ext, staff):
        grant(recipient=recipient, dm_types=[events, news], channel=Channel.ADMIN, evidence="Desk")
    return world, ext, staff, events, news


def audience(world, dm_type, of: str) -> set[int]:
    return set(sendable(unit=world.unit, dm_type=dm_type, audience=of).values_list("pk", flat=True))


def test_it_stops_one_dm_type_at_once(subscribed):
    """I6: withdrawing one DM type removes the recipient from its audience at once, and only
    from that DM type's."""
    world, ext, staff, events, news = subscribed
    assert audience(world, events, Audience.EXTERNAL) == {ext.pk}

    withdraw(recipient=ext, dm_types=[events], channel=Channel.ONE_CLICK)
    withdraw(recipient=staff, dm_types=[news], channel=Channel.ONE_CLICK)

    assert audience(world, events, Audience.EXTERNAL) == set()
    assert audience(world, news, Audience.EXTERNAL) == {ext.pk}
    # news goes to internal recipients by default, but a withdrawal beats the default.
    assert audience(world, news, Audience.INTERNAL) == set()
    assert audience(world, events, Audience.INTERNAL) == {staff.pk}


def test_it_stops_every_dm_type_on_unsubscribe_from_all(subscribed):
    """I6: "unsubscribe from all" withdraws every DM type of the unit, later ones too, until a
    new grant of a named DM type."""
    world, ext, staff, events, news = subscribed
    for recipient in (ext, staff):
        withdraw(recipient=recipient, dm_types=None, channel=Channel.PREFERENCE_CENTRE)
    later = dm_type_create(
        unit=world.unit,
        key="later",
        name="Later",
        notice_text="N.",
        internal_default=True,
        by=None,
    )
    for dm_type in (events, news, later):
        for of in Audience.values:
            assert audience(world, dm_type, of) == set()

    grant(recipient=ext, dm_types=[news], channel=Channel.DOUBLE_OPT_IN, evidence="Form")
    assert audience(world, news, Audience.EXTERNAL) == {ext.pk}
    assert audience(world, events, Audience.EXTERNAL) == set()


def test_it_withdraws_everywhere_and_suppresses_globally(world):
    """I6: opting out of the institution suppresses the address globally and records a
    withdrawal of all DM types in every unit that holds it."""
    here_type = dm_type_create(
        unit=world.unit, key="events", name="Events", notice_text="N.", by=None
    )
    there_type = dm_type_create(
        unit=world.other_unit, key="alumni", name="Alumni news", notice_text="N.", by=None
    )
    here, _ = recipient_upsert(
        unit=world.unit, email="zoe@partner.org", category=Category.EXTERNAL, by=None
    )
    there, _ = recipient_upsert(
        unit=world.other_unit, email="zoe@partner.org", category=Category.EXTERNAL, by=None
    )
    other_person, _ = recipient_upsert(
        unit=world.unit, email="zed@partner.org", category=Category.EXTERNAL, by=None
    )
    grant(recipient=here, dm_types=[here_type], channel=Channel.ADMIN, evidence="Desk")
    grant(recipient=there, dm_types=[there_type], channel=Channel.ADMIN, evidence="Desk")
    grant(recipient=other_person, dm_types=[here_type], channel=Channel.ADMIN, evidence="Desk")

    suppression = withdraw_everywhere(
        email=" zoe@PARTNER.org", channel=Channel.ONE_CLICK, actor_label="recipient"
    )

    assert (suppression.unit, suppression.reason) == (None, SuppressionReason.OPT_OUT)
    assert Suppression.objects.count() == 1
    for recipient in (here, there):
        latest = ConsentEvent.objects.filter(recipient=recipient).first()
        assert (latest.action, latest.dm_type, latest.actor_label) == (
            Action.WITHDRAW,
            None,
            "recipient",
        )
    assert audience(world, here_type, Audience.EXTERNAL) == {other_person.pk}
    assert not sendable(unit=world.other_unit, dm_type=there_type, audience=Audience.EXTERNAL)
    assert AuditEntry.objects.filter(verb="suppression.create", unit=None).count() == 1
    # Granting again in a unit does not undo the institution-wide refusal.
    grant(recipient=here, dm_types=[here_type], channel=Channel.ADMIN, evidence="Desk again")
    assert audience(world, here_type, Audience.EXTERNAL) == {other_person.pk}
