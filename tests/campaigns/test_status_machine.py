"""The campaign status machine: every allowed and every forbidden transition, each audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus
from campaigns.services.authoring import campaign_update
from campaigns.services.settings import unit_settings_update
from campaigns.services.status import (
    TRANSITIONS,
    TransitionError,
    campaign_approve,
    campaign_cancel,
    campaign_mark_sent,
    campaign_mark_started,
    campaign_pause,
    campaign_reject,
    campaign_resume,
    campaign_schedule,
    campaign_submit,
    campaign_transition,
)
from mlm.models import AuditEntry
from recipients.models import Audience
from tests.campaigns import factories

ALL = list(CampaignStatus)
PAIRS = [(action, status) for action in TRANSITIONS for status in ALL]


def _at(campaign: Campaign, status: str) -> Campaign:
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    campaign.refresh_from_db()
    return campaign


@pytest.mark.parametrize(("action", "status"), PAIRS, ids=[f"{a}-from-{s}" for a, s in PAIRS])
def test_it_allows_exactly_the_transitions_of_the_table(world, action, status):
    """Every (action, status) pair: allowed ones move and write one audit entry, forbidden ones
    change nothing and write nothing."""
    campaign = _at(factories.campaign(world), status)
    transition = TRANSITIONS[action]
    before = AuditEntry.objects.filter(verb=f"campaign.{action}").count()
    if status in transition.sources:
        moved = campaign_transition(campaign=campaign, action=action, by=world.alice)
        assert moved.status == transition.target
        entry = AuditEntry.objects.filter(verb=f"campaign.{action}").first()
        assert AuditEntry.objects.filter(verb=f"campaign.{action}").count() == before + 1
        assert entry.object_id == str(campaign.code)
        assert entry.data["from"] == status and entry.data["to"] == transition.target
        assert entry.actor == world.alice
    else:
        with pytest.raises(TransitionError, match="cannot be"):
            campaign_transition(campaign=campaign, action=action, by=world.alice)
        campaign.refresh_from_db()
        assert campaign.status == status
        assert AuditEntry.objects.filter(verb=f"campaign.{action}").count() == before


def test_the_table_covers_the_issue_s_machine():
    S = CampaignStatus
    assert TRANSITIONS["submit"].sources == {S.DRAFT} and TRANSITIONS["submit"].target == S.PENDING
    assert TRANSITIONS["approve"].target == S.APPROVED
    assert TRANSITIONS["schedule"].target == S.SCHEDULED
    assert TRANSITIONS["start"].sources == {S.SCHEDULED}
    assert TRANSITIONS["pause"].target == S.PAUSED and TRANSITIONS["finish"].target == S.SENT
    assert S.SENT not in TRANSITIONS["cancel"].sources
    assert S.CANCELLED not in TRANSITIONS["cancel"].sources


def test_it_refuses_a_second_approval_of_the_same_campaign(world):
    """A conditional update: the one who comes second is told, nothing is written twice."""
    campaign = campaign_submit(campaign=factories.campaign(world), by=world.bob)
    stale = Campaign.objects.get(pk=campaign.pk)
    campaign_approve(campaign=campaign, by=world.amy)
    with pytest.raises(TransitionError, match="approved"):
        campaign_approve(campaign=stale, by=world.alice)
    assert AuditEntry.objects.filter(verb="campaign.approve").count() == 1


def test_it_walks_the_whole_journey_through_the_services(world):
    campaign = factories.campaign(world)
    assert campaign.status == CampaignStatus.DRAFT and campaign.created_by == world.bob
    campaign = campaign_submit(campaign=campaign, by=world.bob)
    assert campaign.status == CampaignStatus.PENDING and campaign.submitted_by == world.bob
    campaign = campaign_approve(campaign=campaign, by=world.amy, comment="Fine.")
    assert campaign.status == CampaignStatus.APPROVED and campaign.approved_by == world.amy
    when = timezone.now() + timedelta(days=1)
    campaign = campaign_schedule(campaign=campaign, by=world.bob, when=when)
    assert campaign.status == CampaignStatus.SCHEDULED and campaign.scheduled_at == when
    with pytest.raises(TransitionError):  # not yet due
        campaign_mark_started(campaign=campaign)
    Campaign.objects.filter(pk=campaign.pk).update(scheduled_at=timezone.now())
    campaign = campaign_mark_started(campaign=campaign)
    assert campaign.status == CampaignStatus.SENDING and campaign.started_at
    campaign = campaign_pause(campaign=campaign, reason="complaints")
    campaign = campaign_resume(campaign=campaign)
    campaign = campaign_mark_sent(campaign=campaign)
    assert campaign.status == CampaignStatus.SENT and campaign.finished_at
    verbs = list(
        AuditEntry.objects.filter(object_id=str(campaign.code))
        .order_by("id")
        .values_list("verb", flat=True)
    )
    assert verbs == [
        "campaign.create",
        "campaign.submit",
        "campaign.approve",
        "campaign.schedule",
        "campaign.start",
        "campaign.pause",
        "campaign.resume",
        "campaign.finish",
    ]


def test_it_sends_now_by_scheduling_for_the_present(world):
    campaign = campaign_submit(campaign=factories.campaign(world), by=world.bob)
    campaign = campaign_approve(campaign=campaign, by=world.amy)
    campaign = campaign_schedule(campaign=campaign, by=world.bob, when=None)
    assert campaign.scheduled_at <= timezone.now()
    assert campaign_mark_started(campaign=campaign).status == CampaignStatus.SENDING


def test_it_refuses_a_time_in_the_past(world):
    campaign = campaign_submit(campaign=factories.campaign(world), by=world.bob)
    campaign = campaign_approve(campaign=campaign, by=world.amy)
    with pytest.raises(ValidationError, match="passed"):
        campaign_schedule(campaign=campaign, by=world.bob, when=timezone.now() - timedelta(hours=1))


def test_it_cancels_before_it_starts(world):
    campaign = campaign_submit(campaign=factories.campaign(world), by=world.bob)
    campaign = campaign_approve(campaign=campaign, by=world.amy)
    campaign = campaign_schedule(
        campaign=campaign, by=world.bob, when=timezone.now() + timedelta(hours=2)
    )
    campaign = campaign_cancel(campaign=campaign, by=world.bob)
    assert campaign.status == CampaignStatus.CANCELLED and campaign.cancelled_by == world.bob
    with pytest.raises(TransitionError):
        campaign_mark_started(campaign=campaign)


def test_an_author_cannot_approve_their_own_campaign(world):
    campaign = factories.campaign(world, by=world.amy)
    campaign = campaign_submit(campaign=campaign, by=world.amy)
    with pytest.raises(PermissionDenied, match="another approver"):
        campaign_approve(campaign=campaign, by=world.amy)
    assert campaign_approve(campaign=campaign, by=world.alice).status == "approved"


def test_a_unit_setting_allows_self_approval(world):
    unit_settings_update(
        unit=world.unit,
        allow_self_approval=True,
        frequency_cap_mails=0,
        frequency_cap_days=7,
        banned_words="",
        by=world.alice,
    )
    campaign = campaign_submit(campaign=factories.campaign(world, by=world.amy), by=world.amy)
    assert campaign_approve(campaign=campaign, by=world.amy).status == "approved"


def test_an_editor_cannot_approve(world):
    campaign = campaign_submit(campaign=factories.campaign(world, by=world.alice), by=world.alice)
    with pytest.raises(PermissionDenied):
        campaign_approve(campaign=campaign, by=world.bob)


def test_a_rejection_needs_a_comment_and_returns_to_draft(world):
    campaign = campaign_submit(campaign=factories.campaign(world), by=world.bob)
    with pytest.raises(ValidationError, match="Say what needs to change"):
        campaign_reject(campaign=campaign, by=world.amy, comment=" ")
    campaign = campaign_reject(campaign=campaign, by=world.amy, comment="Shorter, please.")
    assert campaign.status == CampaignStatus.DRAFT
    assert campaign.review_comment == "Shorter, please."


def _edit(campaign: Campaign, by, **changes) -> Campaign:
    values = {
        "name": campaign.name,
        "dm_type": campaign.dm_type,
        "audience": campaign.audience,
        "lists": list(campaign.lists.all()),
        "identity": campaign.identity,
        "subject": campaign.subject,
        "html_body": campaign.html_body,
        "text_body": campaign.text_body,
        "layout": campaign.layout,
        "reply_to": campaign.reply_to,
    }
    values.update(changes)
    return campaign_update(campaign=campaign, by=by, **values)


@pytest.mark.parametrize("status", ["pending", "approved", "scheduled"])
def test_editing_a_campaign_past_draft_sends_it_back_to_draft(world, status):
    campaign = campaign_submit(campaign=factories.campaign(world), by=world.bob)
    if status in ("approved", "scheduled"):
        campaign = campaign_approve(campaign=campaign, by=world.amy)
    if status == "scheduled":
        campaign = campaign_schedule(campaign=campaign, by=world.bob)
    assert campaign.status == status
    revision = campaign.revision
    edited = _edit(campaign, world.bob, name="Spring news (corrected)")
    assert edited.status == CampaignStatus.DRAFT
    assert edited.approved_by is None and edited.scheduled_at is None
    assert edited.revision == revision + 1
    assert AuditEntry.objects.filter(verb="campaign.reopen", object_id=str(campaign.code)).exists()


def test_an_approval_of_an_older_revision_is_refused(world):
    """The approver signs off the revision they saw, not one edited meanwhile."""
    campaign = campaign_submit(campaign=factories.campaign(world), by=world.bob)
    seen = Campaign.objects.get(pk=campaign.pk)
    edited = _edit(campaign, world.bob, name="Changed")
    campaign_submit(campaign=edited, by=world.bob)
    with pytest.raises(TransitionError, match="changed while you looked"):
        campaign_approve(campaign=seen, by=world.amy)


def test_a_sending_campaign_cannot_be_edited(world):
    campaign = factories.campaign(world)
    campaign = _at(campaign, CampaignStatus.SENDING)
    with pytest.raises(TransitionError, match="can no longer be edited"):
        _edit(campaign, world.bob, name="Too late")


def test_a_campaign_cannot_target_a_list_of_the_other_audience(world):
    """I3: an external campaign refuses an internal list, and the reverse."""
    internal = factories.recipient_list(world.unit, Audience.INTERNAL)
    with pytest.raises(ValidationError, match="of its own audience only"):
        factories.campaign(world, lists=[internal])
    external = factories.recipient_list(world.unit, Audience.EXTERNAL)
    with pytest.raises(ValidationError, match="of its own audience only"):
        factories.campaign(world, audience=Audience.INTERNAL, lists=[external, internal])
    campaign = factories.campaign(world, audience=Audience.INTERNAL, lists=[internal])
    with pytest.raises(ValidationError, match="of its own audience only"):
        _edit(campaign, world.bob, lists=[internal, external])
    assert list(campaign.lists.all()) == [internal]


def test_a_campaign_cannot_use_another_unit_s_list_or_identity(world):
    """I8 in the services too: objects of another unit are refused."""
    foreign = factories.recipient_list(world.other_unit)
    with pytest.raises(ValidationError, match="another unit"):
        factories.campaign(world, lists=[foreign])
    with pytest.raises(ValidationError, match="another unit"):
        factories.campaign(world, identity=factories.identity(world.other_unit))
