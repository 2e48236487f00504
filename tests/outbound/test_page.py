"""The endpoints page: administrators only, HTTPS to public addresses, secrets shown once,
every change audited and POST-only."""

from __future__ import annotations

import pytest

from mlm.models import AuditEntry
from outbound.models import Endpoint, Event, EventStatus
from outbound.services import endpoint_pause

PAGE = "/units/engineering/endpoints/"
ADD = {"url": "http://127.0.0.1:9/crm", "event_types": ["consent.granted", "recipient.erased"]}


def test_an_admin_adds_an_endpoint_and_sees_its_secret_once(world, client_for):
    client = client_for(world.alice)
    response = client.post(PAGE, {**ADD, "description": "Admissions CRM"})
    assert response.status_code == 200
    endpoint = Endpoint.objects.get()
    assert endpoint.event_types == ["consent.granted", "recipient.erased"]
    shown = response.context["secret"]
    assert shown.startswith("whsec_") and shown in response.content.decode()
    assert shown not in endpoint.secret_encrypted  # encrypted at rest
    assert shown not in client.get(PAGE).content.decode()  # never again
    assert AuditEntry.objects.filter(verb="endpoint.create", actor=world.alice).exists()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://crm.example.org/hook", "must use https"),
        ("https://10.1.2.3/hook", "private, loopback or reserved"),
        ("https://127.0.0.1/hook", "private, loopback or reserved"),
        ("https://[::1]/hook", "private, loopback or reserved"),
        ("ftp://crm.example.org/", "Enter an https:// URL."),
    ],
)
def test_it_refuses_plain_http_and_private_addresses(world, client_for, settings, url, reason):
    settings.MLM_OUTBOUND_ALLOW_PRIVATE = False
    response = client_for(world.alice).post(PAGE, {**ADD, "url": url})
    assert response.status_code == 200
    assert reason in response.content.decode()
    assert not Endpoint.objects.exists()


def test_it_needs_the_admin_role_and_hides_other_units(world, client_for):
    """I8: an editor is refused; a member of another unit gets 404."""
    assert client_for(world.bob).get(PAGE).status_code == 403
    assert client_for(world.charlie).get(PAGE).status_code == 404


def test_rotate_pause_resume_and_delete_are_post_only_and_audited(world, client_for):
    client = client_for(world.alice)
    client.post(PAGE, ADD)
    endpoint = Endpoint.objects.get()
    base = f"{PAGE}{endpoint.code}"
    for action in ("rotate", "pause", "resume", "delete"):
        assert client.get(f"{base}/{action}/").status_code == 405
    rotated = client.post(f"{base}/rotate/")
    assert rotated.context["secret"].startswith("whsec_")
    client.post(f"{base}/pause/")
    assert not Endpoint.objects.get().is_active
    client.post(f"{base}/resume/")
    assert Endpoint.objects.get().is_active
    client.post(f"{base}/delete/")
    assert not Endpoint.objects.exists()
    verbs = set(AuditEntry.objects.filter(actor=world.alice).values_list("verb", flat=True))
    assert {"endpoint.rotate", "endpoint.pause", "endpoint.resume", "endpoint.delete"} <= verbs


def test_a_paused_endpoint_has_a_banner_and_failed_events_are_listed(world, client_for):
    client = client_for(world.alice)
    client.post(PAGE, ADD)
    endpoint = Endpoint.objects.get()
    endpoint_pause(endpoint=endpoint, reason="Every delivery failed for 24 hours.", by=None)
    from django.utils import timezone

    Event.objects.create(
        code="evt_failed1",
        unit=world.unit,
        endpoint=endpoint,
        type="consent.granted",
        recipient_key="r",
        payload={},
        status=EventStatus.FAILED,
        attempts=30,
        last_error="HTTP 503",
        next_attempt_at=timezone.now(),
        created_at=timezone.now(),
    )
    page = client.get(PAGE).content.decode()
    assert "is paused" in page and "Every delivery failed for 24 hours." in page
    assert "Failed events" in page and "evt_failed1" in page and "HTTP 503" in page
    assert f"{endpoint.code}/resume/" in page


def test_operations_see_endpoints_and_events_in_admin_without_secrets(world, client, settings):
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_superuser("ops", "ops@staff.example.edu", "pw")
    client.force_login(staff)
    from outbound.services import endpoint_create

    settings.MLM_OUTBOUND_ALLOW_PRIVATE = True
    endpoint, secret = endpoint_create(
        unit=world.unit, url="http://127.0.0.1:9/crm", event_types=["consent.granted"], by=None
    )
    listing = client.get("/admin/outbound/endpoint/")
    detail = client.get(f"/admin/outbound/endpoint/{endpoint.pk}/change/")
    events = client.get("/admin/outbound/event/")
    assert (listing.status_code, detail.status_code, events.status_code) == (200, 200, 200)
    assert secret not in detail.content.decode()
    assert endpoint.secret_encrypted not in detail.content.decode()
