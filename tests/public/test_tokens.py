"""Signed recipient tokens: short, unforgeable, revealing no address, valid for years (I5)."""

from __future__ import annotations

import base64
import uuid

from django.test import override_settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from campaigns.mail import LinkMaker
from consent.tokens import (
    TokenData,
    make_recipient_token,
    make_subscription_token,
    read_recipient_token,
    read_subscription_token,
)
from tests.campaigns import factories

R, T, C = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def test_it_reads_back_the_recipient_dm_type_and_campaign():
    token = make_recipient_token(recipient=R, dm_type=T, campaign_code=C)
    assert read_recipient_token(token) == TokenData(R, T, C)
    assert read_recipient_token(make_recipient_token(recipient=R)) == TokenData(R, None, None)
    assert read_recipient_token(make_recipient_token(recipient=R, dm_type=T)) == TokenData(R, T)
    assert read_recipient_token(make_recipient_token(recipient=R, campaign_code=C)) == TokenData(
        R, None, C
    )


def test_it_keeps_tokens_short_for_list_unsubscribe_headers():
    assert len(make_recipient_token(recipient=R)) == 44
    assert len(make_recipient_token(recipient=R, dm_type=T)) == 66
    assert len(make_recipient_token(recipient=R, dm_type=T, campaign_code=C)) == 87


def test_it_refuses_every_changed_character():
    """I5: a link cannot be bent to name someone else — any change of any character fails."""
    token = make_recipient_token(recipient=R, dm_type=T, campaign_code=C)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, char in enumerate(token):
        for other in alphabet:
            if other != char:
                tampered = token[:i] + other + token[i + 1 :]
                assert read_recipient_token(tampered) is None, (i, other)
    assert read_recipient_token(token[:-1]) is None
    assert read_recipient_token(token + "A") is None


def test_it_reveals_no_address_and_only_random_codes(mailing):
    token = make_recipient_token(recipient=mailing.erin, dm_type=mailing.newsletter)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"erin" not in raw and "erin" not in token
    assert mailing.erin.code.bytes in raw  # a random UUID, not the id or the address


@given(st.text(max_size=200))
@hypothesis_settings(max_examples=300, deadline=None)
def test_it_never_raises_on_garbage(text):
    assert read_recipient_token(text) is None or isinstance(read_recipient_token(text), TokenData)
    read_subscription_token(text)


def test_links_keep_working_after_the_secret_key_is_rotated():
    """I5: links in old mails work for years; a rotated SECRET_KEY stays in the fallbacks."""
    with override_settings(SECRET_KEY="old-key-" + "x" * 50):
        token = make_recipient_token(recipient=R, dm_type=T)
    with override_settings(
        SECRET_KEY="new-key-" + "y" * 50, SECRET_KEY_FALLBACKS=["old-key-" + "x" * 50]
    ):
        assert read_recipient_token(token) == TokenData(R, T)
    with override_settings(SECRET_KEY="new-key-" + "y" * 50, SECRET_KEY_FALLBACKS=[]):
        assert read_recipient_token(token) is None


def test_a_confirmation_token_is_not_a_recipient_token():
    token = make_subscription_token(request_code=R)
    assert read_subscription_token(token) == R
    assert read_recipient_token(token) is None
    assert read_subscription_token(make_recipient_token(recipient=R)) is None


def test_a_mails_links_are_absolute_and_share_one_token(world, settings):
    settings.SITE_URL = "https://mlm.example.edu"
    campaign = factories.campaign(world)
    ann = factories.member(factories.recipient_list(world.unit), "ann@example.com")
    links = LinkMaker(campaign).links(ann)
    token = links.unsubscribe.removeprefix("https://mlm.example.edu/u/").removesuffix("/")
    assert read_recipient_token(token) == TokenData(ann.code, campaign.dm_type.code, campaign.code)
    assert links.one_click == f"https://mlm.example.edu/u/{token}/one-click"
    assert links.preferences == f"https://mlm.example.edu/p/{token}/"
