"""Content checks: each fires on a campaign crafted to break it, and all pass on the demo."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from campaigns.checks import run_checks
from campaigns.demo import DEMO_BODY, DEMO_LAYOUT
from campaigns.models import Campaign
from campaigns.services.authoring import campaign_acknowledge
from campaigns.services.status import campaign_submit
from tests.campaigns import factories

CHECK_KEYS = {
    "lists",
    "identity",
    "templates",
    "subject_present",
    "subject_length",
    "subject_honest",
    "unsubscribe_link",
    "preferences_link",
    "footer_address",
    "footer_statement",
    "size",
    "images_alt",
    "links_https",
    "banned_words",
}


def failing(campaign: Campaign) -> dict[str, str]:
    return {r.key: r.message for r in run_checks(campaign).failing}


def layout_without(world, old: str, new: str = "", name: str = "Crafted") -> object:
    assert old in DEMO_LAYOUT
    return factories.layout(world.unit, DEMO_LAYOUT.replace(old, new), name=name)


def test_every_check_passes_on_the_demo_campaign(world):
    factories.member(
        factories.recipient_list(world.unit),
        "ann@example.com",
        first_name="Ann",
        granted=factories.dm_type(world.unit),
    )
    report = run_checks(factories.campaign(world))
    assert {r.key for r in report.results} == CHECK_KEYS
    assert report.passed, [(r.key, r.message) for r in report.failing]
    assert report.sample_label == "ann@example.com"


def test_the_demo_passes_with_a_sample_recipient_when_the_lists_are_empty(world):
    report = run_checks(factories.campaign(world))
    assert report.passed and "sample recipient" in report.sample_label


def test_it_needs_a_list(world):
    assert "Choose at least one list" in failing(factories.campaign(world, lists=[]))["lists"]


def test_it_needs_the_unit_s_own_identity(world):
    campaign = factories.campaign(world)
    Campaign.objects.filter(pk=campaign.pk).update(identity=factories.identity(world.other_unit))
    campaign.refresh_from_db()
    assert "sender identities" in failing(campaign)["identity"]


def test_it_needs_every_template_to_render_strictly(world):
    campaign = factories.campaign(world, html_body="<p>Dear {{ frist_name }}</p>" + DEMO_BODY)
    message = failing(campaign)["templates"]
    assert "'frist_name' is undefined" in message and "line 1" in message
    assert 'default("friend")' in message


def test_a_recipient_without_a_first_name_needs_a_fallback(world):
    factories.member(factories.recipient_list(world.unit), "nameless@example.com")
    campaign = factories.campaign(world, subject="Dear {{ first_name }}")
    assert "'first_name' is undefined" in failing(campaign)["templates"]


def test_it_needs_a_subject(world):
    assert "Write a subject" in failing(factories.campaign(world, subject=""))["subject_present"]


def test_it_needs_a_subject_under_150_characters(world):
    message = failing(factories.campaign(world, subject="x" * 150))["subject_length"]
    assert "150 characters" in message


@pytest.mark.parametrize(
    "subject",
    [
        "RE: your question",
        "Fwd: spring news",
        "FW:news",
        "[Re] tickets",
        "回覆\uff1a開放日",
        "转发: 通知",
    ],
)
def test_the_subject_must_not_pretend_to_be_a_reply_or_forward(world, subject):
    assert "RE:/FW:" in failing(factories.campaign(world, subject=subject))["subject_honest"]


def test_a_subject_that_merely_mentions_replies_is_fine(world):
    assert "subject_honest" not in failing(factories.campaign(world, subject="Reply by Friday"))


def test_it_needs_the_unsubscribe_link(world):
    layout = layout_without(world, 'href="{{ unsubscribe_url }}"', 'href="https://x.example/"')
    assert (
        "{{ unsubscribe_url }}"
        in failing(factories.campaign(world, layout=layout))["unsubscribe_link"]
    )


def test_it_needs_the_preference_centre_link(world):
    layout = layout_without(world, 'href="{{ preferences_url }}"', 'href="https://x.example/"')
    assert "preferences_link" in failing(factories.campaign(world, layout=layout))


def test_it_needs_the_postal_address_in_the_footer(world):
    layout = layout_without(
        world, "{% for line in unit.postal_address.splitlines() %}{{ line }}<br>{% endfor %}"
    )
    assert "postal address" in failing(factories.campaign(world, layout=layout))["footer_address"]


def test_it_needs_the_statement_in_english_and_chinese(world):
    layout = layout_without(world, "取消訂閱", "這裡")
    message = failing(factories.campaign(world, layout=layout))["footer_statement"]
    assert "Chinese" in message and "English" not in message.split("add it in")[1]


def test_it_needs_the_mail_under_102_kb(world):
    body = DEMO_BODY + "<p>" + "Long story. " * 9000 + "</p>"
    assert "Gmail clips" in failing(factories.campaign(world, html_body=body))["size"]


def test_images_need_alt_text(world):
    body = DEMO_BODY + '<img src="https://www.example.edu/x.png">'
    assert "x.png" in failing(factories.campaign(world, html_body=body))["images_alt"]


def test_links_must_be_absolute_https(world):
    body = DEMO_BODY + '<a href="http://www.example.edu/">plain http</a><a href="/rel">rel</a>'
    message = failing(factories.campaign(world, html_body=body))["links_https"]
    assert "http://www.example.edu/" in message and "/rel" in message


def test_banned_words_are_found_until_each_is_acknowledged(world):
    body = DEMO_BODY + "<p>最佳的課程, guaranteed results.</p>"
    campaign = factories.campaign(world, html_body=body)
    message = failing(campaign)["banned_words"]
    assert "最佳" in message and "guaranteed" in message
    with pytest.raises(ValidationError, match="content checks do not pass"):
        campaign_submit(campaign=campaign, by=world.bob)
    campaign = campaign_acknowledge(
        campaign=campaign, word="最佳", reason="Quoted from a ranking body", by=world.bob
    )
    assert "最佳" not in failing(campaign)["banned_words"]
    campaign_acknowledge(
        campaign=campaign, word="guaranteed", reason="Legal approved", by=world.bob
    )
    campaign.refresh_from_db()
    assert "banned_words" not in failing(campaign)
    assert campaign_submit(campaign=campaign, by=world.bob).status == "pending"


def test_the_banned_words_are_the_unit_s_own(world):
    from campaigns.services.settings import unit_settings_update

    unit_settings_update(
        unit=world.unit,
        allow_self_approval=False,
        frequency_cap_mails=0,
        frequency_cap_days=7,
        banned_words="robotics",
        by=world.alice,
    )
    assert "robotics" in failing(factories.campaign(world))["banned_words"]


def test_an_english_word_matches_whole_words_only(world):
    body = DEMO_BODY + "<p>We guaranteedly... no: unguaranteed.</p>"
    assert "banned_words" not in failing(factories.campaign(world, html_body=body))
