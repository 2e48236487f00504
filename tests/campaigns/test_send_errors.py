"""No silent failure (I10): a campaign whose start or batches keep failing says so, with the
error, the attempt and the next one, on its page and on the unit dashboard; once retries are
exhausted it shows that sending failed; the record goes as soon as sending goes forward."""

from __future__ import annotations

import json
import smtplib
import socket
from datetime import timedelta

import pytest
import redis
from django.db import OperationalError, connection
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from campaigns.services.status import campaign_record_send_error, send_error_text
from campaigns.tasks import campaign_start, campaigns_start_due, send_batch
from tests.campaigns import factories

TIMEOUT = "canceling statement due to statement timeout"


def _fail_snapshots(only_campaign: int | None = None) -> None:
    """The database refuses to write a snapshot (of one campaign, or of any), as a statement
    timeout would (SQLSTATE 57014); the trigger lives in the test's transaction."""
    when = "" if only_campaign is None else f"WHEN (NEW.campaign_id = {int(only_campaign)})"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            CREATE OR REPLACE FUNCTION test_fail_snapshot() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION '{TIMEOUT}' USING ERRCODE = '57014'; END $$;
            CREATE TRIGGER test_fail_snapshot BEFORE INSERT ON campaigns_delivery
            FOR EACH ROW {when} EXECUTE FUNCTION test_fail_snapshot();
            """
        )


@pytest.fixture
def failing_snapshot(db):
    _fail_snapshots()
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS test_fail_snapshot ON campaigns_delivery")


def _scheduled_now(world, emails=("ann@example.com",), name="Spring news") -> Campaign:
    """A campaign sent "now" to `emails` (all consenting), waiting for its start task."""
    news = factories.dm_type(world.unit)
    audience = factories.recipient_list(world.unit)
    for email in emails:
        factories.member(audience, email, granted=news)
    campaign = factories.campaign(world, lists=[audience], name=name)
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now()
    )
    return campaign


def _pages(client, world, campaign) -> tuple[str, str]:
    detail = client.get(reverse("campaign_detail", args=[world.unit.slug, campaign.code]))
    dashboard = client.get(reverse("dashboard", args=[world.unit.slug]))
    assert detail.status_code == dashboard.status_code == 200
    return detail.content.decode(), dashboard.content.decode()


def test_it_shows_a_failing_start_with_its_error_and_next_attempt(
    world, client_for, failing_snapshot
):
    """I10: the start task fails at the database; the campaign is no silent "Scheduled"."""
    campaign = _scheduled_now(world)
    with pytest.raises(OperationalError):
        campaign_start(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SCHEDULED
    assert campaign.send_error == f"OperationalError: {TIMEOUT}"
    assert campaign.send_error_attempts == 1
    assert campaign.send_error_next_at > campaign.send_error_at
    assert not campaign.send_gave_up
    next_at = timezone.localtime(campaign.send_error_next_at, world.unit.tzinfo)
    detail, dashboard = _pages(client_for(world.vic), world, campaign)
    assert "Sending is failing" in detail
    assert f"OperationalError: {TIMEOUT}" in detail
    assert "Attempt 1 failed" in detail
    assert f'next attempt at <time datetime="{next_at:%Y-%m-%dT%H:%M:%S}' in detail
    assert "Sending problems" in dashboard
    assert "Spring news" in dashboard and "sending is failing, attempt 1" in dashboard
    assert f"OperationalError: {TIMEOUT}" in dashboard


def test_it_shows_that_sending_failed_once_retries_are_exhausted(
    world, client_for, failing_snapshot
):
    """I10: after the last retry the page says sending failed and that nothing more is tried."""
    campaign = _scheduled_now(world)
    result = campaign_start.apply(args=(campaign.pk,))
    assert result.failed()
    campaign.refresh_from_db()
    attempts = campaign_start.max_retries + 1
    assert campaign.send_error_attempts == attempts
    assert campaign.send_gave_up and campaign.send_error_next_at is None
    detail, dashboard = _pages(client_for(world.vic), world, campaign)
    assert "Sending failed" in detail and f"OperationalError: {TIMEOUT}" in detail
    assert f"{attempts} attempts failed in a row" in detail
    assert "no further attempt is planned" in detail
    assert f"sending failed after {attempts} attempts" in dashboard


def test_it_forgets_the_error_once_the_start_succeeds(
    world, client_for, failing_snapshot, django_capture_on_commit_callbacks
):
    """I10: the record says what is wrong now, not what was."""
    campaign = _scheduled_now(world)
    with pytest.raises(OperationalError):
        campaign_start(campaign.pk)
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_fail_snapshot ON campaigns_delivery")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        campaign_start(campaign.pk)
    assert callbacks  # the first batches, on commit
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING
    assert (campaign.send_error, campaign.send_error_at, campaign.send_error_attempts) == (
        "",
        None,
        0,
    )
    detail, dashboard = _pages(client_for(world.vic), world, campaign)
    assert "Sending is failing" not in detail and "Sending problems" not in dashboard


def test_the_sweep_shows_a_campaign_it_cannot_start_and_starts_the_others(
    world, client_for, settings, django_capture_on_commit_callbacks
):
    """I10: beat's sweep writes the failing campaign's error and next sweep on its page, and
    one campaign that fails does not hold back the others."""
    failing = _scheduled_now(world, name="Failing news")
    healthy = _scheduled_now(world, name="Healthy news")
    _fail_snapshots(only_campaign=failing.pk)
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=False):
        started = campaigns_start_due()
    assert started == [healthy.pk]
    failing.refresh_from_db()
    healthy.refresh_from_db()
    assert healthy.status == CampaignStatus.SENDING and healthy.send_error == ""
    assert failing.status == CampaignStatus.SCHEDULED
    assert failing.send_error == f"OperationalError: {TIMEOUT}"
    assert failing.send_error_attempts == 1
    sweep = timedelta(seconds=settings.MLM_DISPATCH_SWEEP_SECONDS)
    assert before + sweep <= failing.send_error_next_at <= timezone.now() + sweep
    with django_capture_on_commit_callbacks(execute=False):
        assert campaigns_start_due() == []
    failing.refresh_from_db()
    assert failing.send_error_attempts == 2
    detail, dashboard = _pages(client_for(world.vic), world, failing)
    assert "Sending is failing" in detail and "Attempt 2 failed" in detail
    assert "Failing news" in dashboard and "Healthy news" not in dashboard


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _enqueued_batches(settings) -> list[list]:
    """The send_batch tasks waiting in the broker's default queue; the queue is emptied (an
    earlier test may have left other tasks there)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    found = []
    while (raw := client.rpop("celery")) is not None:
        message = json.loads(raw)
        if message["headers"]["task"] == "campaigns.tasks.send_batch":
            found.append(message["headers"]["argsrepr"])
    return found


def test_it_shows_batches_the_mail_server_keeps_deferring(
    world, client_for, settings, django_capture_on_commit_callbacks
):
    """I10: every batch is deferred (nobody answers on the SMTP port): the page says so and
    when the deferred mail is tried again; the first mail that goes out clears it."""
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    _enqueued_batches(settings)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", _closed_port()
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.MLM_DISPATCH_DOMAIN_CONCURRENCY = 0
    campaign = _scheduled_now(world, ("ann@example.com", "ben@example.com"))
    with django_capture_on_commit_callbacks(execute=False):
        campaign_start(campaign.pk)
    send_batch(campaign.pk)
    assert _enqueued_batches(settings) == [f"({campaign.pk},)"]
    campaign.refresh_from_db()
    assert campaign.send_error.startswith("ConnectionRefusedError")
    assert campaign.send_error_attempts == 1
    due = Delivery.objects.filter(campaign=campaign).values_list("next_attempt_at", flat=True)
    assert campaign.send_error_next_at == min(due)
    Delivery.objects.filter(campaign=campaign).update(next_attempt_at=timezone.now())
    send_batch(campaign.pk)
    _enqueued_batches(settings)
    campaign.refresh_from_db()
    assert campaign.send_error_attempts == 2
    detail, dashboard = _pages(client_for(world.vic), world, campaign)
    assert "Sending is failing" in detail and "ConnectionRefusedError" in detail
    assert "Attempt 2 failed" in detail and "next attempt at" in detail
    assert "sending is failing, attempt 2" in dashboard

    settings.EMAIL_BACKEND = "mlm.mail.outbox.OutboxBackend"
    Delivery.objects.filter(campaign=campaign).update(next_attempt_at=timezone.now())
    send_batch(campaign.pk)
    _enqueued_batches(settings)
    campaign.refresh_from_db()
    assert campaign.send_error == "" and campaign.send_error_attempts == 0
    assert Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.SENT).count() == 2


def test_a_campaign_paused_by_its_failures_says_nothing_more_is_tried(
    world, client_for, settings, django_capture_on_commit_callbacks
):
    """I10: when the failures pause the campaign, the page shows the error and no next attempt."""
    _enqueued_batches(settings)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", _closed_port()
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.MLM_DISPATCH_DOMAIN_CONCURRENCY = 0
    settings.MLM_DISPATCH_PAUSE_AFTER_FAILURES = 2
    campaign = _scheduled_now(world, ("ann@example.com", "ben@example.com"))
    with django_capture_on_commit_callbacks(execute=False):
        campaign_start(campaign.pk)
    send_batch(campaign.pk)
    _enqueued_batches(settings)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    assert campaign.send_gave_up and campaign.send_error.startswith("ConnectionRefusedError")
    detail, dashboard = _pages(client_for(world.vic), world, campaign)
    assert "Sending failed" in detail and "no further attempt is planned" in detail
    assert "sending failed after 1 attempt," in dashboard


def test_an_old_error_is_not_shown_once_the_campaign_is_cancelled(world, client_for):
    """I10: the page says what is wrong now; a cancelled campaign is not failing."""
    campaign = _scheduled_now(world)
    campaign_record_send_error(
        campaign_id=campaign.pk, error="OperationalError: gone", attempt=2, next_attempt_at=None
    )
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.CANCELLED)
    detail, dashboard = _pages(client_for(world.vic), world, campaign)
    assert "OperationalError" not in detail and "Sending problems" not in dashboard


def test_the_error_kept_names_no_address(world):
    """I9, I10: a server's answer that names a recipient is kept without the address."""
    campaign = factories.campaign(world)
    refused = smtplib.SMTPRecipientsRefused(
        {"Ann.Lee@example.com": (450, b"4.2.0 <Ann.Lee@example.com>: mailbox busy")}
    )
    campaign_record_send_error(
        campaign_id=campaign.pk, error=refused, attempt=3, next_attempt_at=None
    )
    campaign.refresh_from_db()
    assert "example.com" not in campaign.send_error.lower()
    assert campaign.send_error.startswith("SMTPRecipientsRefused: ")
    assert "<address>" in campaign.send_error
    assert send_error_text("first line\nDETAIL: Key (email)=(x@y.org)") == "first line"
