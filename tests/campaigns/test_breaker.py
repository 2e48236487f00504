"""The circuit breaker: a sending campaign pauses itself when its complaint or hard-bounce rate
passes its unit's limit after 1,000 attempts — not before — says why, and tells the unit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from campaigns.feedback import Feedback, feedback_record
from campaigns.models import (
    BREAKER_MIN_ATTEMPTS,
    BounceKind,
    CampaignStatus,
    DeliveryStatus,
    EventKind,
    UnitCampaignSettings,
)
from campaigns.services.settings import unit_settings_update
from campaigns.services.status import campaign_pause, campaign_resume
from campaigns.tasks import mail_breaker_pause
from mlm.models import AuditEntry
from tests.campaigns.sending import many_recipients, sending_campaign, sent_to


def complaints(deliveries, source: str = "amazon_ses") -> list[Feedback]:
    return [
        Feedback(
            source=source,
            event_key=f"complaint-{d.pk}",
            kind=EventKind.COMPLAINED,
            occurred_at=d.sent_at,
            delivery_ref=str(d.pk),
        )
        for d in deliveries
    ]


def hard_bounces(deliveries) -> list[Feedback]:
    return [
        Feedback(
            source="sendgrid",
            event_key=f"bounce-{d.pk}",
            kind=EventKind.BOUNCED,
            bounce_kind=BounceKind.HARD,
            occurred_at=d.sent_at,
            delivery_ref=str(d.pk),
        )
        for d in deliveries
    ]


@pytest.fixture
def big(world):
    """A sending campaign with exactly 1,000 attempts (990 sent, 5 failed, 5 deferred)."""
    campaign = sending_campaign(world)
    people = many_recipients(world, BREAKER_MIN_ATTEMPTS + 20)
    deliveries = sent_to(campaign, people[:990])
    deliveries += sent_to(campaign, people[990:995], status=DeliveryStatus.FAILED)
    deliveries += sent_to(campaign, people[995:1000], status=DeliveryStatus.DEFERRED)
    queued = sent_to(campaign, people[1000:], status=DeliveryStatus.QUEUED)
    return campaign, deliveries, queued


def _status(campaign) -> str:
    campaign.refresh_from_db()
    return campaign.status


def test_it_does_not_judge_before_a_thousand_attempts(world):
    """Under BREAKER_MIN_ATTEMPTS attempts even a 2% complaint rate does not pause: a few
    events would swing the rate. Queued and skipped deliveries are not attempts."""
    campaign = sending_campaign(world)
    people = many_recipients(world, 1200)
    attempted = sent_to(campaign, people[: BREAKER_MIN_ATTEMPTS - 1])
    sent_to(campaign, people[BREAKER_MIN_ATTEMPTS - 1 :], status=DeliveryStatus.QUEUED)
    feedback_record(complaints(attempted[:20]))
    assert _status(campaign) == CampaignStatus.SENDING


def test_it_pauses_when_complaints_pass_the_limit(big, world, django_capture_on_commit_callbacks):
    """At 1,000 attempts, 3 complaints (0.3%) is the limit itself; the 4th passes it: the
    campaign pauses, with the figures on the campaign and in the audit log, and the unit's
    administrators are mailed after commit. The rest of the campaign is not sent (I6)."""
    campaign, deliveries, _ = big
    feedback_record(complaints(deliveries[:3]))
    assert _status(campaign) == CampaignStatus.SENDING
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = feedback_record(complaints(deliveries[3:4]))
    assert result.paused == (campaign.pk,)
    assert _status(campaign) == CampaignStatus.PAUSED
    assert campaign.pause_reason.startswith("The circuit breaker paused this campaign: 4 ")
    assert "4 complaints in 1,000 attempts" in campaign.pause_reason
    assert "0.400%" in campaign.pause_reason and "0.3%" in campaign.pause_reason
    entry = AuditEntry.objects.get(verb="campaign.pause")
    assert entry.data["reason"] == campaign.pause_reason and entry.actor_label == "system"
    assert len(callbacks) == 1
    mail_breaker_pause(campaign.pk)
    (message,) = mail.outbox
    assert message.to == [world.alice.email]  # the unit's administrators
    assert "paused itself" in message.subject
    assert campaign.pause_reason in message.body
    path = reverse("campaign_detail", args=[world.unit.slug, campaign.code])
    assert path in message.body


def test_a_complaint_reported_twice_counts_once(big):
    """Distinct deliveries: two providers (or a provider twice) reporting the same complaint
    is one complaint."""
    campaign, deliveries, _ = big
    feedback_record(complaints(deliveries[:3]) + complaints(deliveries[:3], source="dsn"))
    assert _status(campaign) == CampaignStatus.SENDING


def test_it_pauses_when_hard_bounces_pass_the_limit(big):
    campaign, deliveries, _ = big
    feedback_record(hard_bounces(deliveries[:50]))  # 5.0%: the limit itself
    assert _status(campaign) == CampaignStatus.SENDING
    feedback_record(hard_bounces(deliveries[50:51]))
    assert _status(campaign) == CampaignStatus.PAUSED
    assert "51 hard bounces in 1,000 attempts: a hard-bounce rate of 5.100%" in (
        campaign.pause_reason
    )


def test_a_unit_may_lower_its_limit(big, world):
    campaign, deliveries, _ = big
    unit_settings_update(
        unit=world.unit,
        by=world.alice,
        allow_self_approval=False,
        frequency_cap_mails=0,
        frequency_cap_days=7,
        banned_words="",
        complaint_rate_limit=Decimal("0.1"),
    )
    feedback_record(complaints(deliveries[:2]))
    assert _status(campaign) == CampaignStatus.PAUSED
    assert "above the unit's limit of 0.1%" in campaign.pause_reason


@pytest.mark.parametrize(
    ("field", "value"),
    [("complaint_rate_limit", "0.301"), ("hard_bounce_rate_limit", "5.5")],
)
def test_a_unit_may_not_raise_its_limit(world, field, value):
    with pytest.raises(ValidationError, match="never later"):
        unit_settings_update(
            unit=world.unit,
            by=world.alice,
            allow_self_approval=False,
            frequency_cap_mails=0,
            frequency_cap_days=7,
            banned_words="",
            **{field: Decimal(value)},
        )
    assert not UnitCampaignSettings.objects.exists()


def test_the_settings_page_sets_the_limits(world, client_for):
    alice = client_for(world.alice)
    url = reverse("campaign_settings", args=[world.unit.slug])
    form = {
        "frequency_cap_mails": "0",
        "frequency_cap_days": "7",
        "banned_words": "",
        "complaint_rate_limit": "0.2",
        "hard_bounce_rate_limit": "6",
    }
    refused = alice.post(url, form)
    assert refused.status_code == 200
    assert "between 0.001% and 5%: 6% is refused" in refused.content.decode()
    assert alice.post(url, {**form, "hard_bounce_rate_limit": "2.5"}).status_code == 302
    row = UnitCampaignSettings.objects.get(unit=world.unit)
    assert (row.complaint_rate_limit, row.hard_bounce_rate_limit) == (
        Decimal("0.200"),
        Decimal("2.500"),
    )
    assert 'value="0.200"' in alice.get(url).content.decode()


def test_only_a_sending_campaign_is_paused(big, world):
    campaign, deliveries, _ = big
    campaign_pause(campaign=campaign, by=world.amy)
    feedback_record(complaints(deliveries[:10]))
    campaign.refresh_from_db()
    assert campaign.pause_reason == ""  # paused by a person, and left so


def test_resuming_a_breaker_pause_needs_an_approver(big, world, client_for):
    """The banner on the campaign page says why; an editor may not resume, an approver may,
    which clears the reason."""
    campaign, deliveries, _ = big
    feedback_record(complaints(deliveries[:4]))
    page = client_for(world.bob).get(
        reverse("campaign_detail", args=[world.unit.slug, campaign.code])
    )
    assert "Paused by the system." in page.content.decode()
    assert "4 complaints in 1,000 attempts" in page.content.decode()
    with pytest.raises(PermissionDenied, match="approver"):
        campaign_resume(campaign=campaign, by=world.bob)
    campaign_resume(campaign=campaign, by=world.amy)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_reason) == (CampaignStatus.SENDING, "")


def test_a_person_pause_is_resumed_by_an_editor_as_before(big, world):
    campaign, _, _ = big
    campaign_pause(campaign=campaign, by=world.bob)
    campaign_resume(campaign=campaign, by=world.bob)
    assert _status(campaign) == CampaignStatus.SENDING
