"""The demo data of `make run`: a layout and a draft of the demo newsletter, made once."""

from campaigns.demo import DEMO_CAMPAIGN_NAME, demo_setup_campaigns
from campaigns.models import Campaign, CampaignStatus, Layout, SenderIdentity


def test_it_makes_the_demo_campaign_once(world):
    demo_setup_campaigns(world.unit, world.alice)
    demo_setup_campaigns(world.unit, world.alice)
    campaign = Campaign.objects.for_unit(world.unit).get(name=DEMO_CAMPAIGN_NAME)
    assert campaign.status == CampaignStatus.DRAFT and campaign.layout is not None
    assert Layout.objects.for_unit(world.unit).count() == 1
    assert SenderIdentity.objects.for_unit(world.unit).count() == 1
