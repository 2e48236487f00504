"""The API's frame: keys, roles, problem-details errors, the rate limit, the schema and docs."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from api.models import ApiKey, ApiRole
from api.services import (
    LAST_USED_RESOLUTION,
    api_key_create,
    api_key_for_secret,
    api_key_revoke,
)
from mlm.models import AuditEntry, SenderUnit
from tests.conftest import backend_pid

PROBLEM = "application/problem+json"


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"]
    return body


def test_it_answers_the_key_of_the_request(world, api_keys, api):
    response = api(api_keys.consent_writer).get("/api/v1/key/")
    assert response.status_code == 200
    assert response.json()["unit"] == "engineering"
    assert response.json()["role"] == "consent-writer"


@pytest.mark.parametrize("which", ["revoked", "expired", None, "mlm_0000_unknown"])
def test_it_refuses_a_missing_revoked_expired_or_unknown_key_with_401(world, api_keys, api, which):
    secret = getattr(api_keys, which, which) if which else None
    response = api(secret).get("/api/v1/key/")
    body = assert_problem(response, 401)
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert "key" in body["detail"].lower() or "credentials" in body["detail"].lower()


def test_it_explains_a_malformed_authorization_header(world, api):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer two words")
    body = assert_problem(client.get("/api/v1/key/"), 401)
    assert "Authorization: Bearer <key>" in body["detail"]


def test_the_secret_is_stored_only_as_a_hash(world):
    key, secret = api_key_create(
        unit=world.unit, name="CRM", role=ApiRole.EDITOR, expires_at=None, by=world.alice
    )
    assert secret.startswith(f"mlm_{key.prefix}_")
    stored = ApiKey.objects.filter(pk=key.pk).values()[0]
    assert secret not in str(stored)
    assert len(secret) > 40


def test_last_use_is_written_at_most_once_a_minute(world):
    key, secret = api_key_create(
        unit=world.unit, name="CRM", role=ApiRole.EDITOR, expires_at=None, by=None
    )
    first = timezone.now()
    api_key_for_secret(secret, now=first)
    api_key_for_secret(secret, now=first + timedelta(seconds=30))
    key.refresh_from_db()
    assert key.last_used_at == first
    later = first + LAST_USED_RESOLUTION + timedelta(seconds=1)
    api_key_for_secret(secret, now=later)
    key.refresh_from_db()
    assert key.last_used_at == later


def test_an_expired_key_stops_working_at_its_expiry(world):
    key, secret = api_key_create(
        unit=world.unit,
        name="Form",
        role=ApiRole.EDITOR,
        expires_at=timezone.now() + timedelta(hours=1),
        by=None,
    )
    assert api_key_for_secret(secret) == key
    assert api_key_for_secret(secret, now=key.expires_at) is None


def test_unknown_api_urls_are_problems_not_html(world, api_keys, api):
    body = assert_problem(api(api_keys.editor).get("/api/v1/no-such-thing/"), 404)
    assert "/api/docs/" in body["detail"]


def test_a_url_without_its_slash_says_so(world, api_keys, api):
    body = assert_problem(api(api_keys.editor).get("/api/v1/key"), 404)
    assert "end with a slash" in body["detail"]


def test_a_wrong_method_is_405_with_allow(world, api_keys, api):
    response = api(api_keys.editor).delete("/api/v1/key/")
    assert_problem(response, 405)
    assert "GET" in response["Allow"]


def test_it_answers_429_with_retry_after_past_the_key_rate(world, api_keys, api, settings):
    settings.MLM_API_RATE = "3/m"
    client = api(api_keys.viewer)
    for _ in range(3):
        assert client.get("/api/v1/key/").status_code == 200
    response = client.get("/api/v1/key/")
    assert_problem(response, 429)
    assert 1 <= int(response["Retry-After"]) <= 60
    # Counted per key: another key of the same unit is not slowed down.
    assert api(api_keys.editor).get("/api/v1/key/").status_code == 200


def test_the_schema_and_its_docs_are_served_without_a_cdn(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert schema.json()["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    page = docs.content.decode()
    assert "cdn" not in page.lower() and "https://" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    # Swagger UI adds <style> elements: inline styles on this page only, never inline scripts.
    policy = dict(part.strip().split(" ", 1) for part in docs["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'"
    assert "'unsafe-inline'" in policy["style-src"]
    assert "'unsafe-inline'" not in client.get("/api/schema/")["Content-Security-Policy"]


def test_the_key_page_makes_a_key_once_and_revokes_it(world, client_for):
    """Creating and revoking are audited; the secret is in the creating response only."""
    client = client_for(world.alice)
    page = client.post(
        "/units/engineering/api-keys/", {"name": "Alumni portal", "role": "consent-writer"}
    )
    assert page.status_code == 200
    assert page["Cache-Control"] == "no-store"
    key = ApiKey.objects.get(name="Alumni portal")
    secret = page.context["secret"]
    assert secret in page.content.decode()
    assert api_key_for_secret(secret) == key
    assert secret not in client.get("/units/engineering/api-keys/").content.decode()
    response = client.post(f"/units/engineering/api-keys/{key.code}/revoke/")
    assert response.status_code == 302
    assert api_key_for_secret(secret) is None
    verbs = list(
        AuditEntry.objects.filter(object_id=str(key.code)).values_list("verb", "actor_label")
    )
    assert sorted(verbs) == [("api_key.create", "alice"), ("api_key.revoke", "alice")]


def test_only_unit_admins_manage_keys(world, client_for):
    assert client_for(world.bob).get("/units/engineering/api-keys/").status_code == 403


def test_the_settings_page_links_to_the_keys(world, client_for):
    page = client_for(world.alice).get("/units/engineering/campaigns/settings/")
    assert b"/units/engineering/api-keys/" in page.content


def test_operations_revoke_a_key_in_admin(world, admin_client):
    """The admin action goes through the service: audited, and the key stops working."""
    key, secret = api_key_create(
        unit=world.unit, name="Leaked", role=ApiRole.EDITOR, expires_at=None, by=None
    )
    page = admin_client.get("/admin/api/apikey/")
    assert page.status_code == 200 and b"Leaked" in page.content
    assert secret.encode() not in admin_client.get(f"/admin/api/apikey/{key.pk}/change/").content
    admin_client.post(
        "/admin/api/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True
    )
    assert api_key_for_secret(secret) is None
    assert AuditEntry.objects.filter(verb="api_key.revoke", object_id=str(key.code)).exists()


@pytest.fixture
def crm_key(world) -> tuple[ApiKey, str]:
    return api_key_create(
        unit=world.unit, name="CRM", role=ApiRole.EDITOR, expires_at=None, by=None
    )


@pytest.mark.django_db(transaction=True)
def test_the_key_lookup_survives_a_connection_that_died_between_requests(
    world, crm_key, new_request_on_a_dead_connection, caplog
):
    """The key is read without Django's SELECT 1 health check: on a connection the server
    ended since the last request, the read fails and runs once more on a new one."""
    key, secret = crm_key
    logging.getLogger("mlm").addHandler(caplog.handler)  # the mlm logger does not propagate
    try:
        found = api_key_for_secret(secret)
    finally:
        logging.getLogger("mlm").removeHandler(caplog.handler)
    assert found == key
    assert found.unit == world.unit
    assert backend_pid() != new_request_on_a_dead_connection
    # The read itself met the dead session (no health check replaced it first).
    assert "the database connection was lost" in caplog.text


def test_a_revoked_key_stops_working_at_once(world, api_keys, api):
    key, secret = api_key_create(
        unit=world.unit, name="Portal", role=ApiRole.EDITOR, expires_at=None, by=None
    )
    assert api(secret).get("/api/v1/key/").status_code == 200
    api_key_revoke(key=key, by=None)
    assert_problem(api(secret).get("/api/v1/key/"), 401)


def test_the_key_statement_reads_what_the_orm_reads(world, crm_key):
    """The key lookup's own SELECT builds the key and its unit from their columns; every
    field must come out as Django's select_related would give it (a field needing a
    conversion from the database would differ here)."""
    key, secret = crm_key
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() + timedelta(days=3))
    found = api_key_for_secret(secret)
    expected = ApiKey.objects.select_related("unit").get(pk=key.pk)
    for model, mine, theirs in ((ApiKey, found, expected), (SenderUnit, found.unit, expected.unit)):
        for field in model._meta.concrete_fields:
            name = field.attname
            if name == "last_used_at":
                continue  # the lookup notes this use
            assert getattr(mine, name) == getattr(theirs, name), name
            assert type(getattr(mine, name)) is type(getattr(theirs, name)), name
    assert not found._state.adding and not found.unit._state.adding
