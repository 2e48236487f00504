"""The demo data of `make run`: a layout and a draft of the demo newsletter, made once."""

from campaigns.demo import DEMO_CAMPAIGN_NAME, demo_setup_campaigns
from campaigns.models import Campaign, CampaignStatus, Layout, SenderIdentity
from campaigns.starter import STARTER_LAYOUT_NAME


def test_it_makes_the_demo_campaign_once(world):
    demo_setup_campaigns(world.unit, world.alice)
    demo_setup_campaigns(world.unit, world.alice)
    campaign = Campaign.objects.for_unit(world.unit).get(name=DEMO_CAMPAIGN_NAME)
    assert campaign.status == CampaignStatus.DRAFT and campaign.layout is not None
    assert set(Layout.objects.for_unit(world.unit).values_list("name", flat=True)) == {
        "Faculty newsletter",
        STARTER_LAYOUT_NAME,
    }
    assert SenderIdentity.objects.for_unit(world.unit).count() == 1
