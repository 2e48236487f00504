"""Tracking webhooks against the app under gunicorn and PostgreSQL: SendGrid's batches, then
single Amazon SES notifications.

Creates its own database (mlm_bench_webhooks, next to DATABASE_URL's), migrates it, and seeds in
bulk one unit, a newsletter granted by every recipient, and a sending campaign with one sent
delivery per recipient (each with the ESP's message id). Then it starts gunicorn on a free
loopback port (sync workers, DEBUG off, ANYMAIL_WEBHOOK_SECRET set) and a client in this
process that keeps 8 connections busy (each POST on its own connection, the next as soon as
one answers):

1. 50,000 events in SendGrid's Event Webhook format, 100 per POST, with our delivery id in the
   custom args: mostly delivered and opens, then hard and soft bounces, complaints and
   unsubscribes; 10% of them are duplicates of events already sent (ESPs retry).
2. 5,000 single-event Amazon SES notifications in their SNS envelope (deliveries, permanent
   bounces, complaints), matched by SES's message id.

Every POST must answer 200 within 10 s. Afterwards every distinct event must be in the database
exactly once, and every bounce, complaint and unsubscribe must have had its effect (recipient
bounced and suppressed everywhere; every DM type withdrawn, suppressed for the unit; the
newsletter withdrawn); each one missing counts as an error. The campaign's circuit breaker may
pause it on the way (its complaint rate passes 0.3%): that is an effect too, and is reported.
Everything it started is stopped; the database is dropped. Last line:
`webhooks: <events/s> events/s batched, <req/s> req/s single-event, <errors> errors, p99 <ms> ms`
(p99 over every POST of both phases). The detail line before it has each phase's latencies and
CPU cost per request (app and PostgreSQL), the checks, a baseline of GET /health/ in the same
closed loop, and the load average.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import statistics
import time
import uuid

from _served import (
    Exchange,
    cpu_seconds,
    drop_database,
    health_bytes,
    prepare,
    seed_newsletter,
    start_gunicorn,
    stop,
)

BENCH_DB = "mlm_bench_webhooks"
WORKERS = int(os.environ.get("BENCH_WORKERS", "4"))
CONNECTIONS = 8
BATCHED_EVENTS = int(os.environ.get("BENCH_BATCHED_EVENTS", "50000"))
PER_POST = 100
DUPLICATES = 0.10
SINGLE_EVENTS = int(os.environ.get("BENCH_SINGLE_EVENTS", "5000"))
TIMEOUT = 10.0
SECRET = "sendgrid:bench-only-webhook-secret"
# The unique batched events, by kind (the rest are deliveries and opens).
SHARES = {"bounce": 0.03, "blocked": 0.02, "spamreport": 0.005, "unsubscribe": 0.01}
SES_SHARES = {"Bounce": 0.03, "Complaint": 0.005}


def seed(count: int) -> tuple[str, list[tuple[int, str]]]:
    """One unit, a newsletter every recipient granted, a sending campaign with one sent delivery
    per recipient. Answers the campaign's code and (delivery id, ESP message id) per recipient.

    Grants are written in bulk by `_served.seed_newsletter`; the campaign as dispatch leaves it
    sending, its deliveries in bulk.
    """
    import django

    django.setup()
    from django.db import connection, transaction
    from django.utils import timezone

    from campaigns.demo import DEMO_BODY, DEMO_SUBJECT
    from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
    from campaigns.services.authoring import identity_create
    from recipients.models import Audience

    with transaction.atomic():
        unit, newsletter, recipients = seed_newsletter(count)
        identity = identity_create(
            unit=unit, name=unit.name, email="news@engineering.example.edu", by=None
        )
        # Written as `campaign_create` and `campaign_start` leave it, without an author.
        campaign = Campaign.objects.create(
            unit=unit,
            name="Spring news",
            dm_type=newsletter,
            audience=Audience.EXTERNAL,
            identity=identity,
            subject=DEMO_SUBJECT,
            html_body=DEMO_BODY,
            status=CampaignStatus.SENDING,
            started_at=timezone.now(),
        )
        now = timezone.now()
        deliveries = Delivery.objects.bulk_create(
            (
                Delivery(
                    campaign=campaign,
                    unit=unit,
                    recipient=r,
                    email_hash=r.email_hash,
                    status=DeliveryStatus.SENT,
                    message_id=f"<{i}.bench@engineering.example.edu>",
                    provider_message_id=f"0100018e-bench-{i:08d}-000000",
                    sent_at=now,
                    finished_at=now,
                )
                for i, r in enumerate(recipients)
            ),
            batch_size=5000,
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    pairs = [(d.pk, d.provider_message_id) for d in deliveries]
    code = str(campaign.code)
    connection.close()
    return code, pairs


# The load -----------------------------------------------------------------------------------


class Plan:
    """What is sent, and what the database must hold afterwards."""

    def __init__(self, campaign: str, deliveries: list[tuple[int, str]]) -> None:
        self.campaign = campaign
        self.free = list(deliveries)  # deliveries no acting event has used yet
        random.Random(7).shuffle(self.free)
        self.all = list(deliveries)
        self.keys: set[tuple[str, str]] = set()
        self.hard: list[int] = []  # delivery ids: recipient bounced, suppressed everywhere
        self.complained: list[int] = []
        self.unsubscribed: list[int] = []

    def acting(self) -> tuple[int, str]:
        return self.free.pop()


def sendgrid_posts(plan: Plan, rng: random.Random) -> tuple[list[list[dict]], int]:
    """BATCHED_EVENTS events in posts of PER_POST; DUPLICATES of them repeat earlier ones."""
    unique_count = round(BATCHED_EVENTS * (1 - DUPLICATES))
    now = int(time.time())
    events = []
    for _ in range(unique_count):
        draw, kind = rng.random(), "delivered"
        for name, share in SHARES.items():
            if draw < share:
                kind = name
                break
            draw -= share
        else:
            kind = "delivered" if rng.random() < 0.75 else "open"
        delivery, esp_id = plan.acting() if kind in SHARES else rng.choice(plan.all)
        event = {
            "email": "reader@example.com",
            "timestamp": now,
            "event": kind,
            "sg_event_id": uuid.uuid4().hex,
            "sg_message_id": f"{esp_id}.filter0001",
            "anymail_id": esp_id,
            "category": ["newsletter"],
            "delivery": str(delivery),
            "campaign": plan.campaign,
        }
        if kind in ("bounce", "blocked"):
            event.update(type=kind, status="5.1.1", reason="550 5.1.1 unknown user")
        if kind == "delivered":
            event["response"] = "250 OK"
        events.append(event)
        plan.keys.add(("sendgrid", event["sg_event_id"]))
        {"bounce": plan.hard, "spamreport": plan.complained, "unsubscribe": plan.unsubscribed}.get(
            kind, []
        ).append(delivery)
    # Duplicates are retries of events already posted: each repeats one of an earlier post.
    repeats = set(rng.sample(range(PER_POST, BATCHED_EVENTS), BATCHED_EVENTS - unique_count))
    fresh = iter(events)
    stream: list[dict] = []
    for i in range(BATCHED_EVENTS):
        stream.append(stream[rng.randrange(0, i - PER_POST + 1)] if i in repeats else next(fresh))
    posts = [stream[i : i + PER_POST] for i in range(0, len(stream), PER_POST)]
    return posts, unique_count


def ses_notifications(plan: Plan, rng: random.Random) -> list[dict]:
    notifications = []
    for _ in range(SINGLE_EVENTS):
        draw, kind = rng.random(), "Delivery"
        for name, share in SES_SHARES.items():
            if draw < share:
                kind = name
                break
            draw -= share
        delivery, esp_id = plan.acting() if kind != "Delivery" else rng.choice(plan.all)
        to = "reader@example.com"
        mail = {"messageId": esp_id, "destination": [to], "source": "news@example.edu"}
        if kind == "Bounce":
            body = {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [{"emailAddress": to, "diagnosticCode": "smtp; 550 5.1.1"}],
            }
            plan.hard.append(delivery)
        elif kind == "Complaint":
            body = {
                "complainedRecipients": [{"emailAddress": to}],
                "complaintFeedbackType": "abuse",
            }
            plan.complained.append(delivery)
        else:
            body = {"recipients": [to], "smtpResponse": "250 ok"}
        ses_event = {"notificationType": kind, kind.lower(): body, "mail": mail}
        sns_id = str(uuid.uuid4())
        notifications.append(
            {
                "Type": "Notification",
                "MessageId": sns_id,
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
                "Message": json.dumps(ses_event),
                "Timestamp": "2025-03-26T17:58:59.675Z",
                "SignatureVersion": "1",
                "Signature": "EXAMPLE==",
            }
        )
        plan.keys.add(("amazon_ses", sns_id))
    return notifications


def http_post(port: int, path: str, body: bytes, content_type: str, headers: str = "") -> bytes:
    auth = base64.b64encode(SECRET.encode()).decode()
    return (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Basic {auth}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{headers}"
        "Connection: close\r\n\r\n"
    ).encode() + body


async def closed_loop(port: int, requests: list[bytes]) -> tuple[list[float], int, float, str]:
    """Keep CONNECTIONS requests in flight until all are answered; latencies (s), errors,
    elapsed (s), and the first error's answer."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors, first_error = 0, ""
    queue = iter(requests)

    async def connection_worker() -> None:
        nonlocal errors, first_error
        for payload in queue:
            start = loop.time()
            done = loop.create_future()
            try:
                async with asyncio.timeout(TIMEOUT):
                    transport, _ = await loop.create_connection(
                        lambda p=payload, d=done: Exchange(p, d), "127.0.0.1", port
                    )
                    try:
                        answer = await done
                    finally:
                        transport.close()
                ok = answer[9:12] == b"200"
            except (TimeoutError, OSError) as error:
                ok, answer = False, repr(error).encode()
            latencies.append(loop.time() - start)
            if not ok:
                errors += 1
                first_error = first_error or answer[:300].decode(errors="replace")

    start = loop.time()
    await asyncio.gather(*(connection_worker() for _ in range(CONNECTIONS)))
    return latencies, errors, loop.time() - start, first_error


# Checks afterwards ------------------------------------------------------------------------------


def verify(plan: Plan) -> tuple[int, str]:
    """Errors: events missing or stored twice, effects missing. And a line of what was found."""
    from django.db import connection
    from django.db.models import Count

    from campaigns.models import Campaign, Delivery, DeliveryEvent
    from consent.models import Action, Channel, ConsentEvent, Suppression
    from recipients.addresses import address_hash
    from recipients.models import RecipientStatus

    connection.close()
    stored = list(DeliveryEvent.objects.values_list("source", "event_key"))
    # An SES event's key is the SNS message id and a keyed digest of the address.
    digest = address_hash("reader@example.com")[:16]
    expected = {
        (source, f"{key}/{digest}" if source == "amazon_ses" else key) for source, key in plan.keys
    }
    found = set(stored)
    missing = len(expected - found)
    unexpected = len(found - expected)
    twice = len(stored) - len(found)  # the unique constraint makes this 0
    unmatched = DeliveryEvent.objects.filter(delivery__isnull=True).count()

    def recipients(deliveries: list[int]) -> dict[int, tuple[int, str, str]]:
        rows = Delivery.objects.filter(pk__in=deliveries).values_list(
            "pk", "recipient_id", "recipient__status", "email_hash"
        )
        return {pk: (rid, status, digest) for pk, rid, status, digest in rows}

    hard = recipients(plan.hard)
    global_suppressed = set(
        Suppression.objects.filter(unit__isnull=True).values_list("email_hash", flat=True)
    )
    hard_missing = sum(
        1
        for rid, status, digest in hard.values()
        if status != RecipientStatus.BOUNCED or digest not in global_suppressed
    )
    complained = recipients(plan.complained)
    unit_suppressed = set(
        Suppression.objects.filter(unit__isnull=False).values_list("email_hash", flat=True)
    )
    all_withdrawn = set(
        ConsentEvent.objects.filter(
            action=Action.WITHDRAW, channel=Channel.COMPLAINT, dm_type__isnull=True
        ).values_list("recipient_id", flat=True)
    )
    complaint_missing = sum(
        1
        for rid, status, digest in complained.values()
        if status != RecipientStatus.COMPLAINED
        or digest not in unit_suppressed
        or rid not in all_withdrawn
    )
    unsubscribed = recipients(plan.unsubscribed)
    one_click = set(
        ConsentEvent.objects.filter(action=Action.WITHDRAW, channel=Channel.ONE_CLICK)
        .values("recipient_id")
        .annotate(n=Count("id"))
        .values_list("recipient_id", flat=True)
    )
    unsubscribe_missing = sum(1 for rid, _, _ in unsubscribed.values() if rid not in one_click)
    # Effects once: one withdrawal per complaint or unsubscribe, whatever the duplicates.
    withdrawals = ConsentEvent.objects.filter(action=Action.WITHDRAW).count()
    extra_withdrawals = max(0, withdrawals - len(plan.complained) - len(plan.unsubscribed))
    campaign = Campaign.objects.get()
    errors = (
        missing
        + unexpected
        + twice
        + unmatched
        + hard_missing
        + complaint_missing
        + unsubscribe_missing
        + extra_withdrawals
    )
    line = (
        f"events stored {len(stored)} of {len(expected)} distinct (missing {missing}, "
        f"unexpected {unexpected}, unmatched {unmatched}); effects missing: hard bounces "
        f"{hard_missing} of {len(hard)}, complaints {complaint_missing} of {len(complained)}, "
        f"unsubscribes {unsubscribe_missing} of {len(unsubscribed)}; extra withdrawals "
        f"{extra_withdrawals}; campaign {campaign.status}"
        + (f" ({campaign.pause_reason[:90]}…)" if campaign.pause_reason else "")
    )
    return errors, line


# Running it -------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))] * 1000


def main() -> None:
    port, env = prepare(BENCH_DB, "bench/webhooks.py", ANYMAIL_WEBHOOK_SECRET=SECRET)
    count = BATCHED_EVENTS + SINGLE_EVENTS
    print(f"seeding {count} recipients, each with a sent delivery", flush=True)
    campaign, deliveries = seed(count)
    rng = random.Random(42)
    plan = Plan(campaign, deliveries)
    posts, unique = sendgrid_posts(plan, rng)
    notifications = ses_notifications(plan, rng)
    batched = [
        http_post(
            port,
            "/webhooks/anymail/sendgrid/tracking/",
            json.dumps(post).encode(),
            "application/json",
        )
        for post in posts
    ]
    singles = [
        http_post(
            port,
            "/webhooks/anymail/amazon_ses/tracking/",
            json.dumps(n).encode(),
            "text/plain; charset=UTF-8",
            f"x-amz-sns-message-type: Notification\r\nx-amz-sns-message-id: {n['MessageId']}\r\n",
        )
        for n in notifications
    ]
    server, log = start_gunicorn(env, port, workers=WORKERS, timeout=60, output_to_log=True)
    try:
        print(f"gunicorn: {WORKERS} sync workers on 127.0.0.1:{port}", flush=True)
        load = os.getloadavg()
        cpu_0 = cpu_seconds(server, env, BENCH_DB)
        b_lat, b_errors, b_elapsed, b_first = asyncio.run(closed_loop(port, batched))
        cpu_1 = cpu_seconds(server, env, BENCH_DB)
        s_lat, s_errors, s_elapsed, s_first = asyncio.run(closed_loop(port, singles))
        cpu_2 = cpu_seconds(server, env, BENCH_DB)
        # Baseline in the same run: the cheapest page (/health/, one query) in the same closed
        # loop, so that a busy machine shows itself in the detail line.
        _, h_errors, h_elapsed, _ = asyncio.run(closed_loop(port, [health_bytes(port)] * 2000))
        cpu_3 = cpu_seconds(server, env, BENCH_DB)
        load_after = os.getloadavg()
    finally:
        stop(server)
    effect_errors, found = verify(plan)
    errors = b_errors + s_errors + effect_errors
    events_per_s = BATCHED_EVENTS / b_elapsed
    singles_per_s = len(singles) / s_elapsed
    b_app, b_db = ((b - a) / len(batched) * 1000 for a, b in zip(cpu_0, cpu_1, strict=True))
    s_app, s_db = ((b - a) / len(singles) * 1000 for a, b in zip(cpu_1, cpu_2, strict=True))
    h_app = (cpu_3[0] - cpu_2[0]) / 2000 * 1000
    p99 = percentile(b_lat + s_lat, 0.99)
    print(
        f"batched: {len(batched)} POSTs of {PER_POST} ({unique} distinct events) in "
        f"{b_elapsed:.1f} s, p50 {statistics.median(b_lat) * 1000:.0f} ms, p99 "
        f"{percentile(b_lat, 0.99):.0f} ms, {b_errors} errors, CPU per POST app {b_app:.1f} ms "
        f"PostgreSQL {b_db:.1f} ms; single-event: {len(singles)} in {s_elapsed:.1f} s, p50 "
        f"{statistics.median(s_lat) * 1000:.1f} ms, p99 {percentile(s_lat, 0.99):.1f} ms, "
        f"{s_errors} errors, CPU per request app {s_app:.2f} ms PostgreSQL {s_db:.2f} ms; "
        f"{found}; baseline GET /health/ {2000 / h_elapsed:.0f} req/s ({h_errors} errors), CPU "
        f"app {h_app:.2f} ms; load average {load[0]:.2f}/{load[1]:.2f} at start, "
        f"{load_after[0]:.2f} at end; gunicorn log {log}"
        + (f"; first error: {b_first or s_first!r}" if b_first or s_first else ""),
        flush=True,
    )
    drop_database(env, BENCH_DB)
    print(
        f"webhooks: {events_per_s:.0f} events/s batched, {singles_per_s:.0f} req/s single-event, "
        f"{errors} errors, p99 {p99:.0f} ms"
    )


if __name__ == "__main__":
    main()
