"""Tracking webhooks: each provider's documented payload, posted through the test client to the
real anymail URL, reaches the right delivery and has its effect; unauthenticated calls are
refused and logged; a batch is recorded in one INSERT; a replay changes nothing (I4, I6)."""

from __future__ import annotations

import logging

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import BounceKind, DeliveryEvent, EventKind
from consent.models import Action, Channel, ConsentEvent, Suppression, SuppressionReason
from consent.selectors import sendable
from recipients.models import Audience, RecipientStatus
from tests.campaigns import factories
from tests.campaigns.esp_payloads import (
    MAILGUN_SIGNING_KEY,
    SECRET,
    basic_auth,
    mailgun_failed,
    mailgun_signed,
    post_mailgun,
    post_postmark,
    post_sendgrid,
    post_ses,
    postmark_bounce,
    postmark_delivery,
    postmark_spam_complaint,
    sendgrid_event,
    ses_bounce,
    ses_complaint,
    ses_delivery,
    ses_notification,
)
from tests.campaigns.sending import message_id, provider_id, sending_campaign, sent_to

PEOPLE = ("ann", "ben", "cat", "dan")

# anymail warns on every SendGrid request that it no longer supports SendGrid officially; its
# webhook view is unchanged and these tests hold it to SendGrid's documented format.
pytestmark = pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")


@pytest.fixture(autouse=True)
def _webhook_secrets(settings) -> None:
    settings.ANYMAIL_WEBHOOK_SECRET = [SECRET]
    settings.ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY = MAILGUN_SIGNING_KEY


@pytest.fixture
def warnings_logged(caplog):
    """Warnings of our loggers (they do not propagate to the root logger caplog listens to)."""
    ours = logging.getLogger("campaigns")
    ours.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.WARNING)
    yield caplog
    ours.removeHandler(caplog.handler)


@pytest.fixture
def mailing(world):
    """A sending newsletter, sent to four recipients who granted it."""
    news = factories.dm_type(world.unit)
    friends = factories.recipient_list(world.unit)
    people = {n: factories.member(friends, f"{n}@example.com", granted=news) for n in PEOPLE}
    campaign = sending_campaign(world)
    deliveries = sent_to(campaign, list(people.values()))
    return campaign, news, people, dict(zip(PEOPLE, deliveries, strict=True))


def _metadata(campaign, delivery) -> dict[str, str]:
    return {"delivery": str(delivery.pk), "campaign": str(campaign.code)}


def _sendable(campaign, news) -> set[str]:
    found = sendable(unit=campaign.unit, dm_type=news, audience=Audience.EXTERNAL)
    return {r.email.split("@")[0] for r in found}


# Amazon SES --------------------------------------------------------------------------------------


def test_ses_hard_bounce_suppresses_the_address(client, mailing):
    """I1 afterwards: an SES Permanent bounce, matched by SES's message id, marks the recipient
    bounced and suppresses the address for every unit."""
    campaign, news, people, deliveries = mailing
    ses_id = provider_id(deliveries["ben"].pk)
    answer = post_ses(
        client, ses_notification(ses_bounce(ses_id, "ben@example.com")), **basic_auth()
    )
    assert answer.status_code == 200
    stored = DeliveryEvent.objects.get()
    assert (stored.source, stored.kind, stored.bounce_kind) == ("amazon_ses", "bounced", "hard")
    assert stored.delivery_id == deliveries["ben"].pk
    assert "User unknown" in stored.description
    people["ben"].refresh_from_db()
    assert people["ben"].status == RecipientStatus.BOUNCED
    suppression = Suppression.objects.get()
    assert (suppression.unit_id, suppression.reason) == (None, SuppressionReason.HARD_BOUNCE)
    assert _sendable(campaign, news) == {"ann", "cat", "dan"}


def test_ses_transient_bounce_is_soft(client, mailing):
    _, _, _, deliveries = mailing
    ses_id = provider_id(deliveries["ben"].pk)
    notification = ses_notification(ses_bounce(ses_id, "ben@example.com", "Transient"))
    assert post_ses(client, notification, **basic_auth()).status_code == 200
    assert DeliveryEvent.objects.get().bounce_kind == BounceKind.SOFT
    assert not Suppression.objects.exists()


def test_ses_complaint_withdraws_every_dm_type(client, mailing):
    """I6: an SES complaint withdraws every DM type of the unit for that recipient."""
    campaign, news, _, deliveries = mailing
    ses_id = provider_id(deliveries["cat"].pk)
    notification = ses_notification(ses_complaint(ses_id, "cat@example.com"))
    assert post_ses(client, notification, **basic_auth()).status_code == 200
    withdrawal = ConsentEvent.objects.get(action=Action.WITHDRAW)
    assert (withdrawal.channel, withdrawal.dm_type_id) == (Channel.COMPLAINT, None)
    assert _sendable(campaign, news) == {"ann", "ben", "dan"}
    assert Suppression.objects.get().unit_id == campaign.unit_id


def test_ses_replayed_notification_counts_once(client, mailing):
    """I4: SNS retries a notification with the same MessageId: one event, one effect."""
    _, _, _, deliveries = mailing
    ses_id = provider_id(deliveries["cat"].pk)
    notification = ses_notification(ses_complaint(ses_id, "cat@example.com"))
    for _ in range(3):
        assert post_ses(client, notification, **basic_auth()).status_code == 200
    assert DeliveryEvent.objects.count() == 1
    assert ConsentEvent.objects.filter(action=Action.WITHDRAW).count() == 1


def test_ses_unknown_message_is_stored_and_ignored(client, mailing):
    notification = ses_notification(ses_delivery("not-one-of-ours", "zed@example.com"))
    assert post_ses(client, notification, **basic_auth()).status_code == 200
    stored = DeliveryEvent.objects.get()
    assert stored.delivery_id is None and stored.kind == EventKind.DELIVERED


def test_ses_without_credentials_is_refused_and_logged(client, mailing, warnings_logged):
    _, _, _, deliveries = mailing
    notification = ses_notification(ses_bounce(provider_id(deliveries["ben"].pk), "ben@x.com"))
    missing = post_ses(client, notification)
    wrong = post_ses(client, notification, **basic_auth("esp:guessed"))
    assert missing.status_code == 401  # SNS sends credentials only after a 401
    assert wrong.status_code == 400
    assert not DeliveryEvent.objects.exists()
    refusals = [r for r in warnings_logged.records if "refused a webhook call" in r.getMessage()]
    assert len(refusals) == 2 and all(r.levelno == logging.WARNING for r in refusals)


# SendGrid ----------------------------------------------------------------------------------------


def _sendgrid_batch(campaign, deliveries) -> list[dict]:
    def meta(name):
        return {"delivery": str(deliveries[name].pk), "campaign": str(campaign.code)}

    return [
        sendgrid_event("processed", "ann@example.com", **meta("ann")),
        sendgrid_event("delivered", "ann@example.com", response="250 OK", **meta("ann")),
        sendgrid_event("open", "ann@example.com", useragent="Mozilla/5.0", **meta("ann")),
        sendgrid_event(
            "bounce",
            "ben@example.com",
            type="bounce",
            status="5.1.1",
            reason="550 5.1.1 The email account that you tried to reach does not exist",
            **meta("ben"),
        ),
        sendgrid_event("spamreport", "cat@example.com", **meta("cat")),
        sendgrid_event("unsubscribe", "dan@example.com", **meta("dan")),
        sendgrid_event("click", "dan@example.com", url="https://example.edu/a", **meta("dan")),
    ]


def test_sendgrid_batch_is_recorded_in_one_insert_with_its_effects(client, mailing):
    """I6: a SendGrid batch (custom args carry our delivery id) is stored with one INSERT;
    the bounce suppresses, the complaint withdraws everything, the unsubscribe the DM type."""
    campaign, news, people, deliveries = mailing
    with CaptureQueriesContext(connection) as queries:
        answer = post_sendgrid(client, _sendgrid_batch(campaign, deliveries), **basic_auth())
    assert answer.status_code == 200
    inserts = [q for q in queries.captured_queries if "campaigns_deliveryevent" in q["sql"]]
    assert sum(q["sql"].startswith("INSERT") for q in inserts) == 1
    kinds = dict(DeliveryEvent.objects.values_list("kind", "delivery_id").distinct())
    assert kinds[EventKind.BOUNCED] == deliveries["ben"].pk
    assert kinds[EventKind.COMPLAINED] == deliveries["cat"].pk
    assert DeliveryEvent.objects.count() == 7
    people["ben"].refresh_from_db()
    assert people["ben"].status == RecipientStatus.BOUNCED
    withdrawals = dict(
        ConsentEvent.objects.filter(action=Action.WITHDRAW).values_list(
            "recipient__email", "channel"
        )
    )
    assert withdrawals == {"cat@example.com": Channel.COMPLAINT, "dan@example.com": "one_click"}
    assert _sendable(campaign, news) == {"ann"}


def test_sendgrid_duplicates_count_once(client, mailing):
    """I4: the provider posts the same batch again (a retry): nothing is stored or done twice."""
    campaign, _, _, deliveries = mailing
    batch = _sendgrid_batch(campaign, deliveries)
    assert post_sendgrid(client, batch + batch[:3], **basic_auth()).status_code == 200
    assert post_sendgrid(client, batch, **basic_auth()).status_code == 200
    assert DeliveryEvent.objects.count() == len(batch)
    assert ConsentEvent.objects.filter(action=Action.WITHDRAW).count() == 2
    assert Suppression.objects.count() == 2  # ben everywhere, cat for the unit


def test_sendgrid_blocked_bounce_is_soft(client, mailing):
    campaign, _, _, deliveries = mailing
    blocked = sendgrid_event(
        "bounce", "ben@example.com", type="blocked", **_metadata(campaign, deliveries["ben"])
    )
    assert post_sendgrid(client, [blocked], **basic_auth()).status_code == 200
    assert DeliveryEvent.objects.get().bounce_kind == BounceKind.SOFT
    assert not Suppression.objects.exists()


def test_sendgrid_without_credentials_is_refused_and_logged(client, mailing, warnings_logged):
    campaign, _, _, deliveries = mailing
    batch = _sendgrid_batch(campaign, deliveries)
    assert post_sendgrid(client, batch).status_code == 400
    assert post_sendgrid(client, batch, **basic_auth("esp:wrong")).status_code == 400
    assert not DeliveryEvent.objects.exists()
    assert not ConsentEvent.objects.filter(action=Action.WITHDRAW).exists()
    assert sum("refused a webhook call" in r.getMessage() for r in warnings_logged.records) == 2


def test_without_a_secret_basic_auth_webhooks_are_off(client, mailing, settings, warnings_logged):
    """anymail alone would accept anyone's events when no secret is set: we answer 403."""
    del settings.ANYMAIL_WEBHOOK_SECRET
    campaign, _, _, deliveries = mailing
    answer = post_sendgrid(client, _sendgrid_batch(campaign, deliveries))
    assert answer.status_code == 403
    assert not DeliveryEvent.objects.exists()
    assert "ANYMAIL_WEBHOOK_SECRET" in warnings_logged.text


# Mailgun -----------------------------------------------------------------------------------------


def test_mailgun_permanent_failure_suppresses(client, mailing, settings):
    """Mailgun signs its calls: without a webhook secret its signature suffices (with one,
    anymail checks both); user-variables carry our delivery id."""
    del settings.ANYMAIL_WEBHOOK_SECRET
    campaign, _, people, deliveries = mailing
    data = mailgun_failed(
        "ben@example.com",
        message_id(deliveries["ben"].pk).strip("<>"),
        _metadata(campaign, deliveries["ben"]),
    )
    assert post_mailgun(client, mailgun_signed(data)).status_code == 200
    stored = DeliveryEvent.objects.get()
    assert (stored.source, stored.bounce_kind, stored.delivery_id) == (
        "mailgun",
        BounceKind.HARD,
        deliveries["ben"].pk,
    )
    people["ben"].refresh_from_db()
    assert people["ben"].status == RecipientStatus.BOUNCED
    assert Suppression.objects.get().reason == SuppressionReason.HARD_BOUNCE


def test_mailgun_matches_our_message_id_without_metadata(client, mailing):
    _, _, _, deliveries = mailing
    data = mailgun_failed("ann@example.com", message_id(deliveries["ann"].pk).strip("<>"), {})
    data.update(severity="permanent", reason="old")
    data["delivery-status"]["code"] = 498
    assert post_mailgun(client, mailgun_signed(data), **basic_auth()).status_code == 200
    stored = DeliveryEvent.objects.get()
    assert (stored.delivery_id, stored.bounce_kind) == (deliveries["ann"].pk, BounceKind.SOFT)


def test_mailgun_bad_signature_is_refused_and_logged(client, mailing, warnings_logged):
    campaign, _, _, deliveries = mailing
    data = mailgun_failed("ben@example.com", "x@y", _metadata(campaign, deliveries["ben"]))
    forged = mailgun_signed(data, key="not-the-key")
    assert post_mailgun(client, forged, **basic_auth()).status_code == 400
    assert not DeliveryEvent.objects.exists()
    assert "refused a webhook call" in warnings_logged.text


# Postmark ----------------------------------------------------------------------------------------


def test_postmark_spam_complaint_withdraws(client, mailing):
    """I6: Postmark's SpamComplaint withdraws every DM type of the unit."""
    campaign, news, _, deliveries = mailing
    payload = postmark_spam_complaint(
        "cat@example.com", provider_id(deliveries["cat"].pk), _metadata(campaign, deliveries["cat"])
    )
    assert post_postmark(client, payload, **basic_auth()).status_code == 200
    assert DeliveryEvent.objects.get().kind == EventKind.COMPLAINED
    withdrawal = ConsentEvent.objects.get(action=Action.WITHDRAW)
    assert (withdrawal.channel, withdrawal.dm_type_id) == (Channel.COMPLAINT, None)
    assert _sendable(campaign, news) == {"ann", "ben", "dan"}


def test_postmark_hard_and_soft_bounces(client, mailing):
    campaign, _, people, deliveries = mailing
    for number, (name, kind) in enumerate((("ann", "SoftBounce"), ("ben", "HardBounce"))):
        payload = postmark_bounce(
            f"{name}@example.com",
            provider_id(deliveries[name].pk),
            _metadata(campaign, deliveries[name]),
            kind,
        )
        payload["ID"] += number
        assert post_postmark(client, payload, **basic_auth()).status_code == 200
    kinds = dict(DeliveryEvent.objects.values_list("delivery_id", "bounce_kind"))
    assert kinds == {deliveries["ann"].pk: "soft", deliveries["ben"].pk: "hard"}
    people["ben"].refresh_from_db()
    people["ann"].refresh_from_db()
    assert (people["ann"].status, people["ben"].status) == ("active", "bounced")


def test_postmark_delivery_without_an_id_is_stored_once(client, mailing):
    """Postmark gives delivery events no id: a digest of the event stands in, so a retry of
    the same post is still one event (I4)."""
    campaign, _, _, deliveries = mailing
    payload = postmark_delivery(
        "ann@example.com", provider_id(deliveries["ann"].pk), _metadata(campaign, deliveries["ann"])
    )
    for _ in range(2):
        assert post_postmark(client, payload, **basic_auth()).status_code == 200
    stored = DeliveryEvent.objects.get()
    assert stored.event_key.startswith("sha256:") and stored.kind == EventKind.DELIVERED


def test_postmark_without_credentials_is_refused(client, mailing, warnings_logged):
    campaign, _, _, deliveries = mailing
    payload = postmark_spam_complaint(
        "cat@example.com", provider_id(deliveries["cat"].pk), _metadata(campaign, deliveries["cat"])
    )
    assert post_postmark(client, payload).status_code == 400
    assert not ConsentEvent.objects.filter(action=Action.WITHDRAW).exists()
    assert "refused a webhook call" in warnings_logged.text


# Hostile and misconfigured calls (I10) ------------------------------------------------------------

ESPS = ("amazon_ses", "sendgrid", "mailgun", "postmark")
BODIES = {
    "a JSON list": ("[1, 2, 3]", "application/json"),
    "a JSON string": ('"hello"', "application/json"),
    "not JSON": ("{not json", "application/json"),
    "a form": ("a=1&b=2", "application/x-www-form-urlencoded"),
    "empty": ("", "application/json"),
    "binary": ("\x00\xff\xfe", "application/octet-stream"),
}


@pytest.mark.parametrize("esp", ESPS)
@pytest.mark.parametrize("body", list(BODIES))
@pytest.mark.parametrize("auth", ["none", "wrong", "right"])
def test_a_malformed_or_unauthenticated_call_gets_a_4xx_never_a_500(
    client, mailing, esp, body, auth, warnings_logged
):
    """I10: whatever a caller sends, and with whatever credentials, the answer is a 4xx (or a
    200 that records nothing), never a 500 or an ERROR in the log."""
    data, content_type = BODIES[body]
    extra = {"none": {}, "wrong": basic_auth("esp:guessed"), "right": basic_auth()}[auth]
    extra |= {"HTTP_X_AMZ_SNS_MESSAGE_TYPE": "Notification", "HTTP_X_AMZ_SNS_MESSAGE_ID": "x"}
    client.raise_request_exception = False
    response = client.post(
        f"/webhooks/anymail/{esp}/tracking/", data=data, content_type=content_type, **extra
    )
    assert response.status_code < 500, (esp, body, auth, response.status_code)
    if auth != "right" and esp != "mailgun":
        assert 400 <= response.status_code < 500
    assert not DeliveryEvent.objects.exists()
    assert not [r for r in warnings_logged.records if r.levelno >= logging.ERROR]


def test_a_malformed_call_is_logged_without_the_addresses_it_quotes(
    client, mailing, warnings_logged
):
    """I9: a log is never erased, so the reason a call was refused names no address, even when
    the parser's error quotes one."""
    # Mailgun's parser fails on the timestamp with "could not convert string to float: '…'".
    event = mailgun_failed("ann@example.com", "<m@x>", {}, timestamp="Erin.Subject@Example.ORG")
    response = post_mailgun(client, mailgun_signed(event), **basic_auth())
    assert response.status_code == 400
    assert "malformed" in warnings_logged.text, warnings_logged.text
    assert "erin.subject" not in warnings_logged.text.lower(), warnings_logged.text


@pytest.mark.parametrize("body", ["a JSON list", "not JSON", "a form"])
def test_mailgun_without_a_signing_key_is_refused_not_broken(
    client, mailing, settings, body, warnings_logged
):
    """I10: a Mailgun webhook that operations have not given its signing key answers 403 and
    says why in the log, instead of failing with an exception."""
    del settings.ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY
    data, content_type = BODIES[body]
    client.raise_request_exception = False
    response = client.post(
        "/webhooks/anymail/mailgun/tracking/", data=data, content_type=content_type
    )
    assert response.status_code == 403
    assert "MAILGUN_WEBHOOK_SIGNING_KEY" in warnings_logged.text


def test_check_reports_a_provider_enabled_without_its_webhook_key(settings):
    """I10: `manage.py check` names an ESP we send through whose webhook would refuse all."""
    from mlm.checks import check_enabled_providers_can_report_back

    settings.MLM_MAIL_BACKENDS = {"mailgun": "anymail.backends.mailgun.EmailBackend"}
    assert check_enabled_providers_can_report_back(None) == []
    del settings.ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY
    settings.EMAIL_BACKEND = "anymail.backends.sendgrid.EmailBackend"
    del settings.ANYMAIL_WEBHOOK_SECRET
    found = check_enabled_providers_can_report_back(None)
    assert [w.id for w in found] == ["mlm.W003", "mlm.W003"]
    assert {w.hint for w in found} == {
        "Set MAILGUN_WEBHOOK_SIGNING_KEY (see the README's configuration table).",
        "Set ANYMAIL_WEBHOOK_SECRET (see the README's configuration table).",
    }
