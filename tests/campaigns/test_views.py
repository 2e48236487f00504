"""The campaign pages: thin views over the services, scoped to the unit, acting only on POST."""

from __future__ import annotations

from django.urls import reverse

from campaigns.models import Campaign, CampaignStatus, Delivery
from campaigns.tasks import send_campaign_test
from tests.campaigns import factories


def url(name, world, *args):
    return reverse(name, args=[world.unit.slug, *args])


def _form(world) -> dict:
    return {
        "name": "Open day invitation",
        "dm_type": factories.dm_type(world.unit).pk,
        "audience": "external",
        "lists": [factories.recipient_list(world.unit).pk],
        "identity": factories.identity(world.unit).pk,
        "subject": "Come to Open Day, {{ first_name|default('friend') }}",
        "layout": factories.layout(world.unit).pk,
        "body_format": "html",
        "html_body": "<p>Dear {{ first_name|default('friend') }}, see you.</p>",
        "text_body": "",
        "reply_to": "",
    }


def test_an_editor_writes_a_campaign_in_the_browser(world, client_for):
    client = client_for(world.bob)
    assert client.get(url("campaign_create", world)).status_code == 200
    response = client.post(url("campaign_create", world), _form(world))
    campaign = Campaign.objects.get(name="Open day invitation")
    assert response.status_code == 302
    assert response["Location"] == url("campaign_detail", world, campaign.code)
    page = client.get(response["Location"]).content.decode()
    assert "Content checks" in page and "Audience now" in page
    listing = client.get(url("campaigns", world)).content.decode()
    assert "Open day invitation" in listing and "Draft" in listing


def test_a_viewer_sees_campaigns_but_cannot_write_them(world, client_for):
    factories.campaign(world)
    client = client_for(world.vic)
    assert client.get(url("campaigns", world)).status_code == 200
    assert client.get(url("campaign_create", world)).status_code == 403


def test_an_abusive_template_is_refused_by_the_form(world, client_for):
    form = {**_form(world), "html_body": '{{ "a" * 50000000 }}'}
    response = client_for(world.bob).post(url("campaign_create", world), form)
    assert response.status_code == 200
    assert "50,000,000 characters" in response.content.decode()
    assert not Campaign.objects.exists()


def test_the_live_preview_renders_unsaved_fields_in_a_sandboxed_frame(world, client_for):
    client = client_for(world.bob)
    response = client.post(url("campaign_live_preview", world), _form(world))
    page = response.content.decode()
    assert response.status_code == 200 and "Come to Open Day, Chris" in page
    assert "sandbox" in page
    key = page.split("?key=")[1].split('"')[0]
    frame = client.get(url("campaign_live_preview_html", world) + f"?key={key}")
    assert "Dear Chris, see you." in frame.content.decode()
    policy = frame["Content-Security-Policy"]
    assert "sandbox" in policy and "script-src 'none'" in policy
    other = client_for(world.alice).get(url("campaign_live_preview_html", world) + f"?key={key}")
    assert "Dear Chris" not in other.content.decode()  # a preview is its author's only


def test_the_live_preview_shows_a_template_error(world, client_for):
    form = {**_form(world), "html_body": "<p>{{ '' .__class__ }}</p>"}
    page = client_for(world.bob).post(url("campaign_live_preview", world), form).content.decode()
    assert "not available in mail templates" in page


def test_the_preview_finds_a_recipient_of_the_lists_by_address(world, client_for):
    campaign = factories.campaign(world)
    ann = factories.member(
        factories.recipient_list(world.unit), "ann.lee@example.com", first_name="Ann"
    )
    client = client_for(world.bob)
    page = client.get(url("campaign_preview", world, campaign.code) + "?q=ann").content.decode()
    assert "ann.lee@example.com" in page
    page = client.get(
        url("campaign_preview", world, campaign.code) + f"?recipient={ann.code}"
    ).content.decode()
    assert "Ann, your spring news" in page and "Hello Ann," in page
    frame = client.get(
        url("campaign_preview_html", world, campaign.code) + f"?recipient={ann.code}"
    )
    assert "Hello Ann," in frame.content.decode()
    assert "sandbox" in frame["Content-Security-Policy"]


def test_a_test_mail_goes_to_the_editor_marked_and_uncounted(
    world, client_for, django_capture_on_commit_callbacks, mailoutbox
):
    campaign = factories.campaign(world)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(world.bob).post(url("campaign_test", world, campaign.code))
    assert response.status_code == 302 and len(callbacks) == 1
    send_campaign_test(campaign.pk, world.bob.pk, None)  # what the worker runs
    (mail,) = mailoutbox
    assert mail.subject.startswith("[TEST] ") and mail.to == ["bob@staff.example.edu"]
    assert mail.extra_headers["X-MLM-Test"] == "yes"
    assert "example.invalid/unsubscribe/sample-link" in mail.body  # never a real link
    assert not Delivery.objects.exists()


def test_actions_act_only_on_post(world, client_for):
    campaign = factories.campaign(world)
    client = client_for(world.alice)
    for name in ("campaign_submit", "campaign_cancel", "campaign_test", "campaign_acknowledge"):
        assert client.get(url(name, world, campaign.code)).status_code == 405
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


def test_the_approval_journey_through_the_pages(world, client_for):
    campaign = factories.campaign(world)
    bob = client_for(world.bob)
    bob.post(url("campaign_submit", world, campaign.code))
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PENDING
    assert bob.get(url("campaign_review", world, campaign.code)).status_code == 403
    amy = client_for(world.amy)
    page = amy.get(url("campaign_review", world, campaign.code)).content.decode()
    assert "Would receive it" in page
    amy.post(url("campaign_review", world, campaign.code), {"decision": "approve", "comment": ""})
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.APPROVED and campaign.approved_by == world.amy
    bob = client_for(world.bob)
    bob.post(
        url("campaign_schedule", world, campaign.code), {"when": "later", "at": "2099-01-02T09:30"}
    )
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SCHEDULED
    local = campaign.scheduled_at.astimezone(world.unit.tzinfo)
    assert (local.hour, local.minute) == (9, 30)  # in the unit's time zone
    bob.post(url("campaign_cancel", world, campaign.code))
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED


def test_an_admin_changes_the_unit_s_campaign_settings(world, client_for):
    assert client_for(world.bob).get(url("campaign_settings", world)).status_code == 403
    client = client_for(world.alice)
    response = client.post(
        url("campaign_settings", world),
        {
            "allow_self_approval": "on",
            "frequency_cap_mails": "3",
            "frequency_cap_days": "30",
            "banned_words": "free\nwinner",
        },
    )
    assert response.status_code == 302
    world.unit.campaign_settings.refresh_from_db()
    assert world.unit.campaign_settings.banned_word_list == ["free", "winner"]
    assert world.unit.campaign_settings.frequency_cap_mails == 3


def test_layouts_are_written_and_checked(world, client_for):
    client = client_for(world.bob)
    response = client.post(url("layout_create", world), {"name": "Bare", "html": "<p>no slot</p>"})
    assert "exactly once" in response.content.decode()
    response = client.post(
        url("layout_create", world), {"name": "Bare", "html": "<div>{{ content }}</div>"}
    )
    assert response.status_code == 302
    assert "Bare" in client.get(url("layouts", world)).content.decode()


def test_a_sent_campaign_shows_what_was_sent_apart_from_the_audience_now(world, client_for):
    """I4: what was sent is read from the deliveries; today's audience estimate, which consent
    changes since have moved, is labelled as such and shown apart."""
    from tests.campaigns.report_data import sent_campaign

    sent = sent_campaign(world)
    news = factories.dm_type(world.unit)
    friends = factories.recipient_list(world.unit)
    for email in ("late1@example.com", "late2@example.com"):
        factories.member(friends, email, granted=news)
    page = client_for(world.vic).get(url("campaign_detail", world, sent.campaign.code))
    html = page.content.decode()
    assert "What was sent</h2>" in html
    assert '<strong class="sent-count">17</strong>' in html
    assert '<dd class="skipped-count">3</dd>' in html
    assert '<dd class="failed-count">1</dd>' in html
    assert "Audience now, not what was sent</h2>" in html
    assert '<strong class="audience-sendable">2</strong>' in html
    assert html.index("What was sent</h2>") < html.index("Audience now, not what was sent")


def test_a_draft_shows_only_the_audience_now(world, client_for):
    campaign = factories.campaign(world)
    html = client_for(world.vic).get(url("campaign_detail", world, campaign.code)).content.decode()
    assert "Audience now</h2>" in html
    assert "What was sent" not in html and "not what was sent" not in html
