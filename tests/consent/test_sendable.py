"""Consent at send time (I1): `sendable` against a plain reading of DESIGN.md §3 I1, on random
histories of grants and withdrawals, audiences, suppressions and statuses."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.units import unit_create
from consent.models import Channel, SuppressionReason
from consent.selectors import sendable
from consent.services import dm_type_create, grant, suppress, withdraw
from recipients.models import Audience, Category, Recipient, RecipientStatus
from recipients.services import recipient_upsert

INTERNAL_DOMAINS = ["example.edu", "staff.example.edu", "eng.example.edu"]
EXTERNAL_DOMAINS = ["partner.org", "mail.example.com"]
INTERNAL_CATEGORIES = [Category.STAFF, Category.STUDENT, Category.ALUMNI]


@dataclass(frozen=True)
class Person:
    category: str
    domain: str
    status: str
    suppressed: str | None  # "unit", "global", "other unit" (must not matter) or None


@dataclass(frozen=True)
class Event:
    person: int
    dm_type: int | None  # None: all DM types of the unit (withdrawals only: I2)
    action: str  # "grant" or "withdraw"


@dataclass(frozen=True)
class Scenario:
    internal_default: list[bool]
    people: list[Person]
    history: list[Event]


@st.composite
def people(draw) -> Person:
    category = draw(st.sampled_from([*INTERNAL_CATEGORIES, Category.EXTERNAL]))
    # Internal people may use outside addresses; external ones never the institution's domains.
    domains = EXTERNAL_DOMAINS if category == Category.EXTERNAL else INTERNAL_DOMAINS
    domain = draw(st.sampled_from(domains + EXTERNAL_DOMAINS))
    # Active more often than not: the interesting case.
    status = draw(st.sampled_from([*[RecipientStatus.ACTIVE] * 3, *RecipientStatus.values]))
    suppressed = draw(st.sampled_from([None, None, None, "unit", "global", "other unit"]))
    return Person(category, domain, status, suppressed)


@st.composite
def scenarios(draw) -> Scenario:
    internal_default = draw(st.lists(st.booleans(), min_size=1, max_size=3))
    crowd = draw(st.lists(people(), min_size=1, max_size=5))
    kinds = len(internal_default)
    event = st.one_of(
        st.builds(
            Event,
            person=st.integers(0, len(crowd) - 1),
            dm_type=st.integers(0, kinds - 1),
            action=st.just("grant"),
        ),
        st.builds(
            Event,
            person=st.integers(0, len(crowd) - 1),
            dm_type=st.none() | st.integers(0, kinds - 1),
            action=st.just("withdraw"),
        ),
    )
    history = draw(st.lists(event, max_size=14))
    return Scenario(internal_default, crowd, history)


def may_receive(scenario: Scenario, who: int, dm_type: int, audience: str) -> bool:
    """DESIGN.md §3 I1, read literally, for a recipient of the unit the campaign is from."""
    person = scenario.people[who]
    internal = person.category in INTERNAL_CATEGORIES
    if (Audience.INTERNAL if internal else Audience.EXTERNAL) != audience:
        return False  # a campaign reaches its own audience only (I3)
    if person.status != RecipientStatus.ACTIVE:
        return False
    if person.suppressed in ("unit", "global"):
        return False
    latest = None
    for event in scenario.history:
        if event.person == who and event.dm_type in (None, dm_type):
            latest = event.action
    if not internal:
        return latest == "grant"
    return latest != "withdraw" and (scenario.internal_default[dm_type] or latest == "grant")


def build(scenario: Scenario):
    """Write the scenario through the services; returns the unit, DM types and recipients."""
    unit = unit_create(name="Faculty", slug="faculty", postal_address="Campus", by=None)
    other = unit_create(name="Other office", slug="other", postal_address="Campus", by=None)
    dm_types = [
        dm_type_create(
            unit=unit,
            key=f"t{i}",
            name=f"Type {i}",
            notice_text="Notice.",
            internal_default=d,
            by=None,
        )
        for i, d in enumerate(scenario.internal_default)
    ]
    recipients = [
        recipient_upsert(unit=unit, email=f"p{i}@{p.domain}", category=p.category, by=None)[0]
        for i, p in enumerate(scenario.people)
    ]
    for event in scenario.history:
        recipient = recipients[event.person]
        if event.action == "grant":
            grant(
                recipient=recipient,
                dm_types=[dm_types[event.dm_type]],
                channel=Channel.IMPORT,
                evidence="Registration form, consent clause v2",
            )
        else:
            scope = None if event.dm_type is None else [dm_types[event.dm_type]]
            withdraw(recipient=recipient, dm_types=scope, channel=Channel.ONE_CLICK)
    for i, person in enumerate(scenario.people):
        if person.suppressed:
            scope = {"unit": unit, "global": None, "other unit": other}[person.suppressed]
            suppress(email=recipients[i].email, unit=scope, reason=SuppressionReason.MANUAL)
        Recipient.objects.filter(pk=recipients[i].pk).update(status=person.status)
    # The same address in another unit, granted there: never part of this unit's audience.
    first = scenario.people[0]
    stranger, _ = recipient_upsert(
        unit=other, email=recipients[0].email, category=first.category, by=None
    )
    theirs = dm_type_create(unit=other, key="t0", name="Theirs", notice_text="N.", by=None)
    grant(recipient=stranger, dm_types=[theirs], channel=Channel.ADMIN, evidence="Desk")
    return unit, dm_types, recipients


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_it_sends_exactly_to_whom_i1_allows(db, scenario):
    """I1: for every DM type and audience, `sendable` holds exactly the recipients that the
    plain reading of I1 allows (each example written and rolled back in a savepoint)."""
    with transaction.atomic():
        unit, dm_types, recipients = build(scenario)
        for t, dm_type in enumerate(dm_types):
            for audience in Audience.values:
                got = set(
                    sendable(unit=unit, dm_type=dm_type, audience=audience).values_list(
                        "pk", flat=True
                    )
                )
                expected = {
                    r.pk for i, r in enumerate(recipients) if may_receive(scenario, i, t, audience)
                }
                assert got == expected, (t, audience)
        transaction.set_rollback(True)
