"""The web version of a mail: its link in every mail, its token, its page, where it stops."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from campaigns.demo import DEMO_LAYOUT
from campaigns.mail import WEB_VERSION_LABELS, CampaignMailer, with_web_version_line
from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, SkipReason
from campaigns.public_views import web_page
from campaigns.selectors import web_version_delivery
from campaigns.sending.batches import batch_send
from campaigns.sending.start import campaign_start
from campaigns.services.authoring import layout_create
from campaigns.services.settings import unit_settings_update
from campaigns.services.status import campaign_cancel
from consent.tokens import make_recipient_token, make_web_version_token, read_web_version_token
from recipients.models import Recipient
from recipients.rights import recipient_erase
from tests.campaigns import factories

LINK = re.compile(r'href="(https?://[^"]+/w/([A-Za-z0-9_-]+)/)"')
HREF = re.compile(r'href="([^"]*)"')
IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)


def _sent(world, *emails: str, unit=None, **fields) -> Campaign:
    """A campaign of `unit` (default the world's) sent to `emails`, its mails in mail.outbox."""
    unit = unit or world.unit
    news = factories.dm_type(unit)
    target = factories.recipient_list(unit, name="Web readers")
    for email in emails:
        factories.member(target, email, granted=news, **fields)
    by = world.bob if unit == world.unit else world.charlie
    campaign = factories.campaign(world, unit=unit, lists=[target], by=by)
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now() - timedelta(seconds=1)
    )
    campaign.refresh_from_db()
    campaign_start(campaign=campaign, by=None)
    batch_send(campaign_id=campaign.pk)
    return campaign


def _mail_to(email: str):
    return next(m for m in mail.outbox if email in str(m.to))


def _html(message) -> str:
    return message.alternatives[0][0]


def _link(message) -> tuple[str, str]:
    """The web version URL of a sent mail, and its path."""
    found = LINK.search(_html(message))
    assert found, "the mail has no web version link"
    return found.group(1), urlsplit(found.group(1)).path


def _invalid(client: Client) -> bytes:
    response = client.get("/w/not-a-token-at-all-not-a-token/")
    assert response.status_code == 404
    return response.content


def test_every_mail_links_to_its_web_version_in_both_parts(world):
    """The link stands at the top of the HTML and the text part, no address in it."""
    _sent(world, "erin@example.com")
    message = _mail_to("erin@example.com")
    url, _ = _link(message)
    body = _html(message)
    assert body.index(url) < body.index("Faculty of Engineering")  # a line at the top
    assert f">{WEB_VERSION_LABELS['en']}</a>" in body
    assert message.body.startswith(f"{WEB_VERSION_LABELS['en']}: {url}\n")
    assert "erin" not in url and "example.com" not in url


def test_the_token_names_one_delivery_and_no_enumerable_id(world):
    """One token per delivery: no address, no delivery id, only random codes under a MAC."""
    campaign = _sent(world, "erin@example.com", "eric@example.com")
    tokens = {_link(_mail_to(e))[1] for e in ("erin@example.com", "eric@example.com")}
    assert len(tokens) == 2
    for delivery in Delivery.objects.filter(campaign=campaign).select_related("recipient"):
        token = make_web_version_token(recipient=delivery.recipient, campaign_code=campaign.code)
        assert f"/w/{token}/" in tokens
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        # A version byte, the two random codes, the MAC: nothing else.
        assert len(raw) == 1 + 16 + 16 + 16
        assert raw[1:17] == delivery.recipient.code.bytes
        assert raw[17:33] == campaign.code.bytes
        assert web_version_delivery(token) == delivery


def test_the_page_is_the_mail_as_received(world, client):
    """The same render, layout, unsubscribe and preference links; less only the line linking
    to the page itself."""
    campaign = _sent(world, "erin@example.com")
    message = _mail_to("erin@example.com")
    url, path = _link(message)
    response = client.get(path)
    assert response.status_code == 200
    recipient = Recipient.objects.get(email="erin@example.com")
    shown = CampaignMailer(campaign).web_version(recipient)
    assert response.content.decode() == web_page(shown.html)
    label = WEB_VERSION_LABELS["en"]
    assert with_web_version_line(shown, url, label, html=True, text=False).html == _html(message)
    links = CampaignMailer(campaign).link_maker().links(recipient)
    page = response.content.decode()
    assert links.unsubscribe in page and links.preferences in page
    assert url not in page


def test_the_page_is_noindex_strict_and_fits_a_phone(world, client):
    _sent(world, "erin@example.com")
    response = client.get(_link(_mail_to("erin@example.com"))[1])
    page = response.content.decode()
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert '<meta name="robots" content="noindex, nofollow">' in page
    assert page.count('name="viewport"') == 1  # the layout's own
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    policy = dict(
        (part.split()[0], part.split()[1:])
        for part in response["Content-Security-Policy"].split(";")
        if part.strip()
    )
    assert policy["default-src"] == ["'none'"] and policy["script-src"] == ["'none'"]
    assert policy["img-src"] == ["https:", "data:"]
    assert policy["form-action"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert "sandbox" in policy and "allow-scripts" not in policy["sandbox"]


def test_a_layout_without_a_head_gets_a_viewport():
    page = web_page("<p>Hello</p>")
    assert page.startswith('<meta name="robots"')
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in page


def test_the_page_never_carries_tracking(world, client):
    """Even for a unit that tracks opens and clicks: no pixel, no rewritten link — every link
    and image of the page is the templates' own or the recipient's consent links."""
    unit_settings_update(
        unit=world.unit,
        allow_self_approval=False,
        frequency_cap_mails=0,
        frequency_cap_days=7,
        banned_words="",
        tracking_enabled=True,
        by=world.alice,
    )
    campaign = _sent(world, "erin@example.com")
    message = _mail_to("erin@example.com")
    assert message.track_opens and message.track_clicks  # the ESP's, on the mail only
    page = client.get(_link(message)[1]).content.decode()
    recipient = Recipient.objects.get(email="erin@example.com")
    links = CampaignMailer(campaign).link_maker().links(recipient)
    sources = campaign.html_body + campaign.layout.html
    for href in HREF.findall(page):
        assert href in (links.unsubscribe, links.preferences) or href in sources, href
    assert len(IMG.findall(page)) == len(IMG.findall(sources))
    for src in re.findall(r'src="([^"]*)"', page):
        assert src in sources, src


def test_the_link_and_the_page_are_in_the_recipient_s_language(world, client):
    world.unit.name_zh_hant = "工程學院"
    world.unit.save(update_fields=["name_zh_hant"])
    _sent(world, "mei@example.com", locale="zh-hant")
    message = _mail_to("mei@example.com")
    assert f">{WEB_VERSION_LABELS['zh-hant']}</a>" in _html(message)
    assert message.body.startswith(WEB_VERSION_LABELS["zh-hant"])
    response = client.get(_link(message)[1])
    assert response["Content-Language"] == "zh-hant"
    assert "工程學院" in response.content.decode()


def test_a_layout_may_place_the_link_itself(world):
    """`{{ web_version_url }}` in the layout: the link is where the layout puts it, once."""
    html = DEMO_LAYOUT.replace(
        "<body>",
        '<body>{% if web_version_url %}<p class="web"><a href="{{ web_version_url }}">'
        "{{ web_version_label }}</a></p>{% endif %}",
    )
    layout = layout_create(unit=world.unit, name="Own line", html=html, by=None)
    news = factories.dm_type(world.unit)
    target = factories.recipient_list(world.unit, name="Own")
    factories.member(target, "erin@example.com", granted=news)
    campaign = factories.campaign(world, lists=[target], layout=layout)
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now() - timedelta(seconds=1)
    )
    campaign.refresh_from_db()
    campaign_start(campaign=campaign, by=None)
    batch_send(campaign_id=campaign.pk)
    body = _html(mail.outbox[0])
    assert len(LINK.findall(body)) == 1 and 'class="web"' in body


@pytest.mark.parametrize("where", ["token", "bytes"])
@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_forged_and_mutated_tokens_show_nothing(world, client, where, data):
    """Any changed character or flipped bit of a genuine token: the invalid page, same bytes."""
    if not Delivery.objects.exists():
        _sent(world, "erin@example.com")
    recipient = Recipient.objects.get(email="erin@example.com")
    campaign = Campaign.objects.get(unit=world.unit)
    token = make_web_version_token(recipient=recipient, campaign_code=campaign.code)
    if where == "token":
        i = data.draw(st.integers(0, len(token) - 1))
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        other = data.draw(st.sampled_from(alphabet).filter(lambda c: c != token[i]))
        forged = token[:i] + other + token[i + 1 :]
    else:
        raw = bytearray(base64.urlsafe_b64decode(token + "=="))
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
        forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert read_web_version_token(forged) is None
    response = client.get(f"/w/{forged}/")
    assert response.status_code == 404
    assert response.content == _invalid(client)


def test_other_tokens_open_no_web_version(world, client):
    """A recipient token (unsubscribe link) is no web version token, and the reverse."""
    _sent(world, "erin@example.com")
    recipient = Recipient.objects.get(email="erin@example.com")
    campaign = Campaign.objects.get(unit=world.unit)
    consent_token = make_recipient_token(recipient=recipient, campaign_code=campaign.code)
    assert client.get(f"/w/{consent_token}/").status_code == 404
    web_token = make_web_version_token(recipient=recipient, campaign_code=campaign.code)
    assert client.get(f"/u/{web_token}/").status_code == 404
    assert client.get(f"/p/{web_token}/").status_code == 404


def test_another_unit_s_token_shows_nothing_of_this_unit(world, client):
    """I8: a token is self-contained — it shows its own delivery's mail, never another unit's;
    genuine codes of two units' deliveries put together show nothing."""
    ours = _sent(world, "erin@example.com")
    theirs = _sent(world, "otto@example.com", unit=world.other_unit)
    erin = Recipient.objects.get(unit=world.unit, email="erin@example.com")
    otto = Recipient.objects.get(unit=world.other_unit, email="otto@example.com")
    invalid = _invalid(client)
    for recipient, campaign in ((erin, theirs), (otto, ours)):
        token = make_web_version_token(recipient=recipient, campaign_code=campaign.code)
        response = client.get(f"/w/{token}/")
        assert (response.status_code, response.content) == (404, invalid)
    page = client.get(_link(_mail_to("otto@example.com"))[1]).content.decode()
    assert page == web_page(CampaignMailer(theirs).web_version(otto).html)
    assert "Alumni Relations Office" in page and "erin@example.com" not in page


def test_turned_off_mails_have_no_link_and_old_links_do_not_work(world, client):
    _sent(world, "erin@example.com")
    _, path = _link(_mail_to("erin@example.com"))
    assert client.get(path).status_code == 200
    client.force_login(world.alice)
    response = client.post(
        reverse("campaign_settings", args=[world.unit.slug]),
        {"frequency_cap_mails": "0", "frequency_cap_days": "7", "banned_words": ""},
    )
    assert response.status_code == 302
    world.unit.campaign_settings.refresh_from_db()
    assert world.unit.campaign_settings.web_version_enabled is False
    client.logout()
    invalid = _invalid(client)
    response = client.get(path)
    assert (response.status_code, response.content) == (404, invalid)
    mail.outbox.clear()
    _sent(world, "eric@example.com")
    message = _mail_to("eric@example.com")
    assert not LINK.search(_html(message)) and "/w/" not in message.body
    assert WEB_VERSION_LABELS["en"] not in message.body


def test_erasure_makes_the_link_answer_like_any_invalid_token(world, client):
    """I9: the erased person's mail is shown to no one."""
    _sent(world, "erin@example.com")
    _, path = _link(_mail_to("erin@example.com"))
    assert client.get(path).status_code == 200
    recipient_erase(recipient=Recipient.objects.get(email="erin@example.com"), by=None)
    response = client.get(path)
    assert (response.status_code, response.content) == (404, _invalid(client))


def test_mails_never_sent_have_no_web_version(world, client):
    """Skipped deliveries (no consent, or a campaign cancelled before sending) show nothing."""
    news = factories.dm_type(world.unit)
    target = factories.recipient_list(world.unit, name="Never")
    factories.member(target, "erin@example.com", granted=news)
    factories.member(target, "nora@example.com")  # no consent: skipped
    campaign = factories.campaign(world, lists=[target])
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now() - timedelta(seconds=1)
    )
    campaign.refresh_from_db()
    campaign_start(campaign=campaign, by=None)
    campaign_cancel(campaign=campaign, by=world.bob)
    rows = {d.recipient.email: d for d in campaign.deliveries.select_related("recipient")}
    assert rows["erin@example.com"].reason == SkipReason.CANCELLED
    assert rows["nora@example.com"].reason == SkipReason.NO_CONSENT
    invalid = _invalid(client)
    for row in rows.values():
        assert row.status == DeliveryStatus.SKIPPED
        token = make_web_version_token(recipient=row.recipient, campaign_code=campaign.code)
        response = client.get(f"/w/{token}/")
        assert (response.status_code, response.content) == (404, invalid)


def test_a_template_that_no_longer_renders_never_reaches_the_recipient(world, client):
    """I10: whatever broke since sending (here the stored body, changed behind the services'
    back), the recipient gets the invalid link page, never a traceback."""
    campaign = _sent(world, "erin@example.com")
    _, path = _link(_mail_to("erin@example.com"))
    Campaign.objects.filter(pk=campaign.pk).update(html_body="{{ 1 // attributes.zero }}")
    Recipient.objects.filter(email="erin@example.com").update(attributes={"zero": 0})
    response = client.get(path)
    assert (response.status_code, response.content) == (404, _invalid(client))
    assert b"Traceback" not in response.content
