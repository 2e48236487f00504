"""The rendering pipeline: compiled once per campaign, CSS inlined once, the text part made
once, then per recipient only a render; and the messages it assembles."""

from __future__ import annotations

import pytest

from campaigns.mail import (
    SAMPLE_RECIPIENT,
    CampaignMailer,
    CampaignMessages,
    message_id_for,
    recipient_variables,
)
from campaigns.rendering import CompiledMail, html_to_text
from mlm.models import SenderUnit
from recipients.models import Recipient
from tests.campaigns import factories

LAYOUT = (
    "<html><head><style>.note { color: #c00 } p { margin: 0 }</style></head><body>"
    "{{ content }}<p class='note'>{{ unit.postal_address }} "
    "<a href='{{ unsubscribe_url }}'>Unsubscribe</a></p></body></html>"
)
VARS = {
    **SAMPLE_RECIPIENT,
    "unit": {"name": "U", "postal_address": "1 Road"},
    "unsubscribe_url": "https://x.test/u/1",
    "preferences_url": "https://x.test/p/1",
}


def compiled(body: str, layout: str | None = LAYOUT, **kwargs) -> CompiledMail:
    return CompiledMail(
        subject="Hi {{ first_name }}",
        html_body=body,
        layout=layout,
        strict=False,
        sample=VARS,
        **kwargs,
    )


def test_it_inlines_css_once_and_renders_per_recipient():
    mail = compiled("<p>Dear {{ first_name }}</p>")
    assert mail.inlined_once and mail.text_derived_once and mail.one_template is not None
    parts = mail.render({**VARS, "first_name": "Ann"})
    assert 'style="margin: 0;"' in parts.html  # the stylesheet went into the elements
    assert 'class="note" style="margin: 0;color: #c00;"' in parts.html
    assert "Dear Ann" in parts.html and "Dear Ann" in parts.text
    assert parts.subject == "Hi Ann"
    assert "Unsubscribe (https://x.test/u/1)" in parts.text


def test_it_inlines_per_recipient_when_the_result_depends_on_the_recipient():
    mail = compiled('<p class="{{ attributes.kind }}">Dear {{ first_name }}</p>')
    assert not mail.inlined_once and "class attribute" in mail.dynamic_reason
    parts = mail.render({**VARS, "attributes": {"kind": "note"}})
    assert 'class="note" style="margin: 0;color: #c00;">Dear Chris' in parts.html


def test_it_falls_back_when_a_block_opens_elements_unevenly():
    body = '{% if first_name %}<div class="note">{% else %}<div>{% endif %}x</div>'
    mail = compiled(body)
    assert not mail.inlined_once
    assert "color: #c00" in mail.render(VARS).html
    assert "color: #c00" not in mail.render({**VARS, "first_name": ""}).html.split("x</div>")[0]


def test_loops_and_conditions_survive_the_inlining():
    body = (
        "<table>{% for row in attributes.rows %}<tr><td>{{ row }}</td></tr>{% endfor %}</table>"
        "{% if attributes.vip %}<p>VIP</p>{% endif %}"
    )
    mail = compiled(body)
    assert mail.inlined_once
    parts = mail.render({**VARS, "attributes": {"rows": ["a", "b"], "vip": True}})
    assert parts.html.count("<tr>") == 2 and "VIP" in parts.html
    assert "a" in parts.text and "VIP" in parts.text
    parts = mail.render({**VARS, "attributes": {"rows": [], "vip": False}})
    assert "<tr>" not in parts.html and "VIP" not in parts.html


def test_a_written_text_body_is_used_as_is():
    mail = compiled("<p>HTML</p>", text_body="Plain {{ first_name }}")
    assert mail.render(VARS).text == "Plain Chris"


def test_the_text_part_is_generated_from_the_html():
    text = html_to_text(
        '<h1>Title</h1><p>Hello <a href="https://a.test/">our site</a>.</p><ul><li>one</li></ul>'
    )
    assert "Title" in text and "Hello our site (https://a.test/)." in text and "one" in text


def test_a_newline_in_recipient_data_cannot_add_a_header():
    mail = compiled("<p>x</p>")
    parts = mail.render({**VARS, "first_name": "Ann\r\nBcc: victim@example.com"})
    assert "\n" not in parts.subject and "\r" not in parts.subject


def test_the_demo_campaign_takes_the_fast_path(world):
    mailer = CampaignMailer(factories.campaign(world))
    assert mailer.compiled.inlined_once and mailer.compiled.text_derived_once
    assert mailer.compiled.one_template is not None


def test_it_assembles_a_message_with_headers_and_links(world):
    campaign = factories.campaign(world)
    recipient = factories.member(
        factories.recipient_list(world.unit), "ann@example.com", first_name="Ann", last_name="Lee"
    )
    parts, links = CampaignMailer(campaign).recipient_parts(recipient)
    assert links.unsubscribe in parts.html and links.preferences in parts.text
    assert links.unsubscribe.startswith("http://testserver/u/")
    message = CampaignMessages(campaign, sign=False).build(recipient, delivery_id=7)
    assert message.subject == "Ann, your spring news from Faculty of Engineering"
    assert message.to == ['"Ann Lee" <ann@example.com>']
    assert message.from_email == '"Faculty of Engineering" <news@engineering.example.edu>'
    assert message.mlm_unit_id == world.unit.pk
    raw = message.message().as_bytes().decode()
    assert f"Message-ID: {message_id_for(campaign, 7, 'engineering.example.edu')}" in raw
    assert f"<{links.one_click}>" in raw
    assert "multipart/alternative" in raw and "text/html" in raw


def test_blank_fields_are_left_out_so_defaults_apply(world):
    recipient = Recipient(unit=world.unit, email="x@example.com", first_name="")
    assert "first_name" not in recipient_variables(recipient)
    campaign = factories.campaign(world)
    parts, _links = CampaignMailer(campaign).recipient_parts(recipient)
    assert parts.subject.startswith("Friend,")
    assert "Hello friend," in parts.html


@pytest.mark.parametrize("name", ["unit", "campaign", "dm_type"])
def test_the_campaign_constants_are_plain_data(world, name):
    """Templates never see model instances (no `unit.recipients.all()`)."""
    mailer = CampaignMailer(factories.campaign(world))
    assert type(mailer.shared[name]) is dict


def test_a_zh_hans_recipient_s_mail_has_the_zh_hans_unit_name(world):
    """The unit's name and postal address in the recipient's language, English without one."""
    SenderUnit.objects.filter(pk=world.unit.pk).update(
        name_zh_hans="工程学院", postal_address_zh_hans="香港大学道1号"
    )
    world.unit.refresh_from_db()
    campaign = factories.campaign(world)
    mailer = CampaignMailer(campaign)
    hans = Recipient(unit=world.unit, email="li@example.com", first_name="Li", locale="zh-Hans")
    assert mailer.sample_variables(hans)["unit"]["name"] == "工程学院"
    parts, _links = mailer.recipient_parts(hans)
    assert "工程学院" in parts.subject and "香港大学道1号" in parts.html
    assert "University Road" not in parts.html  # the English address
    # zh-Hant was never written: that reader gets the English name, as does an English one.
    for locale in ("zh-Hant", "en", ""):
        other = Recipient(unit=world.unit, email="x@example.com", locale=locale)
        parts, _links = mailer.recipient_parts(other)
        assert "Faculty of Engineering" in parts.subject and "工程学院" not in parts.html
        assert "University Road" in parts.html and "香港大学道1号" not in parts.html
