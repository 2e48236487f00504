"""Open and click tracking is off unless a unit's administrator turns it on, and the preference
centre tells recipients, in their language, whether the unit tracks them."""

from __future__ import annotations

from django.urls import reverse

from campaigns.models import UnitCampaignSettings
from campaigns.selectors import unit_settings
from campaigns.services.settings import unit_settings_update
from consent.tokens import make_recipient_token
from mlm.models import AuditEntry
from tests.public.helpers import Browser

OFF = "does not track whether you open its mail or which links you click in it."
ON = "records when you open its mail and which links you click in it"


def prefs_of(recipient, lang: str = "") -> str:
    query = f"?lang={lang}" if lang else ""
    return f"/p/{make_recipient_token(recipient=recipient)}/{query}"


def test_tracking_is_off_by_default(mailing):
    assert unit_settings(mailing.world.unit).tracking_enabled is False
    html = Browser().get(prefs_of(mailing.erin)).content.decode()
    assert f"Faculty of Engineering {OFF}" in html
    assert ON not in html


def test_the_preference_centre_says_when_the_unit_tracks(mailing):
    UnitCampaignSettings.objects.create(unit=mailing.world.unit, tracking_enabled=True)
    html = Browser().get(prefs_of(mailing.erin)).content.decode()
    assert f"Faculty of Engineering {ON}" in html
    assert OFF not in html
    # another unit's choice is its own
    other = Browser().get(prefs_of(mailing.erin_elsewhere)).content.decode()
    assert OFF in other


def test_the_sentence_is_translated(mailing):
    html = Browser().get(prefs_of(mailing.erin, "zh-hant")).content.decode()
    assert "不會追蹤你是否打開其郵件" in html
    UnitCampaignSettings.objects.create(unit=mailing.world.unit, tracking_enabled=True)
    html = Browser().get(prefs_of(mailing.erin, "zh-hans")).content.decode()
    assert "会记录你何时打开其邮件" in html


def test_an_administrator_turns_tracking_on_in_the_campaign_settings(world, client_for):
    client = client_for(world.alice)
    url = reverse("campaign_settings", args=[world.unit.slug])
    form = client.get(url).context["form"]
    assert form["tracking_enabled"].value() is False
    data = {name: form[name].value() for name in form.fields}
    data = {k: v for k, v in data.items() if v is not None and v is not False}
    response = client.post(url, {**data, "tracking_enabled": "on"})
    assert response.status_code == 302, response.context["form"].errors
    assert unit_settings(world.unit).tracking_enabled is True
    page = client.get(url).content.decode()
    assert 'name="tracking_enabled"' in page and "checked" in page
    # saving without the box turns it off again
    client.post(url, data)
    assert unit_settings(world.unit).tracking_enabled is False


def test_the_settings_service_changes_tracking_only_when_told(world):
    rules = {
        "allow_self_approval": False,
        "frequency_cap_mails": 0,
        "frequency_cap_days": 7,
        "banned_words": "free",
    }
    unit_settings_update(unit=world.unit, by=world.alice, tracking_enabled=True, **rules)
    assert unit_settings(world.unit).tracking_enabled is True
    unit_settings_update(unit=world.unit, by=world.alice, **rules)  # a caller that does not say
    assert unit_settings(world.unit).tracking_enabled is True
    unit_settings_update(unit=world.unit, by=world.alice, tracking_enabled=False, **rules)
    assert unit_settings(world.unit).tracking_enabled is False
    entry = AuditEntry.objects.for_unit(world.unit).filter(verb="campaign_settings.change").first()
    assert entry.data["tracking_enabled"] is False
