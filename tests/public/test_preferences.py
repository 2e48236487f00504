"""The preference centre: every live DM type, its notice, its state; one event per change."""

from __future__ import annotations

from consent.models import Channel, ConsentEvent
from consent.selectors import sendable
from consent.tokens import make_recipient_token
from tests.public.helpers import Browser


def prefs_of(recipient) -> str:
    return f"/p/{make_recipient_token(recipient=recipient)}/"


def test_it_lists_live_dm_types_with_notice_and_current_state(mailing):
    html = Browser().get(prefs_of(mailing.erin)).content.decode()
    assert "Newsletter" in html and "Event invitations" in html
    assert "The faculty&#x27;s monthly newsletter" in html
    assert "Old appeal" not in html  # archived
    assert "Reunions" not in html  # another unit's
    assert html.count(" checked") == 2
    assert "e•••@example.com" in html and "erin@example.com" not in html
    assert "1 University Road, Hong Kong" in html


def test_saving_records_one_event_per_change(mailing):
    """I4: one consent event per box that changed, none for the others."""
    before = ConsentEvent.objects.count()
    response = Browser().submit(prefs_of(mailing.erin), {"dm": [str(mailing.events.code)]})
    assert "Saved: 1 change." in response.content.decode()
    assert ConsentEvent.objects.count() == before + 1
    event = ConsentEvent.objects.first()
    assert (event.action, event.dm_type, event.channel) == (
        "withdraw",
        mailing.newsletter,
        Channel.PREFERENCE_CENTRE,
    )
    assert not sendable(
        unit=mailing.world.unit, dm_type=mailing.newsletter, audience="external"
    ).exists()
    again = Browser().submit(prefs_of(mailing.erin), {"dm": [str(mailing.events.code)]})
    assert "Saved. Nothing changed." in again.content.decode()
    assert ConsentEvent.objects.count() == before + 1


def test_an_external_grant_comes_only_from_the_person_s_own_tick(mailing):
    """I2: the grant's evidence is the tick itself: page, time, address, browser."""
    recipient = mailing.erin
    Browser().submit(prefs_of(recipient), {"dm": []})
    assert not sendable(
        unit=mailing.world.unit, dm_type=mailing.newsletter, audience="external"
    ).exists()
    Browser(HTTP_USER_AGENT="Firefox/140 on a phone").submit(
        prefs_of(recipient), {"dm": [str(mailing.newsletter.code)]}
    )
    grant = ConsentEvent.objects.filter(recipient=recipient).first()
    assert (grant.action, grant.channel, grant.dm_type) == (
        "grant",
        Channel.PREFERENCE_CENTRE,
        mailing.newsletter,
    )
    assert "Ticked “Newsletter” (notice version 1) in the preference centre" in grant.evidence
    assert "UTC" in grant.evidence
    assert grant.ip_address == "127.0.0.1"
    assert grant.user_agent == "Firefox/140 on a phone"
    assert grant.notice == mailing.newsletter.current_notice
    assert recipient in sendable(
        unit=mailing.world.unit, dm_type=mailing.newsletter, audience="external"
    )


def test_a_code_of_another_unit_grants_nothing(mailing):
    """I2, I8: only the unit's own DM types can be ticked; a forged code is refused."""
    before = ConsentEvent.objects.count()
    response = Browser().submit(
        prefs_of(mailing.erin),
        {"dm": [str(mailing.newsletter.code), str(mailing.other_unit_type.code)]},
    )
    assert response.status_code == 200
    assert ConsentEvent.objects.count() == before


def test_an_internal_recipient_sees_the_internal_default_ticked(mailing):
    html = Browser().get(prefs_of(mailing.ian)).content.decode()
    assert html.count(" checked") == 1
    Browser().submit(prefs_of(mailing.ian), {"dm": []})
    assert not sendable(
        unit=mailing.world.unit, dm_type=mailing.events, audience="internal"
    ).exists()


def test_it_shows_an_opt_out_and_offers_to_lift_it(mailing):
    browser = Browser()
    browser.submit(f"/u/{make_recipient_token(recipient=mailing.erin)}/", {"scope": "institution"})
    html = browser.get(prefs_of(mailing.erin) + "?lang=zh-hant").content.decode()
    assert "重新接收Example University的推廣郵件" in html
