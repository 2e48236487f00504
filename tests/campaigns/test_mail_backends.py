"""Mail backends chosen per unit: an ESP through anymail (metadata out, the ESP's message id
back, the ESP signs) or our own SMTP path (our DKIM signature), the unit's choice offered from
settings.MLM_MAIL_BACKENDS only. anymail's test backend stands in for the ESP's HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import dkim
import pytest
import redis
from django.conf import settings
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from campaigns.sending.batches import batch_send
from campaigns.sending.start import campaign_start
from campaigns.sending.transport import backend
from campaigns.services.settings import unit_settings_update
from mlm.mail.throttle import backend_key
from mlm.models import AuditEntry
from mlm.services import sending_domain_create
from tests.campaigns import factories
from tests.mlm.test_dkim import dns_for
from tests.system.smtp_sink import SMTPSink

D = DeliveryStatus
ESP = "anymail.backends.test.EmailBackend"
SMTP = "django.core.mail.backends.smtp.EmailBackend"


@pytest.fixture
def backends(settings) -> dict[str, str]:
    settings.MLM_MAIL_BACKENDS = {"esp": ESP, "smtp": SMTP}
    return settings.MLM_MAIL_BACKENDS


@pytest.fixture
def sink(settings, tmp_path) -> Iterator[SMTPSink]:
    found = SMTPSink(directory=tmp_path / "sink").start()
    settings.EMAIL_HOST, settings.EMAIL_PORT = found.host, found.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    try:
        yield found
    finally:
        found.stop()


def _choose(unit, user, mail_backend: str) -> None:
    unit_settings_update(
        unit=unit,
        by=user,
        allow_self_approval=False,
        frequency_cap_mails=0,
        frequency_cap_days=7,
        banned_words="",
        mail_backend=mail_backend,
    )


def _started(world, unit, count: int = 2) -> Campaign:
    news = factories.dm_type(unit)
    target = factories.recipient_list(unit, name="Batch")
    for i in range(count):
        factories.member(target, f"p{i}.{unit.slug}@example.com", granted=news)
    by = world.bob if unit == world.unit else world.charlie
    campaign = factories.campaign(world, unit=unit, lists=[target], by=by)
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now() - timedelta(seconds=1)
    )
    campaign.refresh_from_db()
    campaign_start(campaign=campaign, by=None)
    return campaign


def test_it_hands_the_units_mail_to_its_esp_with_metadata_and_keeps_the_esp_id(world, backends):
    """The unit on an ESP: each message carries anymail metadata (delivery, campaign, unit) for
    the ESP's tracking events, and the ESP's message id lands on the delivery."""
    _choose(world.unit, world.alice, "esp")
    campaign = _started(world, world.unit, 2)
    result = batch_send(campaign_id=campaign.pk)
    assert result.sent == 2
    assert len(mail.outbox) == 2
    rows = {row.pk: row for row in Delivery.objects.filter(campaign=campaign)}
    for message in mail.outbox:
        metadata = message.anymail_test_params["metadata"]
        row = rows[int(metadata["delivery"])]
        assert metadata == {
            "delivery": str(row.pk),
            "campaign": str(campaign.code),
            "unit": "engineering",
        }
        assert row.status == D.SENT
        assert row.provider_message_id == str(message.anymail_status.message_id)
    assert {row.provider_message_id for row in rows.values()} == {"0", "1"}


def test_the_esp_gets_the_list_headers_and_signs_itself(world, backends):
    """I5 on an ESP's path: List-Unsubscribe and List-Unsubscribe-Post go to the ESP, which
    builds the MIME and signs; our key does not sign there (its signature would not travel)."""
    sending_domain_create(domain="engineering.example.edu", selector="mlm1", by=None)
    _choose(world.unit, world.alice, "esp")
    campaign = _started(world, world.unit, 1)
    batch_send(campaign_id=campaign.pk)
    (message,) = mail.outbox
    headers = message.anymail_test_params["extra_headers"]
    assert headers["List-Unsubscribe"].startswith("<http://testserver/")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"DKIM-Signature" not in message.built.raw


def test_a_unit_on_smtp_still_signs_while_another_uses_an_esp(world, backends, sink):
    """I5 on our own path: the unit on SMTP gets our DKIM signature (verified against the
    published record) and no provider id; the other unit's mail goes to its ESP meanwhile."""
    sending_domain = sending_domain_create(
        domain="engineering.example.edu", selector="mlm1", by=None
    )
    _choose(world.unit, world.alice, "smtp")
    _choose(world.other_unit, world.charlie, "esp")
    ours = _started(world, world.unit, 1)
    theirs = _started(world, world.other_unit, 1)
    assert batch_send(campaign_id=ours.pk).sent == 1
    assert batch_send(campaign_id=theirs.pk).sent == 1
    (received,) = sink.wait_for(1)
    assert received.raw.startswith(b"DKIM-Signature:")
    assert dkim.verify(received.raw, dnsfunc=dns_for(sending_domain))
    assert Delivery.objects.get(campaign=ours).provider_message_id == ""
    (esp_message,) = mail.outbox
    assert esp_message.anymail_test_params["metadata"]["unit"] == "alumni"
    assert Delivery.objects.get(campaign=theirs).provider_message_id == "0"


def test_the_default_backend_is_used_when_the_unit_chose_none(world, backends):
    """No choice: EMAIL_BACKEND (locmem in tests), with no provider id."""
    campaign = _started(world, world.unit, 1)
    assert backend(world.unit) == settings.EMAIL_BACKEND
    assert batch_send(campaign_id=campaign.pk).sent == 1
    assert not hasattr(mail.outbox[0], "anymail_test_params")
    assert Delivery.objects.get(campaign=campaign).provider_message_id == ""


@pytest.mark.parametrize(
    ("offered", "reply"),
    [
        ({"smtp": SMTP}, "'esp' is not in MLM_MAIL_BACKENDS"),
        ({"esp": "anymail.backends.mailgun.EmailBackend"}, "MAILGUN_API_KEY"),
    ],
    ids=["no longer offered", "ESP without its API key"],
)
def test_a_backend_that_cannot_send_defers_the_batch_without_an_attempt(
    world, backends, settings, offered, reply
):
    """I7: when the unit's backend is gone from MLM_MAIL_BACKENDS, or cannot be made (an ESP
    without its key), nothing is handed over, nor sent another way: the batch waits, no attempt
    counted."""
    _choose(world.unit, world.alice, "esp")
    campaign = _started(world, world.unit, 2)
    settings.MLM_MAIL_BACKENDS = offered
    settings.ANYMAIL = {}
    result = batch_send(campaign_id=campaign.pk)
    assert (result.sent, result.deferred) == (0, 2)
    assert mail.outbox == []
    rows = Delivery.objects.filter(campaign=campaign)
    assert {(r.status, r.attempts) for r in rows} == {(D.DEFERRED, 0)}
    assert all(reply in r.reply for r in rows)


def test_the_backend_rate_is_counted_per_backend(world, backends, settings):
    """The per-backend throttle takes its tokens from the bucket of the unit's backend."""
    settings.MLM_DISPATCH_BACKEND_RATE = 2
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(backend_key(ESP), backend_key(settings.EMAIL_BACKEND))
    _choose(world.unit, world.alice, "esp")
    campaign = _started(world, world.unit, 2)
    assert batch_send(campaign_id=campaign.pk).sent == 2
    assert float(client.hget(backend_key(ESP), "tokens")) < 1
    assert not client.exists(backend_key(settings.EMAIL_BACKEND))


def test_the_service_refuses_a_backend_operations_did_not_offer(world, backends):
    with pytest.raises(ValidationError):
        _choose(world.unit, world.alice, "mailgun")
    _choose(world.unit, world.alice, "esp")
    assert backend(world.unit) == ESP
    entry = AuditEntry.objects.filter(verb="campaign_settings.change").latest("id")
    assert entry.data["mail_backend"] == "esp"


def test_the_settings_page_offers_the_configured_backends_only(world, backends, client_for):
    client = client_for(world.alice)
    url = reverse("campaign_settings", args=[world.unit.slug])
    response = client.get(url)
    page = response.content.decode()
    assert '<option value="esp">esp</option>' in page
    assert '<option value="smtp">smtp</option>' in page
    # The other settings as the page shows them (an unchecked box is not posted).
    shown = {f.name: f.value() for f in response.context["form"]}
    data = {
        name: value for name, value in shown.items() if value is not None and value is not False
    }
    refused = client.post(url, {**data, "mail_backend": "mailgun"})
    assert refused.status_code == 200
    assert "not one of the available choices" in refused.content.decode()
    assert backend(world.unit) != ESP
    saved = client.post(url, {**data, "mail_backend": "esp"})
    assert saved.status_code == 302, saved.context["form"].errors
    assert backend(world.unit) == ESP


def test_the_settings_page_hides_the_choice_when_there_is_none(world, client_for, settings):
    settings.MLM_MAIL_BACKENDS = {}
    page = client_for(world.alice).get(reverse("campaign_settings", args=[world.unit.slug]))
    assert 'name="mail_backend"' not in page.content.decode()


def test_the_system_check_names_a_backend_that_cannot_be_loaded(settings):
    from mlm.checks import check_mail_backends_import

    settings.MLM_MAIL_BACKENDS = {"esp": ESP, "relay2": "nowhere.backends.Relay"}
    (error,) = check_mail_backends_import(None)
    assert error.id == "mlm.E002" and "relay2 (nowhere.backends.Relay)" in error.msg


def test_the_esp_is_told_not_to_track_unless_the_unit_turned_tracking_on(world, backends):
    """Open and click tracking is off by default, said explicitly to the ESP (its account
    default cannot turn it on); a unit that turns it on has its ESP track."""
    from campaigns.models import UnitCampaignSettings

    _choose(world.unit, world.alice, "esp")
    batch_send(campaign_id=_started(world, world.unit, 1).pk)
    [untracked] = mail.outbox
    assert untracked.anymail_test_params["track_opens"] is False
    assert untracked.anymail_test_params["track_clicks"] is False

    UnitCampaignSettings.objects.filter(unit=world.unit).update(tracking_enabled=True)
    mail.outbox.clear()
    later = _started(world, world.unit, 1)
    batch_send(campaign_id=later.pk)
    [tracked] = mail.outbox
    assert tracked.anymail_test_params["track_opens"] is True
    assert tracked.anymail_test_params["track_clicks"] is True
