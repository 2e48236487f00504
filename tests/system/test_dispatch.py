"""Dispatch end to end: real `celery worker` processes on Redis, PostgreSQL, and a real SMTP sink on
loopback (tests/system/smtp_sink.py) that records every message and fails on demand."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, SkipReason
from campaigns.sending.recovery import deliveries_recover
from campaigns.sending.start import campaign_start
from campaigns.tasks import send_batch
from consent.models import Channel
from consent.services import withdraw
from recipients.addresses import address_hash
from recipients.models import Audience, Category, ListMembership, Recipient, RecipientStatus
from tests.campaigns import factories
from tests.personas import make_world
from tests.processes import wait_for
from tests.system.conftest import BATCH, LEASE, Workers
from tests.system.smtp_sink import SMTPSink

D = DeliveryStatus


@pytest.fixture
def world(transactional_db, flushed_broker):
    return make_world()


def _internal_campaign(world, count: int, *, prefix: str = "r") -> Campaign:
    """`count` staff on an internal list, a DM type internal recipients get by default: all
    sendable without an event each (so thousands are made in two statements)."""
    news = factories.dm_type(world.unit, key="events", internal_default=True)
    target = factories.recipient_list(world.unit, audience=Audience.INTERNAL, name="Staff")
    people = Recipient.objects.bulk_create(
        Recipient(
            unit=world.unit,
            email=f"{prefix}{i:05d}@example.edu",
            email_hash=address_hash(f"{prefix}{i:05d}@example.edu"),
            category=Category.STAFF,
            first_name="陳",
            last_name=f"{i}",
        )
        for i in range(count)
    )
    ListMembership.objects.bulk_create(
        ListMembership(recipient_list=target, recipient=person) for person in people
    )
    campaign = factories.campaign(world, dm_type=news, audience=Audience.INTERNAL, lists=[target])
    return _scheduled(campaign)


def _scheduled(campaign: Campaign) -> Campaign:
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now() - timedelta(seconds=1)
    )
    campaign.refresh_from_db()
    return campaign


def _status(campaign: Campaign) -> str:
    return Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True)[0]


def _wait_sent(campaign: Campaign, workers: Workers, timeout: float = 120) -> None:
    wait_for(
        lambda: _status(campaign) == CampaignStatus.SENT,
        timeout=timeout,
        message=f"campaign not sent: {_counts(campaign)}\n{workers.logs()}",
    )


def _counts(campaign: Campaign) -> dict[str, int]:
    return Counter(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True))


def _assert_no_duplicates(sink: SMTPSink) -> None:
    ids = Counter(sink.message_ids())
    assert not [i for i, n in ids.items() if n > 1], "a Message-ID reached the sink twice"
    assert None not in ids


def test_it_reaches_exactly_the_sendable_recipients(world, sink, workers):
    """I1 end to end: a list with mixed consent; the sink receives exactly the sendable
    addresses, and every other member's delivery carries its reason."""
    news = factories.dm_type(world.unit)
    target = factories.recipient_list(world.unit)
    expected = set()
    for i in range(6):
        factories.member(target, f"yes{i}@example.com", granted=news)
        expected.add(f"yes{i}@example.com")
    factories.member(target, "none@example.com")
    gone = factories.member(target, "gone@example.com", granted=news)
    withdraw(recipient=gone, dm_types=[news], channel=Channel.PREFERENCE_CENTRE)
    bounced = factories.member(target, "bounced@example.com", granted=news)
    Recipient.objects.filter(pk=bounced.pk).update(status=RecipientStatus.BOUNCED)
    campaign = _scheduled(factories.campaign(world, lists=[target]))
    workers.start()
    campaign_start(campaign=campaign)
    _wait_sent(campaign, workers)
    assert sorted(sink.recipients()) == sorted(expected)
    _assert_no_duplicates(sink)
    reasons = dict(
        Delivery.objects.filter(campaign=campaign, status=D.SKIPPED).values_list(
            "recipient__email", "reason"
        )
    )
    assert reasons == {
        "none@example.com": SkipReason.NO_CONSENT,
        "gone@example.com": SkipReason.WITHDRAWN,
        "bounced@example.com": SkipReason.BOUNCED,
    }
    sent = set(Delivery.objects.filter(campaign=campaign, status=D.SENT).values_list("message_id"))
    assert {(i,) for i in sink.message_ids()} == sent


def test_a_withdrawal_mid_campaign_stops_the_rest(world, sink, workers):
    """I6: a recipient who withdraws while the campaign sends (slow sink) gets nothing after
    the withdrawal: their row is skipped, withdrawn during sending."""
    campaign = _internal_campaign(world, 60)
    last = Recipient.objects.get(email="r00059@example.edu")
    sink.slow(100)
    workers.start(concurrency=1, MLM_DISPATCH_BATCH_SIZE="5", MLM_DISPATCH_PARALLEL="1")
    campaign_start(campaign=campaign)
    sink.wait_for(5, timeout=60)
    withdrawn_at = time.time()
    withdraw(recipient=last, dm_types=[campaign.dm_type], channel=Channel.ONE_CLICK)
    _wait_sent(campaign, workers)
    late = [m for m in sink.messages if "r00059@example.edu" in m.rcpt_tos]
    assert [m for m in late if m.received_at > withdrawn_at] == []
    row = Delivery.objects.get(campaign=campaign, recipient=last)
    assert (row.status, row.reason) == (D.SKIPPED, SkipReason.WITHDRAWN_DURING_SENDING)
    assert len(sink.messages) == 59


def test_duplicate_task_messages_send_nothing_twice(world, sink, workers):
    """I7: the batch task published three more times, and again after completion: zero extra
    SMTP transactions."""
    campaign = _internal_campaign(world, 100)
    workers.start()
    campaign_start(campaign=campaign)
    for _ in range(3):
        send_batch.delay(campaign.pk)
    _wait_sent(campaign, workers)
    done = workers.succeeded("campaigns.tasks.send_batch")
    for _ in range(3):
        send_batch.delay(campaign.pk)
    wait_for(
        lambda: workers.succeeded("campaigns.tasks.send_batch") >= done + 3,
        message=f"the duplicate tasks were not run\n{workers.logs()}",
    )
    assert sink.stats["transactions"] == 100 and len(sink.messages) == 100
    _assert_no_duplicates(sink)


def test_a_start_that_rolls_back_enqueues_and_sends_nothing(world, sink, workers):
    """Enqueue on commit: starting inside a transaction that rolls back sends nothing."""
    campaign = _internal_campaign(world, 10)
    workers.start()
    with pytest.raises(RuntimeError), transaction.atomic():
        campaign_start(campaign=campaign)
        raise RuntimeError("changed my mind")
    time.sleep(3)
    assert sink.messages == [] and not Delivery.objects.filter(campaign=campaign).exists()
    assert _status(campaign) == CampaignStatus.SCHEDULED


def test_transient_answers_defer_then_send(world, sink, workers):
    """421 answers for a while: the deliveries are deferred, retried with backoff, then sent."""
    campaign = _internal_campaign(world, 30)
    workers.start(MLM_DISPATCH_PAUSE_AFTER_FAILURES="0")
    sink.transient(421, count=10)
    campaign_start(campaign=campaign)
    _wait_sent(campaign, workers, timeout=90)
    assert _counts(campaign) == {D.SENT: 30}
    assert Delivery.objects.filter(campaign=campaign, attempts__gt=1).exists()
    assert sink.stats["transient"] > 0
    _assert_no_duplicates(sink)
    assert len(sink.messages) == 30


def test_550_fails_those_addresses_with_the_reply(world, sink, workers):
    """550 for some addresses: those deliveries fail with the server's reply; the rest go."""
    campaign = _internal_campaign(world, 30)
    sink.reject("r00003@example.edu", "r00017@example.edu")
    workers.start()
    campaign_start(campaign=campaign)
    _wait_sent(campaign, workers)
    failed = Delivery.objects.filter(campaign=campaign, status=D.FAILED)
    assert sorted(failed.values_list("recipient__email", flat=True)) == [
        "r00003@example.edu",
        "r00017@example.edu",
    ]
    assert all(row.reply.startswith("550") for row in failed)
    assert len(sink.messages) == 28


def test_a_refusing_server_pauses_the_campaign_and_resume_sends_each_once(world, sink, workers):
    """Every connection refused: the campaign pauses itself after N failures with nothing sent;
    after resume each recipient gets exactly one message."""
    campaign = _internal_campaign(world, 40)
    sink.refuse_connections()
    workers.start(MLM_DISPATCH_PAUSE_AFTER_FAILURES="20")
    campaign_start(campaign=campaign)
    wait_for(lambda: _status(campaign) == CampaignStatus.PAUSED, timeout=60)
    assert not Delivery.objects.filter(campaign=campaign, status=D.SENT).exists()
    sink.refuse_connections(False)
    wait_for(  # the deferred rows' first retry time
        lambda: (
            not Delivery.objects.filter(
                campaign=campaign, status=D.DEFERRED, next_attempt_at__gt=timezone.now()
            ).exists()
        ),
        interval=0.1,
    )
    from campaigns.services.status import campaign_resume

    campaign_resume(campaign=Campaign.objects.get(pk=campaign.pk), by=None)
    _wait_sent(campaign, workers)
    assert sorted(sink.recipients()) == [f"r{i:05d}@example.edu" for i in range(40)]
    _assert_no_duplicates(sink)


def test_kill_9_at_half_way_leaves_at_most_the_in_flight_rows_in_doubt(world, sink, workers):
    """I7 under faults: kill -9 the worker at about half of 5,000 recipients, start another:
    every recipient is sent exactly once or listed in doubt; zero duplicates at the sink;
    in-doubt rows at most batch size times concurrency."""
    total, concurrency = 5000, 2
    campaign = _internal_campaign(world, total)
    first = workers.start(concurrency=concurrency)
    campaign_start(campaign=campaign)
    sink.wait_for(total // 2, timeout=180)
    first.kill_hard()
    killed_at = timezone.now()
    workers.start(concurrency=concurrency)
    # The dead worker's leases run out LEASE seconds after its last claim, the live worker's
    # later: the sweep as beat runs it then, without waiting for it.
    deliveries_recover(now=killed_at + timedelta(seconds=LEASE))

    def beat() -> bool:  # what beat does every MLM_DISPATCH_SWEEP_SECONDS
        deliveries_recover()
        return _status(campaign) == CampaignStatus.SENT

    wait_for(beat, timeout=180, interval=1, message=f"not sent\n{workers.logs()}")
    counts = _counts(campaign)
    print(f"kill -9 at half-way: {dict(counts)}, {len(sink.messages)} at the sink")
    assert set(counts) <= {D.SENT, D.IN_DOUBT}
    assert counts[D.SENT] + counts.get(D.IN_DOUBT, 0) == total
    assert counts.get(D.IN_DOUBT, 0) <= BATCH * concurrency
    _assert_no_duplicates(sink)
    at_sink = set(sink.message_ids())
    sent_ids = set(
        Delivery.objects.filter(campaign=campaign, status=D.SENT).values_list(
            "message_id", flat=True
        )
    )
    assert sent_ids <= at_sink  # every row marked sent reached the sink
    assert len(at_sink - sent_ids) <= counts.get(D.IN_DOUBT, 0)  # the rest are in doubt


def test_sigterm_at_half_way_loses_nothing_and_duplicates_nothing(world, sink, workers):
    """A deploy: SIGTERM to the worker at half-way; in-flight batches finish, the next worker
    goes on: every recipient exactly once, none in doubt."""
    total = 2000
    campaign = _internal_campaign(world, total)
    first = workers.start()
    campaign_start(campaign=campaign)
    sink.wait_for(total // 2, timeout=120)
    first.stop()  # SIGTERM: warm shutdown
    workers.start()
    _wait_sent(campaign, workers, timeout=180)
    assert _counts(campaign) == {D.SENT: total}
    assert len(sink.messages) == total
    _assert_no_duplicates(sink)


@pytest.fixture
def raw_sink(tmp_path) -> Iterator[SMTPSink]:
    found = SMTPSink(keep_raw=True).start()
    try:
        yield found
    finally:
        found.stop()


def test_mail_at_the_sink_is_dkim_signed_valid_mime_with_the_list_headers(
    world, raw_sink, tmp_path
):
    """I5: a mail captured at the sink verifies with dkimpy against the published key, its h=
    covers List-Unsubscribe and List-Unsubscribe-Post, and it parses as MIME with text and HTML
    parts, Chinese names intact, and every list header."""
    import re
    from email import message_from_bytes, policy

    import dkim

    from mlm.services import sending_domain_create, sending_domain_dns_record

    domain = sending_domain_create(domain="engineering.example.edu", selector="mlm1", by=None)
    name, value = sending_domain_dns_record(domain)
    campaign = _internal_campaign(world, 3)
    workers = Workers(tmp_path, raw_sink)
    try:
        workers.start(concurrency=1)
        campaign_start(campaign=campaign)
        _wait_sent(campaign, workers)
    finally:
        workers.stop()
    raw = raw_sink.messages[0].raw
    assert dkim.verify(
        raw, dnsfunc=lambda q, timeout=5: value.encode() if q == f"{name}.".encode() else None
    )
    header = raw.split(b"\r\n\r\n", 1)[0].decode()
    h = re.search(r"\bh=([^;]+);", re.sub(r"\r\n\s+", " ", header)).group(1)
    signed = [part.strip() for part in h.split(":")]
    assert "list-unsubscribe" in signed and "list-unsubscribe-post" in signed
    parsed = message_from_bytes(raw, policy=policy.default)
    assert not parsed.defects
    assert parsed["List-Unsubscribe"].startswith("<http")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Id"] and parsed["Feedback-ID"] and parsed["Precedence"] == "bulk"
    assert parsed["Message-ID"].endswith("@engineering.example.edu>")
    assert "陳" in str(parsed["To"])
    types = [part.get_content_type() for part in parsed.walk()]
    assert types == ["multipart/alternative", "text/plain", "text/html"]


def test_a_hanging_server_times_out_and_the_campaign_completes_after(world, sink, workers):
    """A server that never greets: the SMTP timeout fires (no task hangs past its limit), the
    rows are deferred, and once the server answers again every recipient gets one message."""
    campaign = _internal_campaign(world, 10)
    workers.start(MLM_DISPATCH_PAUSE_AFTER_FAILURES="0")
    sink.hang("connect")
    started = time.monotonic()
    campaign_start(campaign=campaign)
    wait_for(
        lambda: Delivery.objects.filter(campaign=campaign, status=D.DEFERRED).exists(),
        timeout=30,
        message=workers.logs(),
    )
    assert time.monotonic() - started < LEASE
    row = Delivery.objects.filter(campaign=campaign, status=D.DEFERRED).first()
    assert "timed out" in row.reply.lower() or "timeout" in row.reply.lower()
    sink.reset_faults()
    _wait_sent(campaign, workers, timeout=90)
    assert len(sink.messages) == 10
    _assert_no_duplicates(sink)
    assert "TimeLimitExceeded" not in workers.logs()
