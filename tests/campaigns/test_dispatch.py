"""Dispatch in one process: the snapshot (I1), claims and leases (I7), the re-check (I6), error
classification, recovery, pause and cancel. The real worker and sink: tests/system."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, SkipReason
from campaigns.selectors import campaign_progress
from campaigns.sending.batches import batch_claim, batch_recheck, batch_send, campaign_messages
from campaigns.sending.recovery import deliveries_recover
from campaigns.sending.start import campaign_start, campaigns_start_due, deliveries_snapshot
from campaigns.sending.transport import classify
from campaigns.services.settings import unit_settings_update
from campaigns.services.status import (
    campaign_cancel,
    campaign_pause,
    campaign_resume,
    deliveries_send_in_doubt,
)
from consent.models import Channel, SuppressionReason
from consent.services import suppress, withdraw
from recipients.models import Recipient, RecipientStatus
from tests.campaigns import factories
from tests.system.smtp_sink import SMTPSink

D = DeliveryStatus


def _scheduled(campaign: Campaign) -> Campaign:
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now() - timedelta(seconds=1)
    )
    campaign.refresh_from_db()
    return campaign


def _mixed_world(world):
    news = factories.dm_type(world.unit)
    first = factories.recipient_list(world.unit, name="Friends")
    second = factories.recipient_list(world.unit, name="Visitors")
    people = {
        name: factories.member(first, f"{name}@example.com", granted=news)
        for name in ("ok", "ok2", "withdrawn", "suppressed", "bounced", "complained")
    }
    people["none"] = factories.member(first, "none@example.com")
    factories.member(second, "ok@example.com")  # on both lists: one delivery only
    withdraw(recipient=people["withdrawn"], dm_types=[news], channel=Channel.ONE_CLICK)
    suppress(email="suppressed@example.com", unit=None, reason=SuppressionReason.HARD_BOUNCE)
    Recipient.objects.filter(pk=people["bounced"].pk).update(status=RecipientStatus.BOUNCED)
    Recipient.objects.filter(pk=people["complained"].pk).update(status=RecipientStatus.COMPLAINED)
    campaign = _scheduled(factories.campaign(world, lists=[first, second]))
    return campaign, people, news


def _rows(campaign) -> dict[str, tuple[str, str]]:
    return {
        d.recipient.email: (d.status, d.reason)
        for d in Delivery.objects.filter(campaign=campaign).select_related("recipient")
    }


def test_it_snapshots_sendable_as_queued_and_the_rest_with_reasons(
    world, django_capture_on_commit_callbacks
):
    """I1: the snapshot queues exactly `sendable` ∩ the lists; every other member is skipped
    with its reason; one row per recipient even when on two lists."""
    campaign, _, _ = _mixed_world(world)
    with django_capture_on_commit_callbacks() as callbacks:
        written = campaign_start(campaign=campaign, by=None)
    assert written == 7
    assert _rows(campaign) == {
        "ok@example.com": (D.QUEUED, ""),
        "ok2@example.com": (D.QUEUED, ""),
        "withdrawn@example.com": (D.SKIPPED, SkipReason.WITHDRAWN),
        "suppressed@example.com": (D.SKIPPED, SkipReason.SUPPRESSED),
        "bounced@example.com": (D.SKIPPED, SkipReason.BOUNCED),
        "complained@example.com": (D.SKIPPED, SkipReason.COMPLAINED),
        "none@example.com": (D.SKIPPED, SkipReason.NO_CONSENT),
    }
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING
    assert len(callbacks) == 1  # the fan-out, after commit


def test_it_writes_the_snapshot_in_one_statement(world):
    """I1: the snapshot is one INSERT … SELECT: nobody's consent changes between reading it and
    writing the rows."""
    campaign, _, _ = _mixed_world(world)
    with CaptureQueriesContext(connection) as queries:
        deliveries_snapshot(campaign=campaign)
    inserts = [q["sql"] for q in queries.captured_queries if "INSERT" in q["sql"]]
    assert len(inserts) == 1 and "SELECT" in inserts[0]


def test_it_skips_recipients_over_a_frequency_cap(world):
    """I1 with the caps: a recipient who got the unit's cap of mails this week is skipped."""
    campaign, people, _ = _mixed_world(world)
    unit_settings_update(
        unit=world.unit,
        by=world.alice,
        allow_self_approval=False,
        banned_words="",
        frequency_cap_mails=1,
        frequency_cap_days=7,
    )
    earlier = factories.campaign(world, name="Earlier")
    Delivery.objects.create(
        campaign=earlier,
        unit=world.unit,
        recipient=people["ok2"],
        email_hash=people["ok2"].email_hash,
        status=D.SENT,
        sent_at=timezone.now() - timedelta(days=1),
    )
    deliveries_snapshot(campaign=campaign)
    rows = _rows(campaign)
    assert rows["ok2@example.com"] == (D.SKIPPED, SkipReason.UNIT_CAP)
    assert rows["ok@example.com"] == (D.QUEUED, "")


def test_it_enqueues_nothing_when_the_start_rolls_back(world, django_capture_on_commit_callbacks):
    """Enqueue on commit: a start inside a transaction that rolls back leaves nothing behind."""
    from django.db import transaction

    campaign, _, _ = _mixed_world(world)
    with (
        django_capture_on_commit_callbacks(execute=False) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        campaign_start(campaign=campaign, by=None)
        raise RuntimeError("rolled back")
    assert callbacks == []
    assert not Delivery.objects.filter(campaign=campaign).exists()
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SCHEDULED


def _started(world, count: int = 5):
    news = factories.dm_type(world.unit)
    target = factories.recipient_list(world.unit, name="Batch")
    people = [
        factories.member(
            target, f"p{i}@example.com", granted=news, first_name="王", last_name="小明"
        )
        for i in range(count)
    ]
    campaign = _scheduled(factories.campaign(world, lists=[target]))
    campaign_start(campaign=campaign, by=None)
    return campaign, people, news


def test_it_claims_each_row_once_with_a_lease(world, settings):
    """I7: a claim marks rows sending with a lease and one more attempt; a second claim (a task
    delivered twice) gets other rows, never the same."""
    campaign, _, _ = _started(world, 5)
    first = batch_claim(campaign_id=campaign.pk, size=3)
    second = batch_claim(campaign_id=campaign.pk, size=3)
    assert len(first) == 3 and len(second) == 2 and not set(first) & set(second)
    assert batch_claim(campaign_id=campaign.pk, size=3) == []
    rows = Delivery.objects.filter(pk__in=first)
    assert {r.status for r in rows} == {D.SENDING}
    assert all(r.attempts == 1 and r.lease_until > timezone.now() for r in rows)


def test_it_sends_a_batch_once_even_if_the_task_runs_twice(world):
    """I7: the same batch task run again after it completed sends nothing more."""
    campaign, _, _ = _started(world, 3)
    result = batch_send(campaign_id=campaign.pk)
    assert result.sent == 3 and len(mail.outbox) == 3
    again = batch_send(campaign_id=campaign.pk)
    assert again.claimed == 0 and again.finished and len(mail.outbox) == 3
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    ids = set(Delivery.objects.filter(campaign=campaign).values_list("message_id", flat=True))
    assert ids == {mail.message().get("Message-ID") for mail in mail.outbox}


def test_it_puts_the_list_headers_on_every_mail(world):
    """I5: List-Unsubscribe (https one-click URL), List-Unsubscribe-Post, List-Id, Feedback-ID,
    Precedence; the message parses as MIME with text and HTML parts."""
    campaign, _, _ = _started(world, 1)
    batch_send(campaign_id=campaign.pk)
    raw = mail.outbox[0].message().as_bytes(linesep="\r\n")
    parsed = message_from_bytes(raw, policy=policy.default)
    row = Delivery.objects.select_related("recipient").get(campaign=campaign)
    links = campaign_messages(campaign).mailer.link_maker().links(row.recipient)
    assert parsed["List-Unsubscribe"] == f"<{links.one_click}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Id"].endswith(".engineering.engineering.example.edu>")
    assert parsed["Feedback-ID"] == f"{campaign.pk}:{world.unit.pk}:{campaign.dm_type_id}:mlm"
    assert parsed["Precedence"] == "bulk"
    assert "王" in str(parsed["To"])
    types = [part.get_content_type() for part in parsed.walk()]
    assert types == ["multipart/alternative", "text/plain", "text/html"]
    assert not parsed.defects


def test_it_skips_a_recipient_who_withdrew_after_the_snapshot(world):
    """I6: a withdrawal after the snapshot wins: the batch's re-check skips the row, reason
    withdrawn during sending, and nothing is sent to them."""
    campaign, people, news = _started(world, 3)
    withdraw(recipient=people[1], dm_types=[news], channel=Channel.ONE_CLICK)
    result = batch_send(campaign_id=campaign.pk)
    assert result.sent == 2 and result.skipped == 1
    assert [m.to for m in mail.outbox if "p1@example.com" in str(m.to)] == []
    row = Delivery.objects.get(campaign=campaign, recipient=people[1])
    assert (row.status, row.reason) == (D.SKIPPED, SkipReason.WITHDRAWN_DURING_SENDING)


def test_it_rechecks_the_batch_in_one_query(world):
    """I6: the re-check is one query on `sendable` for the whole batch."""
    campaign, _, _ = _started(world, 4)
    ids = batch_claim(campaign_id=campaign.pk)
    campaign = Campaign.objects.select_related("unit", "dm_type").get(pk=campaign.pk)
    with CaptureQueriesContext(connection) as queries:
        rows = batch_recheck(campaign=campaign, ids=ids)
    assert len(rows) == 4
    assert len(queries.captured_queries) == 2  # the claimed rows, then `sendable` for them


def test_it_sends_nothing_while_paused_and_resumes(world, django_capture_on_commit_callbacks):
    """Pause takes effect between batches: no claim while paused; resume enqueues batches."""
    campaign, _, _ = _started(world, 2)
    campaign_pause(campaign=campaign, by=world.amy)
    assert batch_send(campaign_id=campaign.pk).claimed == 0
    assert mail.outbox == []
    with django_capture_on_commit_callbacks() as callbacks:
        campaign_resume(campaign=campaign, by=world.amy)
    assert len(callbacks) == 1
    assert batch_send(campaign_id=campaign.pk).sent == 2


def test_it_skips_the_unclaimed_rows_of_a_cancelled_campaign(world):
    """Cancel: rows no batch claimed become skipped (campaign cancelled), nothing more goes."""
    campaign, _, _ = _started(world, 3)
    campaign_cancel(campaign=campaign, by=world.alice)
    assert batch_send(campaign_id=campaign.pk).claimed == 0
    assert set(_rows(campaign).values()) == {(D.SKIPPED, SkipReason.CANCELLED)}


def test_it_marks_rows_past_their_lease_in_doubt_and_never_resends_them(
    world, django_capture_on_commit_callbacks
):
    """I7: rows whose worker died (lease ran out) become in doubt and are not sent again by
    themselves; an approver may choose to send them."""
    campaign, _, _ = _started(world, 3)
    ids = batch_claim(campaign_id=campaign.pk, size=2)
    Delivery.objects.filter(pk__in=ids).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert deliveries_recover() == 2
    assert Delivery.objects.filter(campaign=campaign, status=D.IN_DOUBT).count() == 2
    batch_send(campaign_id=campaign.pk)
    assert batch_send(campaign_id=campaign.pk).finished
    assert len(mail.outbox) == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT
    with pytest.raises(PermissionDenied):
        deliveries_send_in_doubt(campaign=campaign, by=world.bob)
    assert deliveries_send_in_doubt(campaign=campaign, by=world.amy) == 2
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING
    batch_send(campaign_id=campaign.pk)
    assert len(mail.outbox) == 3


def test_it_starts_due_campaigns_also_late_ones(world):
    """Scheduled campaigns start from beat, also one whose time passed long ago (downtime)."""
    campaign, _, _ = _mixed_world(world)
    Campaign.objects.filter(pk=campaign.pk).update(scheduled_at=timezone.now() - timedelta(days=2))
    assert campaigns_start_due() == [campaign.pk]
    assert campaigns_start_due() == []
    assert Delivery.objects.filter(campaign=campaign, status=D.QUEUED).count() == 2


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (smtplib.SMTPRecipientsRefused({"a@x.org": (550, b"5.1.1 no such user")}), "permanent"),
        (smtplib.SMTPRecipientsRefused({"a@x.org": (451, b"4.7.1 try later")}), "transient"),
        (smtplib.SMTPSenderRefused(421, b"4.3.2 shutting down", "f@x.org"), "transient"),
        (smtplib.SMTPDataError(554, b"5.7.1 spam"), "permanent"),
        (smtplib.SMTPServerDisconnected("gone"), "transient"),
        (ConnectionRefusedError(111, "refused"), "transient"),
        (TimeoutError("timed out"), "transient"),
    ],
)
def test_it_classifies_send_errors(error, kind):
    """4xx, timeouts and lost connections are transient; 5xx permanent, with the reply."""
    found, reply = classify(error)
    assert found == kind
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        assert reply.startswith(str(next(iter(error.recipients.values()))[0]))


@pytest.fixture
def sink(settings, tmp_path) -> Iterator[SMTPSink]:
    found = SMTPSink(directory=tmp_path / "sink").start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = found.host, found.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    try:
        yield found
    finally:
        found.stop()


def test_it_fails_550_addresses_with_the_reply_and_sends_the_rest(world, sink):
    """A 550 for one address fails that delivery with the server's answer; the others go out
    over the same batch."""
    campaign, _, _ = _started(world, 3)
    sink.reject("p1@example.com")
    result = batch_send(campaign_id=campaign.pk)
    assert (result.sent, result.failed) == (2, 1)
    row = Delivery.objects.get(campaign=campaign, recipient__email="p1@example.com")
    assert row.status == D.FAILED and row.reply.startswith("550")
    assert sorted(sink.recipients()) == ["p0@example.com", "p2@example.com"]


def test_it_defers_on_4xx_and_fails_after_the_last_attempt(world, sink, settings):
    """Transient answers defer with backoff; past the attempt limit the row fails."""
    settings.MLM_DISPATCH_MAX_ATTEMPTS = 2
    settings.MLM_DISPATCH_RETRY_SECONDS = 0
    settings.MLM_DISPATCH_PAUSE_AFTER_FAILURES = 0
    campaign, _, _ = _started(world, 1)
    sink.transient(451, seconds=60)
    assert batch_send(campaign_id=campaign.pk).deferred == 1
    row = Delivery.objects.get(campaign=campaign)
    assert row.status == D.DEFERRED and row.reply.startswith("451") and row.attempts == 1
    batch_send(campaign_id=campaign.pk)
    row.refresh_from_db()
    assert row.status == D.FAILED and row.attempts == 2
    assert sink.messages == []


def test_it_pauses_the_campaign_after_consecutive_failures(world, sink, settings):
    """A server refusing every connection: after N failures in a row the campaign pauses
    itself, nothing is marked sent, and the rows wait without an attempt counted."""
    settings.MLM_DISPATCH_PAUSE_AFTER_FAILURES = 3
    settings.MLM_DISPATCH_RETRY_SECONDS = 0
    campaign, _, _ = _started(world, 3)
    sink.refuse_connections()
    result = batch_send(campaign_id=campaign.pk)
    assert result.paused
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    assert set(_rows(campaign).values()) == {(D.DEFERRED, "")}
    assert set(Delivery.objects.filter(campaign=campaign).values_list("attempts", flat=True)) == {0}
    sink.refuse_connections(False)
    campaign_resume(campaign=campaign, by=world.amy)
    assert batch_send(campaign_id=campaign.pk).sent == 3
    assert len(sink.messages) == 3


def test_it_shows_progress_counts(world):
    """The campaign page's progress: counts by status over all rows."""
    campaign, _, _ = _mixed_world(world)
    campaign_start(campaign=campaign, by=None)
    batch_send(campaign_id=campaign.pk)
    progress = campaign_progress(campaign)
    assert (progress.sent, progress.skipped, progress.total) == (2, 5, 7)
    assert progress.done_percent == 100.0


def _url(name, world, campaign):
    from django.urls import reverse

    return reverse(name, args=[world.unit.slug, campaign.code])


def test_the_campaign_page_shows_progress_and_approvers_pause_and_resume(world, client_for):
    """The page polls a progress fragment (HTMX, no inline script); pause and resume are POSTs
    of an approver; an editor may not."""
    campaign, _, _ = _started(world, 2)
    assert client_for(world.bob).post(_url("campaign_pause", world, campaign)).status_code == 403
    amy = client_for(world.amy)
    page = amy.get(_url("campaign_detail", world, campaign)).content.decode()
    assert 'hx-get="' + _url("campaign_progress", world, campaign) in page
    assert "<script>" not in page and "style=" not in page
    fragment = amy.get(_url("campaign_progress", world, campaign)).content.decode()
    assert 'Queued</th><td class="num">2<' in fragment
    assert amy.get(_url("campaign_pause", world, campaign)).status_code == 405
    amy.post(_url("campaign_pause", world, campaign))
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED
    amy.post(_url("campaign_resume", world, campaign))
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENDING


def test_an_approver_sends_the_in_doubt_rows_from_the_page(world, client_for):
    """I7: in-doubt rows are listed on the page; only an approver's POST queues them again."""
    campaign, _, _ = _started(world, 2)
    ids = batch_claim(campaign_id=campaign.pk, size=1)
    Delivery.objects.filter(pk__in=ids).update(lease_until=timezone.now() - timedelta(seconds=1))
    deliveries_recover()
    amy = client_for(world.amy)
    page = amy.get(_url("campaign_detail", world, campaign)).content.decode()
    assert "p0@example.com" in page and "Send the 1 in doubt again" in page
    amy.post(_url("campaign_send_in_doubt", world, campaign))
    assert Delivery.objects.get(pk=ids[0]).status == D.QUEUED


def test_header_injection_through_names_or_subjects_is_impossible(world):
    """A line break in a recipient's name or in a personalised subject cannot add a header."""
    news = factories.dm_type(world.unit)
    target = factories.recipient_list(world.unit, name="Injected")
    factories.member(
        target,
        "eve@example.com",
        granted=news,
        first_name="Eve\r\nBcc: victim@example.org",
        last_name="X\nX-Evil: 1",
    )
    campaign = factories.campaign(
        world, lists=[target], subject="Hello {{ first_name }}\r\nBcc: other@example.org"
    )
    campaign_start(campaign=_scheduled(campaign), by=None)
    assert batch_send(campaign_id=campaign.pk).sent == 1
    raw = mail.outbox[0].message().as_bytes(linesep="\r\n")
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    assert mail.outbox[0].recipients() == ["eve@example.com"]
    assert "Eve Bcc: victim@example.org" in str(parsed["To"])
