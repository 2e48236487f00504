"""Rights of the person (I9): everything held can be exported, and erased for good."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from campaigns.models import BounceKind, Delivery, DeliveryEvent, DeliveryStatus, EventKind
from consent.models import (
    ERASED_EVIDENCE,
    Channel,
    ConsentEvent,
    Subscription,
    SubscriptionRequest,
    Suppression,
    SuppressionReason,
)
from consent.selectors import sendable, subscription_mismatches
from consent.services import (
    dm_type_create,
    grant,
    suppress,
    unsuppress,
    withdraw,
    withdraw_everywhere,
)
from mlm.models import AuditEntry, OutboxMessage
from recipients.addresses import address_hash
from recipients.models import Audience, Category, ListMembership, Recipient, RecipientStatus
from recipients.rights import recipient_erase, recipient_export
from recipients.services import (
    ErasedAddress,
    list_add_members,
    list_create,
    recipient_upsert,
)
from tests.campaigns.factories import campaign as campaign_factory

ADDRESS = "Jane.Quillerby@partner.org"
# Everything personal the test gives the system; none of it may survive erasure.
PERSONAL = [
    ADDRESS,
    "jane.quillerby",
    "Janeforth",
    "Quillerby",
    "Pemberley Holdings",
    "ZX-48151623",
    "203.0.113.77",
    "198.51.100.23",
    "QuillerbyBrowser",
]
SEARCHED_TYPES = ("text", "character varying", "character", "json", "jsonb", "inet", "cidr")


def places_holding(needle: str) -> list[str]:
    """Every table.column of the public schema whose value contains `needle` (any case)."""
    found = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND (data_type = ANY(%s) OR data_type = 'bytea')",
            [list(SEARCHED_TYPES)],
        )
        columns = cursor.fetchall()
        for table, column, data_type in columns:
            if data_type == "bytea":
                condition = f"position(convert_to(%s, 'UTF8') in \"{column}\") > 0"
                params = [needle]
            else:
                condition = f"\"{column}\"::text ILIKE '%%' || %s || '%%'"
                params = [needle]
            cursor.execute(f'SELECT count(*) FROM "{table}" WHERE {condition}', params)  # noqa: S608
            if cursor.fetchone()[0]:
                found.append(f"{table}.{column}")
    return found


@pytest.fixture
def person(world, admin_client):
    """An external recipient with everything the system can hold about a person."""
    events = dm_type_create(
        unit=world.unit,
        key="events",
        name="Event invitations",
        notice_text="Invitations.",
        by=world.alice,
    )
    news = dm_type_create(
        unit=world.unit,
        key="news",
        name="Newsletter",
        notice_text="The faculty newsletter.",
        by=world.alice,
    )
    recipient, _ = recipient_upsert(
        unit=world.unit,
        email=" Jane.Quillerby@PARTNER.org ",
        category=Category.EXTERNAL,
        first_name="Janeforth",
        last_name="Quillerby",
        locale="zh-hant",
        attributes={"employer": "Pemberley Holdings", "member_no": "ZX-48151623"},
        by=world.bob,
    )
    fair = list_create(unit=world.unit, name="Fair 2025", audience=Audience.EXTERNAL, by=world.bob)
    list_add_members(recipient_list=fair, recipients=[recipient], by=world.bob)
    grant(
        recipient=recipient,
        dm_types=[events, news],
        channel=Channel.IMPORT,
        evidence=f"Signed up at the careers fair as {ADDRESS} (Janeforth Quillerby)",
        actor=world.bob,
        ip_address="203.0.113.77",
        user_agent="QuillerbyBrowser/9.1",
    )
    withdraw(
        recipient=recipient,
        dm_types=[news],
        channel=Channel.PREFERENCE_CENTRE,
        evidence="Cleared the newsletter from 198.51.100.23",
        actor_label="recipient",
        ip_address="198.51.100.23",
        user_agent="QuillerbyBrowser/9.2",
    )
    suppress(
        email=ADDRESS,
        unit=world.unit,
        reason=SuppressionReason.MANUAL,
        note="Asked by phone",
        by=world.alice,
    )
    # Operations suppress the address everywhere through the admin: a LogEntry is written too.
    answer = admin_client.post(
        reverse("admin:consent_suppression_add"),
        {
            "email": "Jane.Quillerby@PARTNER.ORG",
            "reason": SuppressionReason.COMPLAINT,
            "note": "ESP report",
        },
    )
    assert answer.status_code == 302, answer.content[:2000]
    SubscriptionRequest.objects.create(
        unit=world.unit,
        email=ADDRESS,
        first_name="Janeforth",
        last_name="Quillerby",
        wording="Yes, send me the newsletter",
        ip_address="203.0.113.77",
        user_agent="QuillerbyBrowser/9.3",
        expires_at=timezone.now() + timedelta(days=7),
    )
    message = EmailMessage(
        "Your invitation", "Dear Janeforth Quillerby", "fac@example.edu", [ADDRESS]
    )
    message.mlm_unit_id = world.unit.pk
    get_connection("mlm.mail.outbox.OutboxBackend").send_messages([message])
    mailing = campaign_factory(world)
    delivery = Delivery.objects.create(
        campaign=mailing,
        unit=world.unit,
        recipient=recipient,
        email_hash=recipient.email_hash,
        status=DeliveryStatus.FAILED,
        reply=f"550 5.1.1 <{ADDRESS}>: mailbox unavailable",
    )
    DeliveryEvent.objects.create(
        source="sendgrid",
        event_key="evt-rights-1",
        kind=EventKind.BOUNCED,
        bounce_kind=BounceKind.HARD,
        delivery=delivery,
        campaign=mailing,
        unit=world.unit,
        occurred_at=timezone.now(),
        description=f"550 5.1.1 The email account <{ADDRESS}> does not exist",
    )
    # A provider's event about the address whose message is not found: kept by hash.
    DeliveryEvent.objects.create(
        source="postmark",
        event_key="evt-rights-2",
        kind=EventKind.BOUNCED,
        bounce_kind=BounceKind.SOFT,
        email_hash=recipient.email_hash,
        occurred_at=timezone.now(),
        description=f"452 <{ADDRESS.upper()}>: mailbox full",
    )
    recipient.refresh_from_db()
    return recipient


def test_it_exports_everything_held_with_the_consent_history(world, person):
    """I9: the export holds profile, attributes, lists, every consent event with its evidence,
    notice, channel, actor, IP and user agent, the state per DM type and the suppressions."""
    data = recipient_export(recipient=person, by=world.alice)

    assert data["recipient"]["email"] == ADDRESS
    assert data["recipient"]["first_name"] == "Janeforth"
    assert data["recipient"]["attributes"] == {
        "employer": "Pemberley Holdings",
        "member_no": "ZX-48151623",
    }
    assert [entry["name"] for entry in data["lists"]] == ["Fair 2025"]
    assert [(d["campaign_name"], d["status"]) for d in data["deliveries"]] == [
        ("Spring news", "failed")
    ]
    assert ADDRESS in data["deliveries"][0]["reply"]
    [event] = data["deliveries"][0]["events"]
    assert (event["kind"], event["bounce_kind"], event["source"]) == ("bounced", "hard", "sendgrid")
    assert ADDRESS in event["description"]
    history = data["consent_events"]
    assert [(e["action"], e["dm_type"]) for e in history] == [
        ("grant", "Event invitations"),
        ("grant", "Newsletter"),
        ("withdraw", "Newsletter"),
    ]
    first = history[0]
    assert first["notice_version"] == 1
    assert first["notice_text"] == "Invitations."
    assert (first["notice_text_zh_hant"], first["notice_text_zh_hans"]) == ("", "")
    assert first["channel"] == "import"
    assert first["actor"] == "bob"
    assert first["ip_address"] == "203.0.113.77"
    assert first["user_agent"] == "QuillerbyBrowser/9.1"
    assert "careers fair" in first["evidence"]
    assert history[2]["actor"] == "recipient"
    now = {state["dm_type_key"]: state["subscribed"] for state in data["consent_now"]}
    # the campaign factory's own DM type, never granted
    assert now == {"events": True, "news": False, "newsletter": False}
    [unmatched] = data["unmatched_provider_events"]
    assert (unmatched["source"], unmatched["bounce_kind"]) == ("postmark", "soft")
    [request] = data["subscription_requests"]
    assert (request["email"], request["wording"]) == (ADDRESS, "Yes, send me the newsletter")
    assert request["ip_address"] == "203.0.113.77"
    assert sorted((s["scope"], s["reason"]) for s in data["suppressions"]) == [
        ("every unit", "complaint"),
        ("this unit", "manual"),
    ]
    entry = AuditEntry.objects.get(verb="recipient.export")
    assert entry.actor == world.alice
    assert entry.object_id == str(person.code)
    assert ADDRESS not in str(entry.data) + entry.object_repr


def test_it_exports_only_what_the_unit_and_the_institution_hold(world, person):
    """I9 with I8: a suppression another unit keeps is not part of this unit's export."""
    suppress(email=ADDRESS, unit=world.other_unit, reason=SuppressionReason.MANUAL, by=None)
    data = recipient_export(recipient=person)
    assert len(data["suppressions"]) == 2


def test_it_leaves_no_personal_data_in_any_table_after_erasure(world, person):
    """I9: after erasure no column of any table holds the address, names, attributes, IP
    addresses or user agents of the person; the ledger keeps its facts (I4)."""
    assert places_holding(ADDRESS)  # the search does find what is there
    events_before = ConsentEvent.objects.filter(recipient=person).count()
    original_hash = address_hash(ADDRESS)

    recipient_erase(recipient=person, by=world.alice)

    for needle in PERSONAL:
        assert places_holding(needle) == [], needle
    person.refresh_from_db()
    assert person.status == RecipientStatus.ERASED
    assert person.email == f"erased-{person.code}@erased.invalid"
    assert (person.first_name, person.last_name, person.locale, person.attributes) == (
        "",
        "",
        "",
        {},
    )
    assert not ListMembership.objects.filter(recipient=person).exists()
    events = ConsentEvent.objects.filter(recipient=person).order_by("id")
    assert events.count() == events_before
    assert [(e.action, e.dm_type.key, e.channel) for e in events] == [
        ("grant", "events", "import"),
        ("grant", "news", "import"),
        ("withdraw", "news", "preference_centre"),
    ]
    assert {(e.evidence, e.ip_address, e.user_agent) for e in events} == {
        (ERASED_EVIDENCE, None, "")
    }
    assert Subscription.objects.filter(recipient=person).count() == 2
    assert subscription_mismatches() == []
    kept = Suppression.objects.get(unit__isnull=True, email_hash=original_hash)
    assert (kept.reason, kept.email) == (SuppressionReason.ERASURE, "")
    assert not OutboxMessage.objects.exists()
    entry = AuditEntry.objects.get(verb="recipient.erase")
    assert entry.actor == world.alice
    assert entry.data == {
        "lists": 1,
        "consent_events": 3,
        "outbox_messages": 1,
        "subscription_requests": 1,
        "outbound_events": 0,
        "files": 0,
        "import_jobs": 0,
    }


def test_it_keeps_an_erased_address_out_of_a_later_import(world, person):
    """I9: the erased address is kept as a keyed hash; importing it again is refused with a
    reason, and a recipient that reaches the table anyway is never sendable."""
    recipient_erase(recipient=person, by=world.alice)

    for unit in (world.unit, world.other_unit):
        with pytest.raises(ErasedAddress, match="erased at their request"):
            recipient_upsert(unit=unit, email=ADDRESS, category=Category.EXTERNAL, by=world.bob)

    # A path that bypasses recipient_upsert (say a bulk load) still cannot reach the person.
    again = Recipient.objects.create(
        unit=world.unit,
        email=ADDRESS,
        email_hash=address_hash(ADDRESS),
        category=Category.EXTERNAL,
    )
    events = person.unit.dm_types.get(key="events")
    grant(recipient=again, dm_types=[events], channel=Channel.IMPORT, evidence="New form")
    assert (
        not sendable(unit=world.unit, dm_type=events, audience=Audience.EXTERNAL)
        .filter(pk=again.pk)
        .exists()
    )
    report = recipient_export(recipient=again)
    assert ("every unit", "erasure") in {(s["scope"], s["reason"]) for s in report["suppressions"]}


def test_it_refuses_to_erase_twice_and_never_lifts_an_erasure(world, person, admin_client):
    """I9: erasure is final; its suppression cannot be lifted by service or admin."""
    recipient_erase(recipient=person, by=world.alice)
    with pytest.raises(ValidationError, match="already erased"):
        recipient_erase(recipient=person, by=world.alice)
    kept = Suppression.objects.get(unit__isnull=True, reason=SuppressionReason.ERASURE)
    with pytest.raises(ValidationError, match="cannot be lifted"):
        unsuppress(suppression=kept, by=world.alice)
    answer = admin_client.post(reverse("admin:consent_suppression_delete", args=[kept.pk]))
    assert answer.status_code == 403
    assert Suppression.objects.filter(pk=kept.pk).exists()


def test_it_turns_an_opt_out_everywhere_into_an_erasure(world):
    """I9: an address opted out everywhere keeps its global suppression, now as an erasure
    without the address."""
    recipient, _ = recipient_upsert(
        unit=world.unit, email="sam.oddleigh@partner.org", category=Category.EXTERNAL, by=None
    )
    withdraw_everywhere(email="sam.oddleigh@partner.org", channel=Channel.ONE_CLICK)
    assert Suppression.objects.get(unit__isnull=True).email == "sam.oddleigh@partner.org"

    recipient_erase(recipient=recipient, by=world.alice)

    kept = Suppression.objects.get(unit__isnull=True)
    assert (kept.reason, kept.email) == (SuppressionReason.ERASURE, "")
    assert places_holding("sam.oddleigh") == []
    assert AuditEntry.objects.filter(verb="suppression.change", unit=None).exists()


def test_it_names_no_person_in_the_admin_history(world, person):
    """I9: the admin's log of the suppression it added names it by hash, not by address."""
    entry = LogEntry.objects.get()
    assert ADDRESS not in entry.object_repr
