"""POST /api/v1/consent/: grants and withdrawals from other systems, through the one consent
writer, with evidence, idempotency and the audience rules."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from api.idempotency import purge
from api.models import IdempotentRequest
from consent.models import Channel, ConsentEvent, Suppression, SuppressionReason
from consent.selectors import sendable
from consent.services import grant, suppress
from recipients.models import Audience, Category, Recipient
from recipients.rights import recipient_erase
from recipients.services import recipient_upsert
from tests.api.test_framework import assert_problem

URL = "/api/v1/consent/"
AGREED = "2026-11-30T09:15:00Z"


def grant_body(email: str = "ria@partner.org", **changes) -> dict:
    body = {
        "email": email,
        "action": "grant",
        "dm_type": "events",
        "evidence": {
            "source_system": "Alumni portal",
            "timestamp": AGREED,
            "form_text": "Yes, send me invitations to faculty events.",
            "form_url": "https://alumni.example.org/register",
            "ip_address": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (X11)",
            "notice_version": 2,
        },
    }
    evidence = changes.pop("evidence", {})
    body.update(changes)
    body["evidence"].update(evidence)
    return body


def withdraw_body(email: str = "ria@partner.org", **changes) -> dict:
    body = {
        "email": email,
        "action": "withdraw",
        "dm_type": "events",
        "evidence": {"source_system": "CRM", "timestamp": AGREED},
    }
    body.update(changes)
    return body


def test_it_records_a_grant_with_its_evidence(world, api_keys, api, dm_types):
    """I2: the grant carries channel, evidence, actor and the notice version shown."""
    events, _ = dm_types
    response = api(api_keys.consent_writer).post(URL, grant_body(), format="json")
    assert response.status_code == 201, response.content
    answer = response.json()
    recipient = Recipient.objects.get(code=answer["recipient"])
    assert answer["recipient_created"] is True
    assert (answer["action"], answer["dm_type"], answer["notice_version"]) == ("grant", "events", 2)
    assert answer["suppressed"] is False
    assert "email" not in answer
    event = ConsentEvent.objects.get(recipient=recipient)
    assert event.channel == Channel.API
    assert event.notice.version == 2
    assert str(event.ip_address) == "203.0.113.7" and event.user_agent == "Mozilla/5.0 (X11)"
    assert "Alumni portal" in event.evidence and "2026-11-30 09:15:00 UTC" in event.evidence
    assert "Yes, send me invitations" in event.evidence and "alumni.example.org" in event.evidence
    assert event.actor_label.startswith("API key ")
    assert recipient.category == Category.EXTERNAL
    assert list(sendable(unit=world.unit, dm_type=events, audience=Audience.EXTERNAL)) == [
        recipient
    ]


def test_it_records_the_older_notice_version_that_was_shown(world, api_keys, api, dm_types):
    response = api(api_keys.editor).post(
        URL, grant_body(evidence={"notice_version": 1}), format="json"
    )
    assert response.status_code == 201
    assert ConsentEvent.objects.get().notice.version == 1


def test_it_refuses_a_notice_version_that_never_existed(world, api_keys, api, dm_types):
    body = assert_problem(
        api(api_keys.editor).post(URL, grant_body(evidence={"notice_version": 9}), format="json"),
        400,
    )
    assert "no notice version 9" in body["detail"] and "current one is 2" in body["detail"]
    assert not ConsentEvent.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"evidence": {"form_text": "", "form_url": ""}}, "evidence.form_text"),
        ({"evidence": {"notice_version": None}}, "evidence.notice_version"),
        ({"dm_type": None}, "dm_type"),
        ({"evidence": {"source_system": ""}}, "evidence.source_system"),
        ({"evidence": {"timestamp": "2099-01-01T00:00:00Z"}}, "evidence.timestamp"),
        ({"email": "not an address"}, "email"),
        ({"dm_type": "fundraising"}, "dm_type"),
    ],
)
def test_it_refuses_a_grant_without_what_it_needs(world, api_keys, api, dm_types, change, field):
    """I2: no grant without evidence, a named DM type and the notice shown."""
    body = assert_problem(api(api_keys.editor).post(URL, grant_body(**change), format="json"), 400)
    assert field in [error["field"] for error in body["errors"]], body
    assert not ConsentEvent.objects.exists()


def test_it_fixes_the_audience_by_category(world, api_keys, api, dm_types):
    """I3: an address of the institution needs an internal category; an existing recipient's
    category is not changed by a consent call."""
    client = api(api_keys.editor)
    body = assert_problem(client.post(URL, grant_body("sol@staff.example.edu"), format="json"), 400)
    assert body["errors"][0]["field"] == "category"
    body = assert_problem(
        client.post(URL, grant_body("sol@staff.example.edu", category="external"), format="json"),
        400,
    )
    assert "institution's own domains" in body["detail"]
    assert (
        client.post(
            URL, grant_body("sol@staff.example.edu", category="staff"), format="json"
        ).status_code
        == 201
    )
    assert Recipient.objects.get(email="sol@staff.example.edu").audience == Audience.INTERNAL
    body = assert_problem(
        client.post(URL, grant_body("sol@staff.example.edu", category="alumni"), format="json"),
        400,
    )
    assert "category is staff" in body["detail"]


def test_a_withdrawal_wins_at_once(world, api_keys, api, dm_types):
    """I6: after the API's withdrawal the recipient is out of the DM type's audience."""
    events, news = dm_types
    recipient, _ = recipient_upsert(
        unit=world.unit, email="ria@partner.org", category=Category.EXTERNAL, by=None
    )
    grant(recipient=recipient, dm_types=[events, news], channel=Channel.ADMIN, evidence="Desk")
    response = api(api_keys.consent_writer).post(URL, withdraw_body(), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["notice_version"] is None
    assert not sendable(unit=world.unit, dm_type=events, audience=Audience.EXTERNAL).exists()
    assert sendable(unit=world.unit, dm_type=news, audience=Audience.EXTERNAL).exists()


def test_a_withdrawal_without_dm_type_withdraws_them_all(world, api_keys, api, dm_types):
    """I6: 'unsubscribe from all' withdraws every DM type of the unit."""
    events, news = dm_types
    recipient, _ = recipient_upsert(
        unit=world.unit, email="ria@partner.org", category=Category.EXTERNAL, by=None
    )
    grant(recipient=recipient, dm_types=[events, news], channel=Channel.ADMIN, evidence="Desk")
    response = api(api_keys.editor).post(URL, withdraw_body(dm_type=None), format="json")
    assert response.status_code == 201
    assert response.json()["dm_type"] is None
    for dm_type in (events, news):
        assert not sendable(unit=world.unit, dm_type=dm_type, audience=Audience.EXTERNAL).exists()


def test_a_grant_does_not_lift_a_suppression(world, api_keys, api, dm_types):
    events, _ = dm_types
    suppress(email="ria@partner.org", unit=world.unit, reason=SuppressionReason.COMPLAINT)
    response = api(api_keys.editor).post(URL, grant_body(), format="json")
    assert response.status_code == 201
    assert response.json()["suppressed"] is True
    assert not sendable(unit=world.unit, dm_type=events, audience=Audience.EXTERNAL).exists()


def test_an_erased_address_is_refused(world, api_keys, api, dm_types):
    """I9: an erased person is not taken back in by a consent call."""
    recipient, _ = recipient_upsert(
        unit=world.unit, email="ria@partner.org", category=Category.EXTERNAL, by=None
    )
    recipient_erase(recipient=recipient, by=None)
    body = assert_problem(api(api_keys.editor).post(URL, grant_body(), format="json"), 400)
    assert "erased" in body["detail"]
    assert Suppression.objects.filter(reason=SuppressionReason.ERASURE).count() == 1


def test_an_archived_dm_type_cannot_be_granted(world, api_keys, api, dm_types):
    from consent.services import dm_type_archive

    dm_type_archive(dm_type=dm_types[0], by=None)
    body = assert_problem(api(api_keys.editor).post(URL, grant_body(), format="json"), 400)
    assert "archived" in body["detail"]


@pytest.mark.parametrize("role", ["viewer"])
def test_a_viewer_key_cannot_record_consent(world, api_keys, api, dm_types, role):
    assert_problem(api(api_keys.viewer).post(URL, grant_body(), format="json"), 403)


def test_another_units_key_cannot_use_this_units_dm_types(world, api_keys, api, dm_types):
    """I8: the other unit's key records nothing here: the DM type is unknown in its unit."""
    body = assert_problem(api(api_keys.other_unit).post(URL, grant_body(), format="json"), 400)
    assert "no DM type 'events'" in body["detail"]
    assert not Recipient.objects.filter(unit=world.unit).exists()


def test_the_same_idempotency_key_and_body_answer_once(world, api_keys, api, dm_types):
    client = api(api_keys.consent_writer)
    first = client.post(URL, grant_body(), format="json", HTTP_IDEMPOTENCY_KEY="form-123")
    again = client.post(URL, grant_body(), format="json", HTTP_IDEMPOTENCY_KEY="form-123")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again["Idempotent-Replayed"] == "true"
    assert ConsentEvent.objects.count() == 1
    # The stored answer names the recipient by code only (I9: nothing personal kept).
    stored = IdempotentRequest.objects.get()
    assert "ria" not in str(stored.body) and "ria" not in stored.fingerprint


def test_the_same_idempotency_key_with_another_body_is_422(world, api_keys, api, dm_types):
    client = api(api_keys.consent_writer)
    client.post(URL, grant_body(), format="json", HTTP_IDEMPOTENCY_KEY="form-123")
    response = client.post(URL, withdraw_body(), format="json", HTTP_IDEMPOTENCY_KEY="form-123")
    body = assert_problem(response, 422)
    assert "different body" in body["detail"]
    assert ConsentEvent.objects.count() == 1


def test_a_refused_request_keeps_no_answer(world, api_keys, api, dm_types):
    """A request that failed may be retried, fixed, under the same key."""
    client = api(api_keys.consent_writer)
    bad = grant_body(evidence={"notice_version": 9})
    assert client.post(URL, bad, format="json", HTTP_IDEMPOTENCY_KEY="k1").status_code == 400
    assert (
        client.post(URL, grant_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1").status_code == 201
    )


def test_an_unusable_idempotency_key_is_400(world, api_keys, api, dm_types):
    response = api(api_keys.editor).post(
        URL, grant_body(), format="json", HTTP_IDEMPOTENCY_KEY="x" * 300
    )
    body = assert_problem(response, 400)
    assert body["errors"][0]["field"] == "Idempotency-Key"


def test_old_answers_are_purged_after_a_day(world, api_keys, api, dm_types):
    api(api_keys.editor).post(URL, grant_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert purge(now=timezone.now() + timedelta(hours=23)) == 0
    assert purge(now=timezone.now() + timedelta(hours=25)) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_twins_record_once(api_keys, api, dm_types):
    """Two requests with one Idempotency-Key at the same moment: one event, one answer."""
    answers = []
    barrier = threading.Barrier(2)

    def send():
        try:
            barrier.wait(timeout=10)
            response = api(api_keys.consent_writer).post(
                URL, grant_body(), format="json", HTTP_IDEMPOTENCY_KEY="twin"
            )
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [status for status, _ in answers] == [201, 201]
    assert answers[0][1] == answers[1][1]
    assert ConsentEvent.objects.count() == 1


def test_the_timestamp_is_kept_in_utc(world, api_keys, api, dm_types):
    body = grant_body(evidence={"timestamp": "2026-11-30T17:15:00+08:00"})
    assert api(api_keys.editor).post(URL, body, format="json").status_code == 201
    assert "2026-11-30 09:15:00 UTC" in ConsentEvent.objects.get().evidence
