"""Double opt-in: the public form grants nothing; only the confirmed link does (I2)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from consent.models import Channel, ConsentEvent, SubscriptionRequest
from consent.public_services import subscription_requests_purge
from consent.selectors import sendable
from consent.tasks import send_subscription_confirmation
from consent.tokens import make_subscription_token
from recipients.models import Recipient
from tests.public.helpers import Browser

FORM = "/s/engineering/"


def fill(mailing, **overrides) -> dict:
    data = {
        "email": "sam@example.org",
        "first_name": "Sam",
        "last_name": "Lee",
        "dm": [str(mailing.newsletter.code)],
        "website": "",
    }
    return {**data, **overrides}


def subscribe(django_capture_on_commit_callbacks, mailing, browser=None, **overrides):
    """Post the form and run what it enqueued after commit: the confirmation mail."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = (browser or Browser()).submit(FORM, fill(mailing, **overrides))
    return response, callbacks


def confirm_link(request: SubscriptionRequest) -> str:
    return f"/s/confirm/{make_subscription_token(request_code=request.code)}/"


def test_the_form_ticks_nothing_in_advance(mailing):
    """I2: "all DM types" is never a default; the person ticks."""
    html = Browser().get(FORM).content.decode()
    assert html.count('type="checkbox"') == 2
    assert " checked" not in html
    assert "Old appeal" not in html
    assert "I would like to receive the kinds of mail I tick below from Faculty of Engineering" in (
        html
    )
    assert 'class="hp" aria-hidden="true"' in html
    assert "1 University Road, Hong Kong" in html


def test_no_recipient_and_no_grant_before_the_click(mailing, django_capture_on_commit_callbacks):
    """I2: the form keeps a request and enqueues a mail after commit; nothing is granted."""
    events = ConsentEvent.objects.count()
    response, callbacks = subscribe(django_capture_on_commit_callbacks, mailing)
    assert response.status_code == 200
    assert "Check your mail" in response.content.decode()
    assert len(callbacks) == 1
    assert not Recipient.objects.filter(email="sam@example.org").exists()
    assert ConsentEvent.objects.count() == events
    request = SubscriptionRequest.objects.get()
    assert request.email == "sam@example.org"
    assert list(request.dm_types.all()) == [mailing.newsletter]
    assert "[x] Newsletter (notice v1)" in request.wording


def test_the_confirmation_goes_through_the_mail_backend(
    mailing, django_capture_on_commit_callbacks
):
    subscribe(django_capture_on_commit_callbacks, mailing)
    request = SubscriptionRequest.objects.get()
    send_subscription_confirmation.run(request.pk)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["sam@example.org"]
    assert message.mlm_unit_id == mailing.world.unit.pk
    assert "Faculty of Engineering" in message.subject
    assert "http://testserver/s/confirm/" in message.body
    assert "1 University Road, Hong Kong" in message.body
    html = message.alternatives[0][0]
    assert "Confirm my subscription" in html


def test_the_mail_speaks_the_language_of_the_form(mailing, django_capture_on_commit_callbacks):
    browser = Browser(HTTP_ACCEPT_LANGUAGE="zh-HK,zh;q=0.9")
    subscribe(django_capture_on_commit_callbacks, mailing, browser=browser)
    send_subscription_confirmation.run(SubscriptionRequest.objects.get().pk)
    assert mail.outbox[0].subject == "請確認訂閱Faculty of Engineering的郵件"
    assert "確認訂閱" in mail.outbox[0].alternatives[0][0]


def test_the_click_grants_with_evidence(mailing, django_capture_on_commit_callbacks):
    """I2: only the confirmed link grants: channel double opt-in, the form's wording as proof."""
    subscribe(django_capture_on_commit_callbacks, mailing)
    request = SubscriptionRequest.objects.get()
    link = confirm_link(request)
    browser = Browser(HTTP_USER_AGENT="Mail app 1.0")
    shown = browser.get(link)
    assert shown.status_code == 200
    assert "Confirm my subscription" in shown.content.decode()
    assert not Recipient.objects.filter(email="sam@example.org").exists()  # a GET grants nothing

    done = browser.submit(link)
    assert done.status_code == 200
    assert "You are subscribed" in done.content.decode()
    recipient = Recipient.objects.get(unit=mailing.world.unit, email="sam@example.org")
    assert (recipient.category, recipient.first_name, recipient.last_name) == (
        "external",
        "Sam",
        "Lee",
    )
    event = ConsentEvent.objects.get(recipient=recipient)
    assert (event.action, event.channel, event.dm_type) == (
        "grant",
        Channel.DOUBLE_OPT_IN,
        mailing.newsletter,
    )
    assert "I would like to receive the kinds of mail I tick below" in event.evidence
    assert "/s/engineering/" in event.evidence and "confirmed" in event.evidence
    assert event.user_agent == "Mail app 1.0" and event.ip_address == "127.0.0.1"
    assert recipient in sendable(
        unit=mailing.world.unit, dm_type=mailing.newsletter, audience="external"
    )
    again = browser.submit(link)
    assert again.status_code == 200
    assert ConsentEvent.objects.filter(recipient=recipient).count() == 1


def test_a_known_recipient_is_granted_on_the_existing_row(
    mailing, django_capture_on_commit_callbacks
):
    subscribe(
        django_capture_on_commit_callbacks,
        mailing,
        email="erin@example.com",
        dm=[str(mailing.events.code)],
    )
    Browser().submit(confirm_link(SubscriptionRequest.objects.get()))
    assert Recipient.objects.filter(unit=mailing.world.unit, email="erin@example.com").count() == 1
    latest = ConsentEvent.objects.filter(recipient=mailing.erin).first()
    assert latest.channel == Channel.DOUBLE_OPT_IN


def test_known_and_unknown_addresses_get_the_same_answer(
    mailing, django_capture_on_commit_callbacks
):
    """The form never reveals whether an address is already known."""
    known, _ = subscribe(django_capture_on_commit_callbacks, mailing, email="erin@example.com")
    unknown, _ = subscribe(django_capture_on_commit_callbacks, mailing, email="nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert known.content == unknown.content


def test_a_filled_honeypot_gets_the_same_answer_and_no_mail(
    mailing, django_capture_on_commit_callbacks
):
    human, _ = subscribe(django_capture_on_commit_callbacks, mailing)
    bot, callbacks = subscribe(
        django_capture_on_commit_callbacks, mailing, email="bot@example.net", website="http://x"
    )
    assert bot.content == human.content
    assert not callbacks
    assert not SubscriptionRequest.objects.filter(email="bot@example.net").exists()


def test_an_institution_address_is_refused_by_its_domain(
    mailing, django_capture_on_commit_callbacks
):
    response, callbacks = subscribe(
        django_capture_on_commit_callbacks, mailing, email="ian@staff.example.edu"
    )
    assert "cannot subscribe here" in response.content.decode()
    assert not callbacks


def test_nothing_ticked_is_refused(mailing, django_capture_on_commit_callbacks):
    response, callbacks = subscribe(django_capture_on_commit_callbacks, mailing, dm=[])
    assert "Tick at least one kind of mail." in response.content.decode()
    assert not callbacks and not SubscriptionRequest.objects.exists()


def test_requests_expire_after_seven_days_and_leave_nothing_behind(
    mailing, django_capture_on_commit_callbacks
):
    subscribe(django_capture_on_commit_callbacks, mailing)
    request = SubscriptionRequest.objects.get()
    assert (
        timedelta(days=6, hours=23) < request.expires_at - request.created_at <= timedelta(days=7)
    )
    SubscriptionRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - timedelta(days=8), expires_at=timezone.now() - timedelta(days=1)
    )
    response = Browser().get(confirm_link(request))
    assert response.status_code == 404
    send_subscription_confirmation.run(request.pk)
    assert not mail.outbox
    assert subscription_requests_purge() == 1
    assert not SubscriptionRequest.objects.exists()
    assert not Recipient.objects.filter(email="sam@example.org").exists()


def test_a_tampered_confirmation_link_is_404(mailing, django_capture_on_commit_callbacks):
    subscribe(django_capture_on_commit_callbacks, mailing)
    link = confirm_link(SubscriptionRequest.objects.get())
    tampered = link[:20] + ("A" if link[20] != "A" else "B") + link[21:]
    assert Browser().get(tampered).status_code == 404


@pytest.mark.parametrize("limit", ["subscribe_ip", "subscribe_address"])
def test_the_form_is_rate_limited(mailing, settings, django_capture_on_commit_callbacks, limit):
    settings.MLM_RATE_LIMITS = {**settings.MLM_RATE_LIMITS, limit: "2/h"}
    codes = []
    for _ in range(3):
        response, _ = subscribe(django_capture_on_commit_callbacks, mailing)
        codes.append(response.status_code)
    assert codes == [200, 200, 429]
    assert SubscriptionRequest.objects.count() == 2
    assert int(response["Retry-After"]) > 0


@pytest.mark.parametrize("accept", ["en", "zh-HK,zh;q=0.9"])
def test_the_confirmation_is_built_by_the_project_builder_and_parses_back_exactly(
    mailing, django_capture_on_commit_callbacks, accept
):
    """The raw mail's Subject decodes to exactly the subject (no space folded in after
    `Subject:`), and a confirmation carries no List-Unsubscribe headers: it is no DM mail."""
    import email
    import email.policy

    browser = Browser(HTTP_ACCEPT_LANGUAGE=accept)
    subscribe(django_capture_on_commit_callbacks, mailing, browser=browser)
    send_subscription_confirmation.run(SubscriptionRequest.objects.get().pk)
    message = mail.outbox[0]
    parsed = email.message_from_bytes(message.message().as_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == message.subject
    assert not parsed["Subject"].startswith(" ")
    assert parsed["To"].addresses[0].addr_spec == "sam@example.org"
    assert parsed["From"].addresses[0].display_name == "Faculty of Engineering"
    assert parsed["Message-ID"].endswith("@example.edu>")
    assert "List-Unsubscribe" not in parsed and "List-Unsubscribe-Post" not in parsed
    assert not parsed.defects
    text = parsed.get_body(("plain",)).get_content()
    assert "http://testserver/s/confirm/" in text
