"""Privacy by default (I2): nothing subscribes an external recipient without a grant event that
records channel, evidence and actor."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from consent.models import Action, Channel, ConsentEvent, Subscription
from consent.selectors import sendable
from consent.services import ConsentError, dm_type_create, grant, withdraw
from recipients.models import Audience, Category
from recipients.services import list_add_members, list_create, recipient_upsert


@pytest.fixture
def setting(world):
    events = dm_type_create(
        unit=world.unit, key="events", name="Events", notice_text="Invitations.", by=None
    )
    # Internal-default DM types must not leak to external recipients either.
    news = dm_type_create(
        unit=world.unit,
        key="news",
        name="News",
        notice_text="News.",
        internal_default=True,
        by=None,
    )
    ext, _ = recipient_upsert(
        unit=world.unit, email="eve@partner.org", category=Category.EXTERNAL, by=world.bob
    )
    return world, ext, [events, news]


def reachable(world, dm_types) -> set[int]:
    return {
        pk
        for t in dm_types
        for pk in sendable(unit=world.unit, dm_type=t, audience=Audience.EXTERNAL).values_list(
            "pk", flat=True
        )
    }


def test_it_grants_nothing_on_import_or_list_add(setting):
    """I2: creating a recipient and putting it on a list grant nothing, for any DM type."""
    world, ext, dm_types = setting
    fair = list_create(unit=world.unit, name="Fair", audience=Audience.EXTERNAL, by=world.bob)
    list_add_members(recipient_list=fair, recipients=[ext], by=world.bob)
    recipient_upsert(
        unit=world.unit,
        email="eve@partner.org",
        category=Category.EXTERNAL,
        first_name="E",
        by=world.bob,
    )
    assert not ConsentEvent.objects.exists()
    assert not Subscription.objects.exists()
    assert reachable(world, dm_types) == set()


def test_it_refuses_a_grant_without_evidence(setting):
    """I2: a grant needs evidence; blank or missing evidence is refused with the reason."""
    world, ext, dm_types = setting
    for evidence in ("", "   \n"):
        with pytest.raises(ConsentError, match="A grant needs evidence"):
            grant(recipient=ext, dm_types=dm_types, channel=Channel.ADMIN, evidence=evidence)
    assert not ConsentEvent.objects.exists()
    assert reachable(world, dm_types) == set()


def test_it_never_grants_all_dm_types(setting):
    """I2: "all DM types" is never granted: the DM types must be named."""
    _, ext, _ = setting
    for nothing in (None, []):
        with pytest.raises(ConsentError, match="never implied"):
            grant(recipient=ext, dm_types=nothing, channel=Channel.IMPORT, evidence="Form")
    assert not ConsentEvent.objects.exists()


def test_it_refuses_a_grant_without_evidence_in_the_database(setting):
    """I2: the database itself refuses a grant row without evidence."""
    world, ext, dm_types = setting
    with pytest.raises(IntegrityError, match="consent_grant_has_evidence"), transaction.atomic():
        ConsentEvent.objects.create(
            unit=world.unit,
            recipient=ext,
            dm_type=dm_types[0],
            action=Action.GRANT,
            channel=Channel.ADMIN,
            evidence="",
            actor_label="system",
        )


def test_it_subscribes_only_with_a_grant_that_records_its_proof(setting):
    """I2: the one path to subscribed is a grant event with channel, evidence, actor and the
    notice version; a withdrawal never subscribes."""
    world, ext, (events, news) = setting
    withdraw(recipient=ext, dm_types=None, channel=Channel.ADMIN, actor=world.alice)
    withdraw(recipient=ext, dm_types=[events], channel=Channel.ADMIN, actor=world.alice)
    assert reachable(world, [events, news]) == set()

    (event,) = grant(
        recipient=ext,
        dm_types=[events],
        channel=Channel.IMPORT,
        evidence="Open-day form, clause v3",
        actor=world.bob,
    )

    assert reachable(world, [events]) == {ext.pk}
    assert reachable(world, [news]) == set()
    event.refresh_from_db()
    assert (event.channel, event.evidence, event.actor, event.actor_label) == (
        Channel.IMPORT,
        "Open-day form, clause v3",
        world.bob,
        "bob",
    )
    assert event.notice == events.current_notice
    for subscription in Subscription.objects.filter(recipient=ext, state="granted"):
        assert subscription.event.action == Action.GRANT
        assert subscription.event.evidence


def test_it_offers_no_admin_form_that_writes_the_ledger(world, admin_client):
    """I2: operations cannot add consent events or subscriptions through the admin."""
    for name in ("consentevent", "subscription"):
        assert admin_client.get(reverse(f"admin:consent_{name}_add")).status_code == 403
        answer = admin_client.post(
            reverse(f"admin:consent_{name}_add"), {"action": "grant", "state": "granted"}
        )
        assert answer.status_code == 403
    assert not ConsentEvent.objects.exists()
