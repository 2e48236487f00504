"""The demo data of `make run`: a unit ready to send, an approver, and an empty example unit."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.urls import reverse

from campaigns.demo import DEMO_CAMPAIGN_NAME, DEMO_LAYOUT_NAME, demo_setup_campaigns
from campaigns.models import Campaign, CampaignStatus, Layout, SenderIdentity
from campaigns.selectors import audience_summary
from campaigns.services.status import campaign_approve, campaign_submit
from campaigns.starter import STARTER_LAYOUT_NAME
from mlm.models import Role, SenderUnit, SendingDomain


def test_it_makes_the_demo_campaign_once(world):
    demo_setup_campaigns(world.unit, world.alice)
    demo_setup_campaigns(world.unit, world.alice)
    campaign = Campaign.objects.for_unit(world.unit).get(name=DEMO_CAMPAIGN_NAME)
    assert campaign.status == CampaignStatus.DRAFT and campaign.layout is not None
    assert set(Layout.objects.for_unit(world.unit).values_list("name", flat=True)) == {
        DEMO_LAYOUT_NAME,
        STARTER_LAYOUT_NAME,
    }
    identity = SenderIdentity.objects.for_unit(world.unit).usable().get()
    assert SendingDomain.objects.active_for(identity.email.rpartition("@")[2]) is not None


@pytest.fixture
def demo(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("demo_setup", stdout=out)
    return out.getvalue()


def test_it_prints_and_keeps_both_demo_logins(demo, settings):
    first, second = demo.strip().splitlines()
    editor = re.search(r"user name (\S+)\s+password (\S+)", first)
    approver = re.search(r"user name (\S+)\s+password (\S+)", second)
    assert first.startswith("Demo editor") and editor.group(1) == "demo"
    assert second.startswith("Demo approver") and approver.group(1) == "approver"
    assert (settings.VAR_DIR / "demo-login.txt").read_text() == editor.group(2)
    assert (settings.VAR_DIR / "demo-approver-login.txt").read_text() == approver.group(2)
    again = StringIO()
    call_command("demo_setup", stdout=again)  # idempotent: the same logins, reused
    assert again.getvalue().count("(reused)") == 2
    assert f"password {editor.group(2)}" in again.getvalue()
    assert f"password {approver.group(2)}" in again.getvalue()


def test_the_demo_campaign_needs_the_approver_not_its_author(demo, django_user_model):
    """Maker-checker: the demo editor cannot approve the campaign it wrote; the approver can."""
    editor = django_user_model.objects.get(username="demo")
    approver = django_user_model.objects.get(username="approver")
    unit = SenderUnit.objects.get(slug="engineering")
    assert unit.memberships.get(user=approver).role == Role.APPROVER
    assert not SenderUnit.objects.get(slug="alumni").memberships.filter(user=approver).exists()
    campaign = Campaign.objects.for_unit(unit).get(name=DEMO_CAMPAIGN_NAME)
    assert campaign.created_by == editor
    assert audience_summary(campaign).sendable > 0
    campaign = campaign_submit(campaign=campaign, by=editor)  # every content check passes
    with pytest.raises(PermissionDenied, match="another approver"):
        campaign_approve(campaign=campaign, by=editor)
    campaign = campaign_approve(campaign=campaign, by=approver)
    assert campaign.status == CampaignStatus.APPROVED


def test_the_empty_example_unit_says_what_to_set_up(demo, client, django_user_model):
    client.force_login(django_user_model.objects.get(username="demo"))
    home = client.get(reverse("home")).content.decode()
    assert "Alumni Relations Office (empty example)" in home
    alumni = client.get(reverse("dashboard", args=["alumni"])).content.decode()
    assert "Getting started" in alumni
    assert reverse("identity_request", args=["alumni"]) in alumni
    assert reverse("dm_type_create", args=["alumni"]) in alumni
    engineering = client.get(reverse("dashboard", args=["engineering"])).content.decode()
    assert "Getting started" not in engineering
