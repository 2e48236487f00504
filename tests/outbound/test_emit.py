"""Every change that another system must hear of queues its event in the same transaction."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from consent.models import Channel, SuppressionReason
from consent.services import dm_type_create, grant, suppress, withdraw, withdraw_everywhere
from consent.tokens import make_recipient_token
from outbound.models import Event, EventType
from recipients.models import Audience, Category
from recipients.rights import recipient_erase
from recipients.services import list_create, recipient_upsert
from tests.imports.helpers import csv_bytes, run_import
from tests.outbound.conftest import register

BODY = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def setting(world, receiver):
    news = dm_type_create(unit=world.unit, key="news", name="News", notice_text="N.", by=None)
    events = dm_type_create(unit=world.unit, key="events", name="Events", notice_text="E.", by=None)
    ria, _ = recipient_upsert(
        unit=world.unit, email="Ria@Partner.org", category=Category.EXTERNAL, by=None
    )
    return world, news, events, ria


def payloads(type_: str | None = None) -> list[dict]:
    found = Event.objects.order_by("pk")
    if type_:
        found = found.filter(type=type_)
    return [e.payload for e in found]


def test_it_queues_nothing_and_asks_once_without_an_endpoint(setting):
    """A unit without an endpoint pays one EXISTS for a grant, and the outbox stays empty."""
    _, news, _, ria = setting
    with CaptureQueriesContext(connection) as queries:
        grant(recipient=ria, dm_types=[news], channel=Channel.ADMIN, evidence="Desk")
    assert sum("outbound_endpoint" in q["sql"] for q in queries.captured_queries) == 1
    assert not Event.objects.exists()


def test_a_grant_and_a_withdrawal_carry_address_code_dm_type_and_scope(setting, receiver):
    world, news, events, ria = setting
    endpoint = register(world, receiver)
    grant(recipient=ria, dm_types=[news, events], channel=Channel.ADMIN, evidence="Desk")
    withdraw(recipient=ria, dm_types=[news], channel=Channel.PREFERENCE_CENTRE)
    withdraw(recipient=ria, dm_types=None, channel=Channel.PREFERENCE_CENTRE)
    withdraw_everywhere(email="ria@partner.org", channel=Channel.ADMIN, evidence="Phoned")

    rows = list(Event.objects.order_by("pk"))
    assert {r.endpoint_id for r in rows} == {endpoint.pk}
    assert {r.recipient_key for r in rows} == {str(ria.code)}
    assert len({r.code for r in rows}) == len(rows)
    assert all(r.code.startswith("evt_") and r.payload["id"] == r.code for r in rows)
    said = [(p["type"], (p["data"].get("dm_type") or {}).get("key"), p["data"].get("scope"))
            for p in payloads()]  # fmt: skip
    assert said == [
        ("consent.granted", "news", "dm_type"),
        ("consent.granted", "events", "dm_type"),
        ("consent.withdrawn", "news", "dm_type"),
        ("consent.withdrawn", None, "unit"),
        ("consent.withdrawn", None, "everywhere"),
        ("recipient.suppressed", None, "everywhere"),
    ]
    assert payloads()[0]["data"]["recipient"] == {"code": str(ria.code), "address": ria.email}


def test_it_queues_only_the_types_an_endpoint_chose(setting, receiver):
    world, news, _, ria = setting
    register(world, receiver, types=[EventType.CONSENT_WITHDRAWN])
    grant(recipient=ria, dm_types=[news], channel=Channel.ADMIN, evidence="Desk")
    withdraw(recipient=ria, dm_types=[news], channel=Channel.PREFERENCE_CENTRE)
    assert [p["type"] for p in payloads()] == ["consent.withdrawn"]


def test_a_change_rolled_back_leaves_no_event(setting, receiver):
    """The outbox pattern: the event exists if and only if the change does."""
    world, news, _, ria = setting
    register(world, receiver)
    with pytest.raises(RuntimeError), transaction.atomic():
        grant(recipient=ria, dm_types=[news], channel=Channel.ADMIN, evidence="Desk")
        assert Event.objects.count() == 1
        raise RuntimeError("the request failed later")
    assert not Event.objects.exists()


def test_the_one_click_statement_queues_its_event(setting, receiver):
    """I6: the one-click fast path goes through the ledger, and queues the withdrawal's event."""
    world, news, _, ria = setting
    grant(recipient=ria, dm_types=[news], channel=Channel.ADMIN, evidence="Desk")
    register(world, receiver)
    token = make_recipient_token(recipient=ria, dm_type=news)
    for _ in range(2):  # a provider's retry writes no second event
        assert Client().post(f"/u/{token}/one-click", BODY).status_code == 200
    [event] = payloads()
    assert event["type"] == "consent.withdrawn"
    assert event["data"] == {
        "recipient": {"code": str(ria.code), "address": ria.email},
        "dm_type": {"code": str(news.code), "key": "news", "name": "News"},
        "scope": "dm_type",
        "channel": "one_click",
    }


def test_an_import_queues_its_grants_in_one_statement(setting, receiver):
    world, news, _, _ = setting
    register(world, receiver)
    visitors = list_create(unit=world.unit, name="Open day", audience=Audience.EXTERNAL, by=None)
    people = csv_bytes([["email"], ["ann@example.com"], ["bob@example.org"], ["cy@example.net"]])
    run_import(
        visitors,
        people,
        by=world.alice,
        mode="grant",
        dm_types=[news],
        attested=True,
        evidence="Signed the open day form",
    )
    granted = payloads("consent.granted")
    assert sorted(p["data"]["recipient"]["address"] for p in granted) == [
        "ann@example.com",
        "bob@example.org",
        "cy@example.net",
    ]
    assert {p["data"]["dm_type"]["key"] for p in granted} == {"news"}


def test_a_unit_suppression_is_told_to_that_unit_only(setting, receiver):
    world, _, _, _ = setting
    register(world, receiver)
    suppress(email="ria@partner.org", unit=world.other_unit, reason=SuppressionReason.MANUAL)
    assert not Event.objects.exists()
    suppress(email="RIA@partner.org", unit=world.unit, reason=SuppressionReason.MANUAL)
    [event] = payloads()
    assert (event["type"], event["data"]["scope"]) == ("recipient.suppressed", "unit")


def test_erasure_redacts_the_stored_events_and_says_only_the_code(setting, receiver):
    """I9: after erasure no stored event holds the address; the erased event names the code."""
    world, news, _, ria = setting
    register(world, receiver)
    grant(recipient=ria, dm_types=[news], channel=Channel.ADMIN, evidence="Desk")
    recipient_erase(recipient=ria, by=world.alice)
    stored = payloads()
    assert "partner.org" not in str(stored).lower()
    assert stored[-1]["type"] == "recipient.erased"
    assert stored[-1]["data"] == {"recipient": {"code": str(ria.code)}}
    assert stored[0]["data"]["recipient"] == {"code": str(ria.code)}


def test_a_bounce_and_a_complaint_from_a_provider_are_told(world, receiver):
    """A hard bounce and a spam complaint each queue their event; the complaint's withdrawal
    of every DM type of the unit comes first, in order."""
    from campaigns.feedback import feedback_record
    from campaigns.models import BounceKind, EventKind
    from tests.campaigns import factories
    from tests.campaigns.sending import sending_campaign, sent_to
    from tests.campaigns.test_feedback import event

    news = factories.dm_type(world.unit)
    friends = factories.recipient_list(world.unit)
    erin = factories.member(friends, "erin@example.org", granted=news)
    finn = factories.member(friends, "finn@example.org", granted=news)
    register(world, receiver)
    (to_erin, to_finn) = sent_to(sending_campaign(world), [erin, finn])
    feedback_record(
        [
            event(
                "b", EventKind.BOUNCED, delivery_ref=str(to_erin.pk), bounce_kind=BounceKind.HARD
            ),
            event("c", EventKind.COMPLAINED, delivery_ref=str(to_finn.pk)),
        ]
    )
    said = [(p["type"], p["data"]["recipient"]["address"]) for p in payloads()]
    assert ("recipient.bounced", "erin@example.org") in said
    finn_said = [t for t, address in said if address == "finn@example.org"]
    assert finn_said == ["consent.withdrawn", "recipient.complained"]
