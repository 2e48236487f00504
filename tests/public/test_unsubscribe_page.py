"""The unsubscribe page of every mail's footer: three buttons, all POSTs, and an undo (I5, I6)."""

from __future__ import annotations

from consent.models import Channel, ConsentEvent, Suppression, SuppressionReason
from consent.selectors import sendable
from consent.tokens import make_recipient_token
from tests.public.helpers import Browser


def page_of(mailing, **kwargs) -> str:
    kwargs.setdefault("dm_type", mailing.newsletter)
    return f"/u/{make_recipient_token(recipient=mailing.erin, **kwargs)}/"


def test_it_shows_the_unit_the_dm_type_three_buttons_and_the_postal_address(mailing):
    response = Browser().get(page_of(mailing))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Unsubscribe from Newsletter" in html
    assert "Unsubscribe from everything from Faculty of Engineering" in html
    assert "Stop all marketing mail from Example University" in html
    assert "1 University Road, Hong Kong" in html
    assert html.count('method="post"') == 3
    assert html.count("csrfmiddlewaretoken") == 3
    assert "erin@example.com" not in html
    assert response["Cache-Control"] == "no-store"


def test_without_a_dm_type_it_offers_the_unit_and_the_institution(mailing):
    html = Browser().get(page_of(mailing, dm_type=None)).content.decode()
    assert "Unsubscribe from Newsletter" not in html
    assert "Unsubscribe from everything from Faculty of Engineering" in html


def test_a_post_without_csrf_changes_nothing(mailing):
    response = Browser().post(page_of(mailing), {"scope": "dm_type"})
    assert response.status_code == 403
    assert b"security cookie" in response.content
    assert not ConsentEvent.objects.filter(recipient=mailing.erin, action="withdraw").exists()


def test_unsubscribing_from_the_dm_type_stops_it_at_once(mailing):
    """I6 end to end: after the button, sendable excludes the recipient for that DM type."""
    unit = mailing.world.unit
    response = Browser().submit(page_of(mailing), {"scope": "dm_type"})
    assert response.status_code == 200
    assert "You will no longer receive “Newsletter” from Faculty of Engineering" in (
        response.content.decode()
    )
    assert mailing.erin not in sendable(unit=unit, dm_type=mailing.newsletter, audience="external")
    assert mailing.erin in sendable(unit=unit, dm_type=mailing.events, audience="external")
    event = ConsentEvent.objects.filter(recipient=mailing.erin).first()
    assert event.channel == Channel.PREFERENCE_CENTRE
    assert "Unsubscribe from Newsletter" in event.evidence


def test_unsubscribing_from_everything_of_the_unit(mailing):
    """I6: "unsubscribe from all" withdraws every DM type of the unit, and only of that unit."""
    unit = mailing.world.unit
    Browser().submit(page_of(mailing), {"scope": "unit"})
    for dm_type in (mailing.newsletter, mailing.events):
        assert mailing.erin not in sendable(unit=unit, dm_type=dm_type, audience="external")
    assert mailing.erin_elsewhere in sendable(
        unit=mailing.world.other_unit, dm_type=mailing.other_unit_type, audience="external"
    )


def test_stopping_all_marketing_reaches_every_unit(mailing):
    """I6: stop all marketing mail from the institution: every unit, and a global suppression."""
    Browser().submit(page_of(mailing), {"scope": "institution"})
    assert not sendable(
        unit=mailing.world.other_unit, dm_type=mailing.other_unit_type, audience="external"
    ).exists()
    assert ConsentEvent.objects.filter(recipient=mailing.erin_elsewhere, action="withdraw").exists()
    assert Suppression.objects.filter(
        unit__isnull=True, email_hash=mailing.erin.email_hash, reason=SuppressionReason.OPT_OUT
    ).exists()


def test_undo_grants_again_through_the_preference_centre(mailing):
    browser = Browser()
    page = page_of(mailing)
    done = browser.submit(page, {"scope": "unit"})
    html = done.content.decode()
    assert "Undo" in html and "“Event invitations”, “Newsletter”" in html
    token = browser.cookies["csrftoken"].value
    codes = [str(mailing.events.code), str(mailing.newsletter.code)]
    undone = browser.post(
        page + "undo", {"scope": "unit", "dm": codes, "csrfmiddlewaretoken": token}
    )
    assert undone.status_code == 200
    assert "Subscribed again" in undone.content.decode()
    grants = ConsentEvent.objects.filter(recipient=mailing.erin, action="grant").order_by("-id")[:2]
    assert {g.channel for g in grants} == {Channel.PREFERENCE_CENTRE}
    assert all("Undo" in g.evidence and g.ip_address == "127.0.0.1" for g in grants)
    for dm_type in (mailing.newsletter, mailing.events):
        assert mailing.erin in sendable(
            unit=mailing.world.unit, dm_type=dm_type, audience="external"
        )


def test_undo_after_stopping_everything_lifts_the_opt_out(mailing):
    browser = Browser()
    page = page_of(mailing)
    browser.submit(page, {"scope": "institution"})
    token = browser.cookies["csrftoken"].value
    browser.post(
        page + "undo",
        {
            "scope": "institution",
            "dm": [str(mailing.newsletter.code)],
            "csrfmiddlewaretoken": token,
        },
    )
    assert not Suppression.objects.filter(unit__isnull=True, reason="opt_out").exists()
    assert mailing.erin in sendable(
        unit=mailing.world.unit, dm_type=mailing.newsletter, audience="external"
    )


def test_a_get_of_undo_does_nothing(mailing):
    response = Browser().get(page_of(mailing) + "undo")
    assert response.status_code == 405


def test_it_speaks_the_recipient_s_language(mailing):
    """Recipient locale first, then Accept-Language, and the switcher above both."""
    type(mailing.erin).objects.filter(pk=mailing.erin.pk).update(locale="zh-HK")
    page = page_of(mailing)
    html = Browser().get(page, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="zh-hant">' in html
    assert "取消訂閱「Newsletter」" in html
    assert "停止接收Example University的所有推廣郵件" in html
    english = Browser().get(page + "?lang=en").content.decode()
    assert "Unsubscribe from Newsletter" in english
    type(mailing.erin).objects.filter(pk=mailing.erin.pk).update(locale="")
    simplified = Browser().get(page, HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.8")
    assert "退订“Newsletter”" in simplified.content.decode()
    assert simplified["Content-Language"] == "zh-hans"
    assert "Accept-Language" in simplified["Vary"]


def test_the_done_page_speaks_the_language_of_the_form(mailing):
    page = page_of(mailing)
    response = Browser().submit(page + "?lang=zh-hant", {"scope": "dm_type"})
    assert "你將不會再收到Faculty of Engineering的「Newsletter」郵件" in response.content.decode()
