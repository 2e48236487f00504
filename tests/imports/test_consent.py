"""Imports and consent: privacy by default (I2), the institution's written procedure and its
shortcut, opt-out across lists, and a ledger that still folds to the subscriptions (I4)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from consent.models import Action, Channel, ConsentEvent, Subscription
from consent.selectors import recipient_dm_type_states, sendable, subscription_mismatches
from recipients.importing.choices import ATTESTATION
from recipients.models import Audience, Category, ImportMode, ImportStatus, Recipient
from recipients.services import list_add_members, list_create, recipient_upsert
from tests.imports.helpers import csv_bytes, dm_types, run_import

EVIDENCE = "Open-day registration form, consent clause v3, June 2025"
PEOPLE = csv_bytes(
    [
        ["email", "first name", "last name"],
        ["ann@example.com", "Ann", "Lee"],
        ["bob@example.org", "Bob", "Chan"],
        ["cy@example.net", "Cy", "Wong"],
    ]
)
ADDRESSES = ["ann@example.com", "bob@example.org", "cy@example.net"]


@pytest.fixture
def setting(world):
    events, news, funds = dm_types(world.unit, "events", "newsletter", "fundraising")
    visitors = list_create(unit=world.unit, name="Open day", audience=Audience.EXTERNAL, by=None)
    return world, visitors, [events, news, funds]


def subscribed(unit) -> dict[str, set[str]]:
    """Per address, the DM types a message may reach it with, by `sendable` (I1)."""
    from consent.models import DMType

    reach: dict[str, set[str]] = {}
    for dm_type in DMType.objects.for_unit(unit):
        for email in sendable(unit=unit, dm_type=dm_type, audience=Audience.EXTERNAL).values_list(
            "email", flat=True
        ):
            reach.setdefault(email, set()).add(dm_type.key)
    return reach


def states(email: str) -> dict[str, bool]:
    recipient = Recipient.objects.get(email=email)
    return {s.dm_type.key: s.subscribed for s in recipient_dm_type_states(recipient)}


def test_it_grants_nothing_when_adding_an_external_list(setting):
    """I2: an external import without attestation for named DM types grants nothing."""
    world, visitors, _ = setting
    job = run_import(visitors, PEOPLE, by=world.alice)
    assert job.status == ImportStatus.SUCCEEDED
    assert (job.created_count, job.added_count, job.granted_count) == (3, 3, 0)
    assert not ConsentEvent.objects.exists() and not Subscription.objects.exists()
    assert subscribed(world.unit) == {}


@pytest.mark.parametrize(
    ("choices", "reason"),
    [
        (
            {"mode": ImportMode.GRANT, "attested": True, "evidence": EVIDENCE, "keys": []},
            "Tick the DM types",
        ),
        (
            {"mode": ImportMode.GRANT, "attested": False, "evidence": EVIDENCE},
            "confirm that these people gave explicit consent",
        ),
        ({"mode": ImportMode.GRANT, "attested": True, "evidence": "  "}, "Say where and how"),
        (
            {"mode": ImportMode.ADD, "attested": True, "evidence": EVIDENCE},
            "Adding to the list grants nothing",
        ),
    ],
    ids=["no-dm-type", "no-attestation", "no-evidence", "add-with-dm-types"],
)
def test_it_refuses_a_grant_without_what_privacy_by_default_needs(setting, choices, reason):
    """I2: a grant needs named DM types, evidence and, for an external list, the attestation."""
    world, visitors, types = setting
    keys = choices.pop("keys", ["events"])
    with pytest.raises(ValidationError, match=reason):
        run_import(
            visitors,
            PEOPLE,
            by=world.alice,
            dm_types=[t for t in types if t.key in keys],
            **choices,
        )
    assert not ConsentEvent.objects.exists()
    assert not Recipient.objects.exists()


def test_it_lets_only_administrators_grant_by_import(setting):
    world, visitors, types = setting
    with pytest.raises(ValidationError, match="administrator role"):
        run_import(
            visitors,
            PEOPLE,
            by=world.bob,
            mode=ImportMode.GRANT,
            dm_types=types[:1],
            attested=True,
            evidence=EVIDENCE,
        )


def test_it_grants_the_attested_dm_types_with_evidence_on_every_event(setting):
    """I2: each grant event records channel, evidence with the attestation, actor and notice."""
    world, visitors, (events, news, _funds) = setting
    job = run_import(
        visitors,
        PEOPLE + csv_bytes([["not an address", "x", "y"]]),
        by=world.alice,
        mode=ImportMode.GRANT,
        dm_types=[events, news],
        attested=True,
        evidence=EVIDENCE,
    )
    assert (job.created_count, job.granted_count, job.invalid_count) == (3, 6, 1)
    assert subscribed(world.unit) == {a: {"events", "newsletter"} for a in ADDRESSES}
    grants = ConsentEvent.objects.all()
    assert grants.count() == 6
    for event in grants:
        assert event.action == Action.GRANT and event.channel == Channel.IMPORT
        assert event.evidence.startswith(EVIDENCE)
        assert ATTESTATION in event.evidence and str(job.code) in event.evidence
        assert event.actor == world.alice and event.actor_label == "alice"
        assert event.notice == event.dm_type.current_notice
    assert subscription_mismatches() == []


def test_the_written_procedure_leaves_exactly_the_agreed_dm_type(setting):
    """I2, I4: import granting nothing, grant every DM type with attestation, re-import with
    opt-out ticking all but one: the recipients keep exactly that one, and the ledger folds."""
    world, visitors, (events, news, funds) = setting
    run_import(visitors, PEOPLE, by=world.alice)
    run_import(
        visitors,
        PEOPLE,
        by=world.alice,
        mode=ImportMode.GRANT,
        dm_types=[events, news, funds],
        attested=True,
        evidence=EVIDENCE,
    )
    job = run_import(
        visitors,
        PEOPLE,
        by=world.alice,
        mode=ImportMode.OPT_OUT,
        dm_types=[news, funds],
        evidence="Procedure step 3: only event invitations were agreed to",
    )
    assert (job.withdrawn_count, job.created_count, job.added_count) == (6, 0, 0)
    assert subscribed(world.unit) == {a: {"events"} for a in ADDRESSES}
    for address in ADDRESSES:
        assert states(address) == {"events": True, "newsletter": False, "fundraising": False}
        timeline = ConsentEvent.objects.filter(recipient__email=address).order_by("id")
        assert [(e.action, e.dm_type.key) for e in timeline] == [
            ("grant", "events"),
            ("grant", "newsletter"),
            ("grant", "fundraising"),
            ("withdraw", "newsletter"),
            ("withdraw", "fundraising"),
        ]
        assert "Procedure step 3" in timeline.last().evidence
        assert timeline.last().notice is None  # as consent.services.withdraw records it
    assert subscription_mismatches() == []


def final_state(email: str, suffix: str) -> list[tuple[str, bool]]:
    recipient = Recipient.objects.get(email=email)
    return [
        (s.dm_type.key.split("-")[0], s.subscribed)
        for s in recipient_dm_type_states(recipient)
        if s.dm_type.key.endswith(suffix)
    ]


def test_the_shortcut_gives_the_same_final_state_as_the_procedure(world):
    """I2: one import with attestation granting one DM type = the three-step procedure."""
    finals = []
    for name, steps in (("procedure", 3), ("shortcut", 1)):
        events, news, funds = dm_types(
            world.unit, f"events-{name}", f"news-{name}", f"funds-{name}"
        )
        visitors = list_create(unit=world.unit, name=name, audience=Audience.EXTERNAL, by=None)
        data = csv_bytes([["email"], *[[f"{name}-{a}"] for a in ADDRESSES]])
        grant = {"mode": ImportMode.GRANT, "attested": True, "evidence": EVIDENCE}
        if steps == 3:
            run_import(visitors, data, by=world.alice)
            run_import(visitors, data, by=world.alice, dm_types=[events, news, funds], **grant)
            run_import(
                visitors, data, by=world.alice, mode=ImportMode.OPT_OUT, dm_types=[news, funds]
            )
        else:
            run_import(visitors, data, by=world.alice, dm_types=[events], **grant)
        finals.append({a: final_state(f"{name}-{a}", name) for a in ADDRESSES})
        members = set(visitors.memberships.values_list("recipient__email", flat=True))
        assert members == {f"{name}-{a}" for a in ADDRESSES}
    assert finals[0] == finals[1]
    assert finals[1]["ann@example.com"] == [("events", True), ("funds", False), ("news", False)]
    assert subscription_mismatches() == []


def test_opt_out_reaches_addresses_on_other_lists_and_reports_unknown_ones(setting):
    """I6: an opt-out import withdraws for the unit's recipient wherever it is listed; it adds
    nobody to the list and records nothing for addresses the unit does not have."""
    world, visitors, (events, news, _funds) = setting
    alumni = list_create(unit=world.unit, name="Fair 2024", audience=Audience.EXTERNAL, by=None)
    run_import(
        alumni,
        PEOPLE,
        by=world.alice,
        mode=ImportMode.GRANT,
        dm_types=[events, news],
        attested=True,
        evidence=EVIDENCE,
    )
    data = csv_bytes([["email"], ["BOB@EXAMPLE.ORG".lower()], ["stranger@example.com"]])
    job = run_import(visitors, data, by=world.bob, mode=ImportMode.OPT_OUT, dm_types=[news])
    assert (job.withdrawn_count, job.unknown_count, job.added_count) == (1, 1, 0)
    assert not visitors.memberships.exists()
    assert not Recipient.objects.filter(email="stranger@example.com").exists()
    assert subscribed(world.unit)["bob@example.org"] == {"events"}
    assert subscribed(world.unit)["ann@example.com"] == {"events", "newsletter"}
    withdrawal = ConsentEvent.objects.get(action=Action.WITHDRAW)
    assert withdrawal.actor_label == "bob" and withdrawal.channel == Channel.IMPORT
    assert subscription_mismatches() == []


def test_a_later_import_grant_wins_over_an_earlier_withdrawal_of_all(setting):
    """I4: the latest event wins, whether it is on the DM type's row or on "all DM types"."""
    from consent.services import withdraw

    world, visitors, (events, _news, _funds) = setting
    run_import(visitors, PEOPLE, by=world.alice)
    ann = Recipient.objects.get(email="ann@example.com")
    withdraw(recipient=ann, dm_types=None, channel=Channel.ONE_CLICK)
    run_import(
        visitors,
        csv_bytes([["email"], ["ann@example.com"]]),
        by=world.alice,
        mode=ImportMode.GRANT,
        dm_types=[events],
        attested=True,
        evidence="Re-subscribed at the 2025 fair, form v4",
    )
    assert subscribed(world.unit) == {"ann@example.com": {"events"}}
    assert states("ann@example.com") == {"events": True, "newsletter": False, "fundraising": False}
    assert subscription_mismatches() == []


def test_it_updates_profiles_merges_attributes_and_keeps_what_a_blank_cell_leaves(setting):
    world, visitors, _ = setting
    other = list_create(unit=world.unit, name="Other", audience=Audience.EXTERNAL, by=None)
    ann, _ = recipient_upsert(
        unit=world.unit,
        email="ann@example.com",
        category=Category.EXTERNAL,
        first_name="Annie",
        last_name="Lee",
        attributes={"company": "ACME"},
        by=None,
    )
    list_add_members(recipient_list=other, recipients=[ann], by=None)
    data = csv_bytes(
        [
            ["email", "first name", "last name", "city"],
            ["ann@example.com", "Ann", "", "Sha Tin"],
            ["bob@example.org", "Bob", "Chan", ""],
        ]
    )
    job = run_import(visitors, data, by=world.alice)
    assert (job.created_count, job.updated_count, job.added_count) == (1, 1, 2)
    ann.refresh_from_db()
    assert (ann.first_name, ann.last_name) == ("Ann", "Lee")
    assert ann.attributes == {"company": "ACME", "city": "Sha Tin"}
    again = run_import(visitors, data, by=world.alice)
    assert (again.created_count, again.updated_count, again.added_count) == (0, 0, 0)


def test_an_internal_list_grants_with_evidence_and_no_attestation(world):
    (events,) = dm_types(world.unit, "events")
    staff = list_create(unit=world.unit, name="Staff", audience=Audience.INTERNAL, by=None)
    data = csv_bytes([["email"], ["prof@staff.example.edu"]])
    job = run_import(
        staff,
        data,
        by=world.alice,
        mode=ImportMode.GRANT,
        dm_types=[events],
        evidence="Staff induction form 2025",
        default_category=Category.STAFF,
    )
    assert job.granted_count == 1 and not job.attested
    event = ConsentEvent.objects.get()
    assert event.evidence == f"Staff induction form 2025 (import {job.code})"
    with pytest.raises(ValidationError, match="choose the column that says which"):
        run_import(staff, data, by=world.alice)


def test_imported_recipients_get_distinct_codes(setting):
    """Codes name recipients in URLs: distinct, random, and time-ordered UUIDs."""
    world, visitors, _ = setting
    rows = [["email"]] + [[f"guest{i}@example.com"] for i in range(200)]
    run_import(visitors, csv_bytes(rows), by=world.alice)
    codes = list(Recipient.objects.values_list("code", flat=True))
    assert len(set(codes)) == 200
    assert {c.version for c in codes} == {7}
