"""The embedded default's Outbox: mail kept where an administrator reads it in the browser."""

import re
from html import unescape

from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus
from campaigns.sending.batches import batch_send
from campaigns.sending.start import campaign_start
from mlm.mail.outbox import OutboxBackend, build_test_message
from mlm.models import OutboxMessage
from mlm.tasks import send_test_mail
from tests.campaigns import factories


def keep(world, **kwargs) -> OutboxMessage:
    message = build_test_message(unit=world.unit, to="reader@example.org")
    message.subject = kwargs.get("subject", message.subject)
    OutboxBackend().send_messages([message])
    return OutboxMessage.objects.for_unit(world.unit).latest("created_at")


def test_it_keeps_the_raw_message_with_both_parts(world):
    item = keep(world)
    raw = bytes(item.raw)
    assert b"Content-Type: multipart/alternative" in raw
    assert b"text/html" in raw and b"text/plain" in raw
    assert item.recipients == "reader@example.org"


def test_the_page_shows_html_text_and_headers(world, client_for):
    item = keep(world, subject="Open day 開放日")
    client = client_for(world.bob)
    listing = client.get(reverse("outbox", args=[world.unit.slug]))
    assert "Open day 開放日" in listing.content.decode()
    detail = client.get(reverse("outbox_detail", args=[world.unit.slug, item.code]))
    page = detail.content.decode()
    assert "If you can read this, the mail backend works." in page  # the text part
    assert "Subject" in page and "Open day 開放日" in page  # decoded headers
    assert reverse("outbox_html", args=[world.unit.slug, item.code]) in page


def test_the_html_part_is_served_sandboxed(world, client_for):
    item = keep(world)
    response = client_for(world.bob).get(reverse("outbox_html", args=[world.unit.slug, item.code]))
    assert b"Test message from Faculty of Engineering" in response.content
    csp = response.headers["Content-Security-Policy"]
    assert "sandbox allow-popups allow-popups-to-escape-sandbox" in csp
    assert "allow-scripts" not in csp and "allow-same-origin" not in csp
    assert "script-src 'none'" in csp
    assert "frame-ancestors 'self'" in csp
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_another_units_message_is_404(world, client_for):
    item = keep(world)
    client = client_for(world.charlie)
    url = reverse("outbox_detail", args=[world.other_unit.slug, item.code])
    assert client.get(url).status_code == 404


def test_the_test_mail_task_sends_through_the_configured_backend(world, settings):
    settings.EMAIL_BACKEND = "mlm.mail.outbox.OutboxBackend"
    send_test_mail(world.unit.pk, world.bob.pk)
    item = OutboxMessage.objects.for_unit(world.unit).get()
    assert item.recipients == world.bob.email
    assert item.subject.startswith("[TEST]")


def test_the_test_mail_is_enqueued_only_after_commit(
    world, client_for, django_capture_on_commit_callbacks
):
    client = client_for(world.bob)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client.post(reverse("outbox_send_test", args=[world.unit.slug]))
    assert len(callbacks) == 1


def test_the_html_part_opens_its_links_in_a_new_tab(world, settings, client_for):
    _sent_through_the_outbox(world, settings, "Spring news", ["ann@example.com"])
    item = OutboxMessage.objects.for_unit(world.unit).get()
    client = client_for(world.bob)
    html = client.get(reverse("outbox_html", args=[world.unit.slug, item.code])).content.decode()
    base = '<base target="_blank">'
    assert html.count(base) == 1
    assert "unsubscribe" in html and html.index(base) < html.index("<a ")
    detail = client.get(reverse("outbox_detail", args=[world.unit.slug, item.code]))
    frame = re.search(r"<iframe [^>]*>", detail.content.decode()).group(0)
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in frame


def test_the_new_tab_base_goes_after_the_doctype(world, client_for):
    item = keep(world)
    client = client_for(world.bob)
    html = client.get(reverse("outbox_html", args=[world.unit.slug, item.code])).content.decode()
    assert html.startswith('<!doctype html><base target="_blank">')


def _sent_through_the_outbox(world, settings, name: str, emails: list[str]) -> Campaign:
    """A campaign `name` sent by dispatch to `emails` through the Outbox backend."""
    settings.EMAIL_BACKEND = "mlm.mail.outbox.OutboxBackend"
    news = factories.dm_type(world.unit)
    audience = factories.recipient_list(world.unit, name=f"{name} list")
    for email in emails:
        factories.member(audience, email, granted=news)
    campaign = factories.campaign(world, name=name, lists=[audience])
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now()
    )
    campaign.refresh_from_db()
    campaign_start(campaign=campaign, by=None)
    while batch_send(campaign_id=campaign.pk).claimed:
        pass
    return campaign


def test_it_links_a_campaigns_mail_to_its_campaign(world, settings):
    campaign = _sent_through_the_outbox(world, settings, "Spring news", ["ann@example.com"])
    test = keep(world)
    item = OutboxMessage.objects.for_unit(world.unit).get(recipients="ann@example.com")
    assert item.campaign_id == campaign.pk
    assert test.campaign_id is None


def _listing(client, world, **query) -> str:
    return client.get(reverse("outbox", args=[world.unit.slug]), query).content.decode()


def _rows(page: str) -> list[str]:
    body = re.search(r"<tbody>(.*?)</tbody>", page, re.DOTALL).group(1)
    return [
        unescape(re.sub(r"<[^>]+>", " ", row))
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.DOTALL)
    ]


def test_the_list_shows_each_messages_campaign_and_the_total(world, settings, client_for):
    _sent_through_the_outbox(world, settings, "Spring news", ["ann@example.com", "ben@example.com"])
    keep(world)
    page = _listing(client_for(world.bob), world)
    assert "3 messages." in page
    rows = _rows(page)
    assert len(rows) == 3
    assert sum("Spring news" in row for row in rows) == 2


def test_it_filters_by_campaign_with_the_total_of_the_filtered_set(world, settings, client_for):
    spring = _sent_through_the_outbox(
        world, settings, "Spring news", ["ann@example.com", "ben@example.com"]
    )
    _sent_through_the_outbox(world, settings, "Open day", ["cat@example.com"])
    keep(world)
    client = client_for(world.bob)
    everything = _listing(client, world)
    options = re.search(r'<select name="campaign"[^>]*>(.*?)</select>', everything, re.DOTALL)
    assert re.findall(r"<option[^>]*>([^<]*)</option>", options.group(1)) == [
        "Any campaign",
        "Open day",
        "Spring news",
    ]
    page = _listing(client, world, campaign=str(spring.code))
    assert "2 messages match the filters." in page
    rows = _rows(page)
    assert len(rows) == 2 and all("Spring news" in row for row in rows)


def test_it_offers_only_campaigns_with_outbox_mail(world, settings, client_for):
    _sent_through_the_outbox(world, settings, "Spring news", ["ann@example.com"])
    factories.campaign(world, name="Never sent")
    page = _listing(client_for(world.bob), world)
    assert "Spring news" in page and "Never sent" not in page


def test_it_filters_by_address_ignoring_case(world, settings, client_for):
    _sent_through_the_outbox(
        world, settings, "Spring news", ["Ann.Lee@Example.com", "ben@example.com"]
    )
    page = _listing(client_for(world.bob), world, address="ann.LEE@")
    assert "1 message match the filters." in page
    rows = _rows(page)
    assert len(rows) == 1 and "ann.lee@example.com" in rows[0].lower()


def test_an_unknown_campaign_filter_is_refused_not_a_500(world, client_for):
    keep(world)
    response = client_for(world.bob).get(
        reverse("outbox", args=[world.unit.slug]), {"campaign": "not-a-code"}
    )
    assert response.status_code == 200
    assert "Correct the filters" in response.content.decode()


def test_the_campaign_filter_never_offers_another_units_campaigns(world, settings, client_for):
    """I8: the campaigns offered are the unit's own, even next to a row that names another's."""
    _sent_through_the_outbox(world, settings, "Spring news", ["ann@example.com"])
    ours = OutboxMessage.objects.for_unit(world.unit).get()
    OutboxMessage.objects.create(
        unit=world.other_unit,
        campaign=ours.campaign,
        from_email="x@example.edu",
        recipients="zed@example.com",
        subject="Alumni mail",
        raw=b"",
    )
    client = client_for(world.charlie)
    assert client.get(reverse("outbox", args=[world.unit.slug])).status_code == 404
    page = client.get(reverse("outbox", args=[world.other_unit.slug])).content.decode()
    assert "1 message." in page and "Alumni mail" in page
    assert "Spring news" not in page and "ann@example.com" not in page
    filtered = client.get(
        reverse("outbox", args=[world.other_unit.slug]), {"campaign": str(ours.campaign.code)}
    )
    assert "Correct the filters" in filtered.content.decode()
