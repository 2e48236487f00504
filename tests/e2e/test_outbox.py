"""The Outbox in a real browser: a kept mail's links open in a new tab, where the public pages
(which refuse to be framed) work as they do for a recipient (I5)."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.models import Campaign, CampaignStatus
from campaigns.sending.batches import batch_send
from campaigns.sending.start import campaign_start
from mlm.models import OutboxMessage
from tests.campaigns import factories
from tests.e2e.conftest import log_in
from tests.personas import PASSWORD, make_world


@pytest.fixture
def kept_mail(transactional_db, settings, live_server) -> OutboxMessage:
    """The demo newsletter sent to Ann through the Outbox, its links on the live server."""
    settings.EMAIL_BACKEND = "mlm.mail.outbox.OutboxBackend"
    settings.SITE_URL = live_server.url
    world = make_world()
    news = factories.dm_type(world.unit)
    friends = factories.recipient_list(world.unit)
    factories.member(friends, "ann@example.com", first_name="Ann", granted=news)
    campaign = factories.campaign(world, lists=[friends])
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now()
    )
    campaign.refresh_from_db()
    campaign_start(campaign=campaign, by=None)
    assert batch_send(campaign_id=campaign.pk).sent == 1
    return OutboxMessage.objects.get(recipients="ann@example.com")


def test_the_unsubscribe_link_of_a_kept_mail_opens_the_public_page_in_a_new_tab(
    page, kept_mail, tmp_path
):
    """I5: the link a recipient would follow works from the Outbox, in its own tab."""
    log_in(page, "bob", PASSWORD)
    page.goto(f"/units/engineering/outbox/{kept_mail.code}/")
    frame = page.frame_locator("iframe.mail-preview")
    link = frame.get_by_role("link", name="unsubscribe", exact=True)
    expect(link).to_be_visible()
    with page.expect_popup() as popup_info:
        link.click()
    tab = popup_info.value
    tab.wait_for_load_state()
    assert "/u/" in tab.url
    expect(tab.get_by_role("heading", name="Unsubscribe")).to_be_visible()
    expect(tab.get_by_role("button", name="Unsubscribe from Newsletter")).to_be_visible()
    tab.screenshot(path=tmp_path / "unsubscribe-from-outbox.png", full_page=True)
    # The Outbox page itself stays where it was.
    assert page.url.endswith(f"/outbox/{kept_mail.code}/")
