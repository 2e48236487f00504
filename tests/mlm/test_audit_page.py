"""The audit log page of a unit: filters by member, verb and days (in the unit's time zone),
validated with clear errors, and a formula-safe CSV export of what the filters select."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from mlm.models import AuditEntry
from mlm.services import audit_record

HK = ZoneInfo("Asia/Hong_Kong")


def _entry(unit, actor, verb: str, when: datetime, **fields) -> AuditEntry:
    entry = audit_record(unit=unit, actor=actor, verb=verb, **fields)
    AuditEntry.objects.filter(pk=entry.pk).update(created_at=when)  # test set-up only
    return entry


@pytest.fixture
def log(world):
    """Five entries over three days of March 2026 in Hong Kong, and one of another unit."""
    unit = world.unit
    _entry(unit, world.alice, "campaign.create", datetime(2026, 3, 1, 10, 0, tzinfo=HK))
    _entry(unit, world.bob, "campaign.create", datetime(2026, 3, 2, 9, 0, tzinfo=HK))
    _entry(unit, world.bob, "list.create", datetime(2026, 3, 2, 23, 30, tzinfo=HK))
    # 00:30 on 3 March in Hong Kong is still 2 March in UTC: it belongs to the 3rd here.
    _entry(unit, world.bob, "list.create", datetime(2026, 3, 3, 0, 30, tzinfo=HK))
    _entry(unit, world.amy, "campaign.approve", datetime(2026, 3, 3, 12, 0, tzinfo=HK))
    _entry(world.other_unit, world.charlie, "secret.verb", datetime(2026, 3, 2, 12, tzinfo=HK))
    return world


def audit_url(world, name="audit") -> str:
    return reverse(name, args=[world.unit.slug])


def shown(response) -> list[tuple[str, str]]:
    """(who, verb) of each entry the page lists."""
    return [(e.actor_label, e.verb) for e in response.context["page"]]


def test_it_filters_by_member(log, client_for):
    response = client_for(log.alice).get(audit_url(log), {"actor": log.bob.pk})
    assert shown(response) == [("bob", "list.create")] * 2 + [("bob", "campaign.create")]


def test_it_filters_by_the_system_as_actor(log, client_for):
    response = client_for(log.alice).get(audit_url(log), {"actor": "system"})
    # The starter layout is made with the unit, by the same hand.
    verbs = {verb for _, verb in shown(response)}
    assert verbs == {"unit.create", "layout.create", "membership.create"}


def test_it_filters_by_verb_and_member_together(log, client_for):
    response = client_for(log.alice).get(
        audit_url(log), {"actor": log.bob.pk, "verb": "campaign.create"}
    )
    assert shown(response) == [("bob", "campaign.create")]


def test_it_filters_by_days_in_the_units_time_zone(log, client_for):
    client = client_for(log.alice)
    response = client.get(audit_url(log), {"date_from": "2026-03-02", "date_to": "2026-03-02"})
    assert shown(response) == [("bob", "list.create"), ("bob", "campaign.create")]
    response = client.get(audit_url(log), {"date_from": "2026-03-03", "date_to": "2026-03-31"})
    assert shown(response) == [("amy", "campaign.approve"), ("bob", "list.create")]
    response = client.get(audit_url(log), {"date_to": "2026-03-01", "verb": "campaign.create"})
    assert shown(response) == [("alice", "campaign.create")]


def test_the_filters_offer_the_units_members_and_verbs_only(log, client_for):
    form = client_for(log.alice).get(audit_url(log)).context["form"]
    members = dict(form.fields["actor"].choices)
    assert {"alice", "bob", "vic", "amy", "System"} <= set(members.values())
    assert "charlie" not in members.values()
    verbs = [value for value, _ in form.fields["verb"].choices]
    assert {"campaign.create", "list.create", "campaign.approve"} <= set(verbs)
    assert "secret.verb" not in verbs


def test_it_refuses_bad_filters_with_clear_errors(log, client_for):
    client = client_for(log.alice)
    response = client.get(audit_url(log), {"date_from": "2026-03-03", "date_to": "2026-03-01"})
    page = response.content.decode()
    assert "The end date is before the start date." in page
    assert "Correct the filters to see the entries." in page
    assert shown(response) == []
    response = client.get(audit_url(log), {"actor": log.charlie.pk, "date_from": "2026-02-30"})
    errors = response.context["form"].errors
    assert "Select a valid choice" in errors["actor"][0]
    assert errors["date_from"] == ["Enter a valid date."]
    assert client.get(audit_url(log, "audit_export"), {"verb": "nope"}).status_code == 400


def test_the_pages_keep_the_filters(log, client_for):
    for _ in range(55):
        _entry(log.unit, log.bob, "recipient.change", datetime(2026, 3, 4, tzinfo=HK))
    response = client_for(log.alice).get(audit_url(log), {"verb": "recipient.change"})
    page = response.content.decode()
    assert response.context["page"].paginator.count == 55
    assert 'href="?verb=recipient.change&amp;page=2"' in page


def _csv(response) -> list[list[str]]:
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text)))


def test_the_export_holds_the_filtered_entries(log, client_for):
    response = client_for(log.alice).get(
        audit_url(log, "audit_export"), {"actor": log.bob.pk, "date_to": "2026-03-02"}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="audit-engineering.csv"' in response["Content-Disposition"]
    rows = _csv(response)
    assert rows[0] == ["when", "who", "what", "object type", "object id", "object", "details"]
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [
        ("2026-03-02T23:30:00+08:00", "bob", "list.create"),
        ("2026-03-02T09:00:00+08:00", "bob", "campaign.create"),
    ]
    recorded = AuditEntry.objects.for_unit(log.unit).get(verb="audit.export")
    assert recorded.actor == log.alice
    assert recorded.data == {"actor": str(log.bob.pk), "date_to": "2026-03-02"}


def test_the_export_is_formula_safe(log, client_for):
    _entry(
        log.unit,
        log.bob,
        "list.rename",
        datetime(2026, 3, 5, tzinfo=HK),
        data={"name": "=cmd"},
    )
    AuditEntry.objects.filter(verb="list.rename").update(object_repr="=cmd|' /C calc'!A0")
    rows = _csv(client_for(log.alice).get(audit_url(log, "audit_export"), {"verb": "list.rename"}))
    (row,) = rows[1:]
    assert row[5] == "'=cmd|' /C calc'!A0"
    assert row[6] == '{"name": "=cmd"}'
    assert not any(v.startswith(("=", "+", "-", "@")) for r in rows for v in r)


def test_the_audit_page_and_export_are_for_the_units_admins(log, client_for):
    """I8: a member of another unit gets 404; a viewer of the unit is refused (403)."""
    viewer = client_for(log.vic)
    assert viewer.get(audit_url(log)).status_code == 403
    assert viewer.get(audit_url(log, "audit_export")).status_code == 403
    outsider = client_for(log.charlie)
    assert outsider.get(audit_url(log)).status_code == 404
    assert outsider.get(audit_url(log, "audit_export")).status_code == 404
