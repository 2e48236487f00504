"""Suppressions through the API: listed and looked up by viewers, added by editors; no hash in
any answer, and an erased person's suppression shows as kept as a hash (I9)."""

from __future__ import annotations

import pytest

from consent.models import Suppression, SuppressionReason
from consent.services import suppress, suppression_add
from recipients.addresses import address_hash
from recipients.rights import recipient_erase
from recipients.services import recipient_upsert
from tests.api.test_framework import assert_problem


def no_hash_in(response) -> None:
    """I9: neither the field nor any stored hash appears in the answer."""
    text = response.content.decode()
    assert "email_hash" not in text
    for digest in Suppression.objects.values_list("email_hash", flat=True):
        assert digest not in text


def lookup(client, address: str):
    """The look-up is a POST: the address stays out of URLs and access logs."""
    return client.post("/api/v1/suppressions/lookup/", {"address": address}, format="json")


def test_a_viewer_lists_the_units_own_suppressions(world, api_keys, api):
    """I8: neither the other unit's nor the global ones (other units' addresses) are listed."""
    own = suppress(email="lee@partner.org", unit=world.unit, reason=SuppressionReason.MANUAL)
    suppress(email="kai@partner.org", unit=world.other_unit, reason=SuppressionReason.MANUAL)
    suppress(email="zoe@partner.org", unit=None, reason=SuppressionReason.HARD_BOUNCE)
    response = api(api_keys.viewer).get("/api/v1/suppressions/")
    assert response.status_code == 200
    assert response.json()["results"] == [
        {
            "code": str(own.code),
            "address": "lee@partner.org",
            "kept_as_hash": False,
            "scope": "unit",
            "reason": "manual",
            "note": "",
            "created_at": response.json()["results"][0]["created_at"],
        }
    ]
    no_hash_in(response)
    assert api(api_keys.viewer).get(f"/api/v1/suppressions/{own.code}/").status_code == 200


def test_the_look_up_answers_both_scopes_and_an_erased_address_without_its_hash(
    world, api_keys, api
):
    """I9: the erasure suppression shows as kept as a hash, with neither address nor hash."""
    recipient, _ = recipient_upsert(
        unit=world.other_unit, email="lee@partner.org", category="external", by=None
    )
    recipient_erase(recipient=recipient, by=None)
    suppression_add(unit=world.unit, email="Lee@partner.org", reason="opt_out", by=None)
    response = lookup(api(api_keys.viewer), "LEE@Partner.org")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["address"] == "LEE@partner.org"
    assert body["suppressed"] is True
    assert [
        (s["scope"], s["reason"], s["address"], s["kept_as_hash"]) for s in body["suppressions"]
    ] == [
        ("unit", "opt_out", None, True),
        ("global", "erasure", None, True),
    ]
    assert body["suppressions"][1]["note"] is None
    no_hash_in(response)


def test_the_look_up_of_an_unsuppressed_address(world, api_keys, api):
    response = lookup(api(api_keys.viewer), "kai@partner.org")
    assert response.json() == {
        "address": "kai@partner.org",
        "suppressed": False,
        "suppressions": [],
    }


@pytest.mark.parametrize("payload", [{}, {"address": ""}, {"address": "not-an-address"}])
def test_the_look_up_explains_a_bad_address(world, api_keys, api, payload):
    response = api(api_keys.viewer).post("/api/v1/suppressions/lookup/", payload, format="json")
    body = assert_problem(response, 400)
    assert body["errors"][0]["field"] == "address"


def test_a_consent_writer_key_does_not_look_up(world, api_keys, api):
    assert_problem(lookup(api(api_keys.consent_writer), "kai@partner.org"), 403)


def test_an_editor_adds_a_suppression_once(world, api_keys, api):
    client = api(api_keys.editor)
    payload = {"address": "Lee@Partner.org", "reason": "opt_out", "note": "Asked the CRM"}
    first = client.post("/api/v1/suppressions/", payload, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["address"] == "Lee@partner.org"
    assert (first.json()["scope"], first.json()["reason"]) == ("unit", "opt_out")
    again = client.post("/api/v1/suppressions/", {"address": "lee@partner.org"}, format="json")
    assert again.status_code == 200
    assert again.json()["code"] == first.json()["code"]
    no_hash_in(again)
    stored = Suppression.objects.get()
    assert (stored.unit, stored.email_hash) == (world.unit, address_hash("lee@partner.org"))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"address": "nope"}, ""),
        ({"address": "lee@partner.org", "reason": "erasure"}, "reason"),
        ({}, "address"),
    ],
)
def test_a_bad_suppression_is_a_clear_400(world, api_keys, api, payload, field):
    response = api(api_keys.editor).post("/api/v1/suppressions/", payload, format="json")
    body = assert_problem(response, 400)
    assert body["errors"][0]["field"] == field
    assert not Suppression.objects.exists()


@pytest.mark.parametrize("role", ["viewer", "consent_writer"])
def test_only_an_editor_adds(world, api_keys, api, role):
    response = api(getattr(api_keys, role)).post(
        "/api/v1/suppressions/", {"address": "lee@partner.org"}, format="json"
    )
    assert_problem(response, 403)
    assert not Suppression.objects.exists()


def test_another_units_suppression_is_404(world, api_keys, api):
    """I8."""
    theirs = suppress(email="lee@partner.org", unit=world.other_unit, reason="manual")
    assert_problem(api(api_keys.editor).get(f"/api/v1/suppressions/{theirs.code}/"), 404)


@pytest.mark.parametrize("which", ["revoked", "expired"])
def test_revoked_or_expired_keys_get_401(world, api_keys, api, which):
    client = api(getattr(api_keys, which))
    assert_problem(client.get("/api/v1/suppressions/"), 401)
    assert_problem(lookup(client, "a@b.org"), 401)
    response = client.post("/api/v1/suppressions/", {"address": "a@b.org"}, format="json")
    assert_problem(response, 401)
    assert not Suppression.objects.exists()
