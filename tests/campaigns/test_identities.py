"""From addresses a unit requests on its own pages: usable at once when operations sign for the
domain and its DNS is right, otherwise pending until operations approve them in Django admin."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from campaigns.models import IdentityStatus, SenderIdentity
from campaigns.services.authoring import identity_request
from mlm.mail import sender_checks
from mlm.models import AuditEntry
from mlm.services import sending_domain_create, sending_domain_dns_record
from tests.campaigns import factories
from tests.mlm.test_sender_checks import StubDNS, txt

DOMAIN = "engineering.example.edu"
RELAY = "ip4:192.0.2.25"
BOUNCE_HOST = "mx.engineering.example.edu"


def url(name, world, *args):
    return reverse(name, args=[world.unit.slug, *args])


@pytest.fixture
def sending_domain(db, settings):
    settings.MLM_SPF_MECHANISMS = [RELAY]
    settings.MLM_RETURN_PATH_MX = BOUNCE_HOST
    return sending_domain_create(domain=DOMAIN, selector="mlm1", by=None)


@pytest.fixture
def published(sending_domain, monkeypatch) -> StubDNS:
    """DNS (the outside world) answers with everything operations should have published."""
    name, value = sending_domain_dns_record(sending_domain)
    dns = StubDNS(
        {
            (DOMAIN, "TXT"): [txt(f"v=spf1 mx {RELAY} -all")],
            (DOMAIN, "MX"): [f"10 {BOUNCE_HOST}."],
            (name, "TXT"): [txt(value)],
            (f"_dmarc.{DOMAIN}", "TXT"): [txt("v=DMARC1; p=quarantine")],
        }
    )
    monkeypatch.setattr(sender_checks, "default_resolver", lambda: dns)
    return dns


def request_form(email: str = f"news@{DOMAIN}") -> dict:
    return {"name": "Faculty of Engineering", "email": email, "reply_to": "office@example.edu"}


def test_it_makes_an_identity_usable_at_once_when_its_domain_is_ready(world, client_for, published):
    client = client_for(world.alice)
    assert client.get(url("identity_request", world)).status_code == 200
    response = client.post(url("identity_request", world), request_form())
    assert response.status_code == 302
    assert response["Location"] == url("campaign_settings", world)
    identity = SenderIdentity.objects.for_unit(world.unit).get(email=f"news@{DOMAIN}")
    assert identity.status == IdentityStatus.APPROVED and identity.pending_reason == ""
    assert identity.reply_to == "office@example.edu"
    assert (
        AuditEntry.objects.for_unit(world.unit)
        .filter(verb="identity.request", object_id=str(identity.code), data__status="approved")
        .exists()
    )
    settings_page = client.get(url("campaign_settings", world)).content.decode()
    assert f"news@{DOMAIN}" in settings_page and "Usable" in settings_page
    form = client.get(url("campaign_create", world)).content.decode()
    assert f"news@{DOMAIN}" in form and "from-address-hint" not in form


def test_it_keeps_an_identity_pending_until_operations_approve_it(
    world, client_for, published, admin_client
):
    published.set(f"_dmarc.{DOMAIN}", "TXT", None)  # DMARC not published yet
    client = client_for(world.alice)
    client.post(url("identity_request", world), request_form())
    identity = SenderIdentity.objects.for_unit(world.unit).get(email=f"news@{DOMAIN}")
    assert identity.status == IdentityStatus.PENDING
    assert "DMARC" in identity.pending_reason
    form = client.get(url("campaign_create", world)).content.decode()
    assert "Waiting for operations to approve" in form and f"news@{DOMAIN}" in form
    assert f'value="{identity.pk}"' not in form  # not offered as From

    response = admin_client.post(
        reverse("admin:campaigns_senderidentity_changelist"),
        {"action": "approve", "_selected_action": [identity.pk]},
    )
    assert response.status_code == 302
    identity.refresh_from_db()
    assert identity.status == IdentityStatus.APPROVED
    assert AuditEntry.objects.for_unit(world.unit).filter(verb="identity.approve").exists()
    form = client.get(url("campaign_create", world)).content.decode()
    assert f'value="{identity.pk}"' in form and "from-address-hint" not in form


def test_it_keeps_an_identity_pending_when_operations_sign_nothing_for_its_domain(world):
    identity = identity_request(
        unit=world.unit, name="Alumni", email="hello@elsewhere.example.org", by=world.alice
    )
    assert identity.status == IdentityStatus.PENDING
    assert "no active DKIM key for elsewhere.example.org" in identity.pending_reason


def test_a_pending_identity_cannot_send_a_campaign(world):
    identity = identity_request(
        unit=world.unit, name="Alumni", email="hello@elsewhere.example.org", by=world.alice
    )
    with pytest.raises(ValidationError, match="waiting for operations"):
        factories.campaign(world, identity=identity)


def test_only_the_unit_s_administrators_request_identities(world, client_for, published):
    """I8: another unit's administrator gets 404; the unit's editor is refused (403)."""
    assert client_for(world.bob).get(url("identity_request", world)).status_code == 403
    charlie = client_for(world.charlie)
    assert charlie.get(url("identity_request", world)).status_code == 404
    assert charlie.post(url("identity_request", world), request_form()).status_code == 404
    assert not SenderIdentity.objects.filter(email=f"news@{DOMAIN}").exists()


def test_it_refuses_an_address_the_unit_already_has(world, published):
    identity_request(unit=world.unit, name="News", email=f"news@{DOMAIN}", by=world.alice)
    with pytest.raises(ValidationError, match="already has"):
        identity_request(unit=world.unit, name="News", email=f"NEWS@{DOMAIN}", by=world.alice)


def test_the_campaign_form_says_what_to_do_without_a_from_address(world, client_for):
    admin_page = client_for(world.alice).get(url("campaign_create", world)).content.decode()
    assert "from-address-hint" in admin_page
    assert url("identity_request", world) in admin_page
    editor_page = client_for(world.bob).get(url("campaign_create", world)).content.decode()
    assert "Ask an administrator" in editor_page


def test_the_dashboard_lists_what_the_unit_lacks_with_links_for_those_who_may(world, client_for):
    dashboard = reverse("dashboard", args=[world.unit.slug])
    admin_page = client_for(world.alice).get(dashboard).content.decode()
    assert "Getting started" in admin_page
    assert url("identity_request", world) in admin_page
    viewer_page = client_for(world.vic).get(dashboard).content.decode()
    assert "Getting started" in viewer_page and "Request a From address" in viewer_page
    assert url("identity_request", world) not in viewer_page
    assert url("campaign_create", world) not in viewer_page
