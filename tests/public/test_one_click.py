"""RFC 8058 one-click unsubscribe: POST withdraws at once, GET never does (I5, I6)."""

from __future__ import annotations

import uuid

from django.test import Client

from consent import public_urls
from consent.models import Channel, ConsentEvent
from consent.public_views import ONE_CLICK_BODY
from consent.selectors import sendable
from consent.tokens import make_recipient_token
from recipients.models import Audience, RecipientStatus

BODY = {"List-Unsubscribe": "One-Click"}


def one_click(token: str) -> str:
    return f"/u/{token}/one-click"


def bare_client() -> Client:
    """A mail provider: no cookies, no CSRF token, no session, CSRF checks enforced."""
    return Client(enforce_csrf_checks=True)


def test_it_withdraws_the_dm_type_of_the_mail_at_once(mailing):
    """I5, I6: the provider's POST withdraws that DM type; sendable drops the recipient now."""
    campaign = uuid.uuid4()
    token = make_recipient_token(
        recipient=mailing.erin, dm_type=mailing.newsletter, campaign_code=campaign
    )
    unit = mailing.world.unit
    assert mailing.erin in sendable(unit=unit, dm_type=mailing.newsletter, audience="external")

    response = bare_client().post(one_click(token), BODY)

    assert response.status_code == 200
    assert response.content == ONE_CLICK_BODY
    event = ConsentEvent.objects.filter(recipient=mailing.erin).first()
    assert (event.action, event.channel, event.dm_type) == (
        "withdraw",
        Channel.ONE_CLICK,
        mailing.newsletter,
    )
    assert event.campaign_code == campaign
    assert event.ip_address == "127.0.0.1"
    assert mailing.erin not in sendable(unit=unit, dm_type=mailing.newsletter, audience="external")
    assert mailing.erin in sendable(unit=unit, dm_type=mailing.events, audience="external")


def test_without_a_dm_type_it_withdraws_every_dm_type_of_the_unit(mailing):
    """I6: a token naming no DM type withdraws all DM types of the unit (not other units)."""
    token = make_recipient_token(recipient=mailing.erin)
    assert bare_client().post(one_click(token), BODY).status_code == 200
    for dm_type in (mailing.newsletter, mailing.events):
        assert not sendable(unit=mailing.world.unit, dm_type=dm_type, audience="external").exists()
    other = sendable(
        unit=mailing.world.other_unit, dm_type=mailing.other_unit_type, audience="external"
    )
    assert mailing.erin_elsewhere in other


def test_it_withdraws_an_internal_default_for_staff(mailing):
    """I6: internal recipients get internal-default DM types until they withdraw."""
    unit = mailing.world.unit
    assert mailing.ian in sendable(unit=unit, dm_type=mailing.events, audience=Audience.INTERNAL)
    token = make_recipient_token(recipient=mailing.ian, dm_type=mailing.events)
    bare_client().post(one_click(token), BODY)
    assert mailing.ian not in sendable(
        unit=unit, dm_type=mailing.events, audience=Audience.INTERNAL
    )


def test_it_is_idempotent(mailing):
    """I4: a provider's retry answers the same and writes no second event."""
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    first = bare_client().post(one_click(token), BODY)
    second = bare_client().post(one_click(token), BODY)
    assert (first.status_code, first.content) == (second.status_code, second.content)
    assert ConsentEvent.objects.filter(recipient=mailing.erin, action="withdraw").count() == 1
    token_all = make_recipient_token(recipient=mailing.erin)
    bare_client().post(one_click(token_all), BODY)
    bare_client().post(one_click(token_all), BODY)
    assert ConsentEvent.objects.filter(recipient=mailing.erin, action="withdraw").count() == 2


def test_it_works_without_cookies_and_sets_none(mailing):
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    client = bare_client()
    response = client.post(one_click(token), BODY)
    assert response.status_code == 200
    assert not response.cookies
    assert not client.cookies


def test_it_accepts_a_multipart_body_as_rfc_8058_allows(mailing):
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    response = bare_client().post(one_click(token), BODY)  # the test client posts multipart
    assert response.status_code == 200
    body = "List-Unsubscribe=One-Click"
    urlencoded = bare_client().post(
        one_click(token), body, content_type="application/x-www-form-urlencoded"
    )
    assert urlencoded.status_code == 200


def test_a_get_never_withdraws(mailing):
    """I5: link scanners and prefetchers follow GETs; only the confirmation page is shown."""
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    for method in (bare_client().get, bare_client().head):
        response = method(one_click(token))
        assert response.status_code == 200
    page = bare_client().get(one_click(token))
    assert b"Unsubscribe from Newsletter" in page.content
    assert not ConsentEvent.objects.filter(recipient=mailing.erin, action="withdraw").exists()


def test_a_tampered_token_is_a_friendly_404(mailing):
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    tampered = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    for url in (one_click(tampered), f"/u/{tampered}/", f"/p/{tampered}/", "/u/nonsense/"):
        response = bare_client().get(url)
        assert response.status_code == 404, url
        assert b"This link does not work" in response.content
        assert b"Traceback" not in response.content
    assert not ConsentEvent.objects.filter(recipient=mailing.erin, action="withdraw").exists()


def test_a_post_with_a_tampered_token_withdraws_nothing_and_reveals_nothing(mailing):
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    response = bare_client().post(one_click(tampered), BODY)
    assert (response.status_code, response.content) == (200, ONE_CLICK_BODY)
    assert not ConsentEvent.objects.filter(recipient=mailing.erin, action="withdraw").exists()


def test_invalid_and_already_unsubscribed_get_identical_answers(mailing):
    """Status and size do not tell a forged token from a person who already unsubscribed."""
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    bare_client().post(one_click(token), BODY)
    already = bare_client().post(one_click(token), BODY)
    forged = bare_client().post(one_click("x" * 66), BODY)
    unknown = bare_client().post(one_click(make_recipient_token(recipient=uuid.uuid4())), BODY)
    answers = {(r.status_code, r.content, r["Content-Type"]) for r in (already, forged, unknown)}
    assert len(answers) == 1


def test_pages_of_an_erased_recipient_are_the_invalid_page_byte_for_byte(mailing):
    """I9: an erased person's old link reveals nothing; it looks like a forged one."""
    type(mailing.erin).objects.filter(pk=mailing.erin.pk).update(status=RecipientStatus.ERASED)
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    forged = "A" * 66
    for path in ("/u/{}/", "/p/{}/", "/u/{}/one-click"):
        erased = bare_client().get(path.format(token))
        invalid = bare_client().get(path.format(forged))
        assert erased.status_code == invalid.status_code == 404
        assert erased.content == invalid.content


def test_a_post_without_the_one_click_body_is_refused(mailing):
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    assert bare_client().post(one_click(token), {}).status_code == 400
    assert bare_client().post(one_click(token), {"List-Unsubscribe": "x"}).status_code == 400
    assert not ConsentEvent.objects.filter(recipient=mailing.erin, action="withdraw").exists()


def test_a_link_outlives_its_campaign(mailing):
    """I5: the token names the DM type itself, so a deleted campaign breaks nothing."""
    gone = uuid.uuid4()  # a campaign code no row holds
    token = make_recipient_token(
        recipient=mailing.erin, dm_type=mailing.newsletter, campaign_code=gone
    )
    assert bare_client().post(one_click(token), BODY).status_code == 200
    assert not sendable(
        unit=mailing.world.unit, dm_type=mailing.newsletter, audience="external"
    ).exists()


def test_it_is_the_only_recipient_page_exempt_from_csrf():
    """Every other public form carries a CSRF token; only RFC 8058's POST cannot."""
    exempt = [
        str(p.pattern) for p in public_urls.urlpatterns if getattr(p.callback, "csrf_exempt", False)
    ]
    assert exempt == ["u/<str:token>/one-click"]


def test_it_answers_429_past_the_limit(mailing, settings):
    settings.MLM_RATE_LIMITS = {**settings.MLM_RATE_LIMITS, "one_click_ip": "3/m"}
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    codes = [bare_client().post(one_click(token), BODY).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]


def test_one_token_is_limited_on_its_own(mailing, settings):
    settings.MLM_RATE_LIMITS = {**settings.MLM_RATE_LIMITS, "one_click_token": "2/m"}
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    other = make_recipient_token(recipient=mailing.erin, dm_type=mailing.events)
    codes = [bare_client().post(one_click(token), BODY).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert bare_client().post(one_click(other), BODY).status_code == 200


def test_the_one_statement_path_keeps_the_fold_of_the_general_path(mailing):
    """I4, I6: one-click writes its withdrawal in one SQL statement; the ledger it leaves is the
    one the general path (`withdraw`) would: a withdrawal only where the fold says subscribed,
    and subscription rows equal to the fold of the events."""
    from consent.models import Action
    from consent.selectors import subscription_mismatches
    from consent.services import grant

    erin, newsletter, events = mailing.erin, mailing.newsletter, mailing.events
    withdrawals = ConsentEvent.objects.filter(recipient=erin, action=Action.WITHDRAW)
    # "All DM types" withdrawn: the newsletter's one-click has nothing left to withdraw.
    bare_client().post(one_click(make_recipient_token(recipient=erin)), BODY)
    assert withdrawals.count() == 1
    bare_client().post(one_click(make_recipient_token(recipient=erin, dm_type=newsletter)), BODY)
    assert withdrawals.count() == 1
    # A later grant of the newsletter outranks the "all" row: now one-click writes again, once.
    grant(recipient=erin, dm_types=[newsletter], channel=Channel.ADMIN, evidence="Asked again")
    for _ in range(2):
        token = make_recipient_token(recipient=erin, dm_type=newsletter)
        assert bare_client().post(one_click(token), BODY).status_code == 200
    assert withdrawals.count() == 2
    assert withdrawals.first().dm_type == newsletter
    unit = mailing.world.unit
    assert erin not in sendable(unit=unit, dm_type=newsletter, audience="external")
    assert erin not in sendable(unit=unit, dm_type=events, audience="external")
    assert subscription_mismatches() == []


def test_a_dm_type_of_another_unit_in_a_token_changes_nothing(mailing):
    """I8: a token can only name a DM type of the recipient's own unit."""
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.other_unit_type)
    assert bare_client().post(one_click(token), BODY).status_code == 200
    assert not ConsentEvent.objects.filter(recipient=mailing.erin, action="withdraw").exists()
