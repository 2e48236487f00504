"""Recipients through the API: upsert, look-up by address, consent per DM type, export and
erasure, each with the role it needs."""

from __future__ import annotations

import logging

import pytest

from consent.models import Channel, SuppressionReason
from consent.services import grant, withdraw
from mlm.models import AuditEntry
from recipients.models import Category, Recipient, RecipientStatus
from recipients.services import recipient_upsert
from tests.api.test_framework import assert_problem

URL = "/api/v1/recipients/"


@pytest.fixture
def ria(world, dm_types):
    events, _ = dm_types
    recipient, _ = recipient_upsert(
        unit=world.unit,
        email="Ria@Partner.org",
        category=Category.EXTERNAL,
        first_name="Ria",
        by=None,
    )
    grant(recipient=recipient, dm_types=[events], channel=Channel.ADMIN, evidence="Desk")
    return recipient


def test_it_creates_then_updates_a_recipient(world, api_keys, api):
    client = api(api_keys.editor)
    body = {"email": "ria@partner.org", "category": "external", "first_name": "Ria"}
    made = client.post(URL, body, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["audience"] == "external" and made.json()["first_name"] == "Ria"
    body.update(first_name="Maria", attributes={"city": "Hong Kong", "year": 2019})
    updated = client.post(URL, body, format="json")
    assert updated.status_code == 200
    assert updated.json()["code"] == made.json()["code"]
    recipient = Recipient.objects.get(code=made.json()["code"])
    assert recipient.first_name == "Maria" and recipient.attributes["year"] == 2019
    audit = AuditEntry.objects.get(verb="recipient.create")
    assert audit.actor_label.startswith("API key ")


def test_upsert_grants_nothing(world, api_keys, api, dm_types):
    """I2: a recipient made through the API has no consent."""
    answer = api(api_keys.editor).post(
        URL, {"email": "ria@partner.org", "category": "external"}, format="json"
    )
    assert [state["subscribed"] for state in answer.json()["consent"]] == [False, False]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "ria@", "category": "external"}, "email"),
        ({"email": "ria@partner.org", "category": "visitor"}, "category"),
        (
            {"email": "ria@partner.org", "category": "external", "attributes": {"a": [1]}},
            "attributes",
        ),
        (
            {"email": "ria@partner.org", "category": "external", "first_name": "x" * 151},
            "first_name",
        ),
        ({"category": "external"}, "email"),
    ],
)
def test_it_explains_invalid_recipients(world, api_keys, api, body, field):
    answer = assert_problem(api(api_keys.editor).post(URL, body, format="json"), 400)
    assert field in [error["field"] for error in answer["errors"]]


def test_it_refuses_an_internal_address_as_external(world, api_keys, api):
    """I3: the institution's addresses are never external recipients."""
    answer = assert_problem(
        api(api_keys.editor).post(
            URL, {"email": "sol@staff.example.edu", "category": "external"}, format="json"
        ),
        400,
    )
    assert "institution's own domains" in answer["detail"]


def test_a_viewer_or_consent_writer_cannot_upsert(world, api_keys, api):
    body = {"email": "ria@partner.org", "category": "external"}
    assert_problem(api(api_keys.viewer).post(URL, body, format="json"), 403)
    assert_problem(api(api_keys.consent_writer).post(URL, body, format="json"), 403)


def test_it_looks_up_by_address_in_any_case(world, api_keys, api, ria, caplog):
    """The address goes in the body; no log line names it."""
    caplog.set_level(logging.DEBUG)
    response = api(api_keys.viewer).post(
        f"{URL}lookup/", {"email": "RIA@partner.ORG"}, format="json"
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["code"] == str(ria.code)
    states = {state["dm_type"]: state for state in answer["consent"]}
    assert states["events"]["subscribed"] is True and states["events"]["channel"] == "admin"
    assert states["events"]["notice_version"] == 2
    assert states["news"]["subscribed"] is False and states["news"]["since"] is None
    missing = api(api_keys.viewer).post(f"{URL}lookup/", {"email": "x@partner.org"}, format="json")
    assert_problem(missing, 404)
    assert "partner.org" not in caplog.text.lower()


def test_it_reads_a_recipient_and_its_consent(world, api_keys, api, ria, dm_types):
    events, _ = dm_types
    withdraw(recipient=ria, dm_types=[events], channel=Channel.ONE_CLICK)
    client = api(api_keys.viewer)
    assert client.get(f"{URL}{ria.code}/").json()["email"] == "Ria@partner.org"
    states = client.get(f"{URL}{ria.code}/consent/").json()
    assert {s["dm_type"]: (s["subscribed"], s["last_action"]) for s in states} == {
        "events": (False, "withdraw"),
        "news": (False, None),
    }
    assert_problem(api(api_keys.consent_writer).get(f"{URL}{ria.code}/"), 403)


def test_it_exports_the_person_and_audits_it(world, api_keys, api, ria):
    """I9: the export through the API is the recipient page's export, audited for the key."""
    assert_problem(api(api_keys.viewer).post(f"{URL}{ria.code}/export/"), 403)
    response = api(api_keys.editor).post(f"{URL}{ria.code}/export/")
    assert response.status_code == 200
    data = response.json()
    assert data["recipient"]["email"] == "Ria@partner.org"
    assert [e["action"] for e in data["consent_events"]] == ["grant"]
    audit = AuditEntry.objects.get(verb="recipient.export")
    assert audit.actor_label.startswith("API key ") and audit.object_id == str(ria.code)


def test_it_erases_the_person_and_audits_it(world, api_keys, api, ria):
    """I9: erasure through the API is the recipient page's erasure; a second one is refused."""
    assert_problem(api(api_keys.viewer).post(f"{URL}{ria.code}/erase/"), 403)
    response = api(api_keys.editor).post(f"{URL}{ria.code}/erase/")
    assert response.json() == {"code": str(ria.code), "status": "erased"}
    ria.refresh_from_db()
    assert ria.status == RecipientStatus.ERASED and "ria" not in ria.email.lower()
    assert AuditEntry.objects.get(verb="recipient.erase").actor_label.startswith("API key ")
    from consent.models import Suppression

    assert Suppression.objects.filter(reason=SuppressionReason.ERASURE).exists()
    again = assert_problem(api(api_keys.editor).post(f"{URL}{ria.code}/erase/"), 400)
    assert "already erased" in again["detail"]
    lookup = api(api_keys.viewer).post(f"{URL}lookup/", {"email": "ria@partner.org"}, format="json")
    assert_problem(lookup, 404)


def test_another_units_key_gets_404(world, api_keys, api, ria):
    """I8: the recipient of unit A is not found with unit B's key, by code or by address."""
    client = api(api_keys.other_unit)
    assert_problem(client.get(f"{URL}{ria.code}/"), 404)
    assert_problem(client.post(f"{URL}{ria.code}/erase/"), 404)
    assert_problem(client.post(f"{URL}lookup/", {"email": "ria@partner.org"}, format="json"), 404)
    ria.refresh_from_db()
    assert ria.status == RecipientStatus.ACTIVE
