"""Erasure leaves the address nowhere (I9): one person goes through every path that records an
address — a grant import, an opt-out import, a rejected row, an upload never started, campaigns
sent through SMTP and kept in the Outbox, a list export, a one-click unsubscribe, a
provider's webhook event and the outbound events a registered endpoint receives — each path
spelling the address in its own case; then an administrator erases them, and the database,
the files, Redis and the logs are searched for the address in any case
(tests/system/traces.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.demo import DEMO_BODY
from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryEvent
from campaigns.sending.start import campaign_start
from campaigns.services.settings import unit_settings_update
from mlm.models import OutboxMessage
from outbound.models import Event
from recipients.models import Audience, ImportJob, ImportStatus, Recipient, RecipientStatus
from recipients.services import list_create
from tests.campaigns import factories
from tests.campaigns.esp_payloads import SECRET, basic_auth, post_postmark, postmark_bounce
from tests.imports.helpers import csv_bytes
from tests.outbound.conftest import register
from tests.outbound.receiver import Receiver
from tests.personas import make_world
from tests.processes import Worker, wait_for
from tests.system import traces
from tests.system.smtp_sink import SMTPSink

pytestmark = pytest.mark.system

ADDRESS = "Erin.Subject@Example.ORG"  # as the grant import writes it
UPPER = "ERIN.SUBJECT@example.org"  # the opt-out import
LOWER = "erin.subject@example.org"  # the grant import's duplicate row (rejected)
MIXED = "erin.subject@EXAMPLE.org"  # the upload never started, and its file's name
SHOUTED = "ERIN.SUBJECT@EXAMPLE.ORG"  # the provider's webhook event


@pytest.fixture
def var_dir(settings, tmp_path) -> Path:
    """MLM_VAR_DIR of this process and of the worker, with its media folder."""
    folder = tmp_path / "var"
    settings.MEDIA_ROOT = str(folder / "media")
    settings.MLM_MAIL_BACKENDS = {"smtp": "django.core.mail.backends.smtp.EmailBackend"}
    settings.ANYMAIL_WEBHOOK_SECRET = [SECRET]
    return folder


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    """The unit's CRM on loopback, receiving outbound events (the receiving side, not ours)."""
    settings.MLM_OUTBOUND_ALLOW_PRIVATE = True
    found = Receiver(secrets=[]).start()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
def logs() -> Iterator[traces.LogCapture]:
    # The SMTP sink's server (aiosmtpd, "mail.log") is the recipient's side, not the app.
    capture = traces.LogCapture(ignore=("mail.log",)).start()
    try:
        yield capture
    finally:
        capture.stop()


@pytest.fixture
def sink() -> Iterator[SMTPSink]:
    found = SMTPSink().start()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
def worker(transactional_db, tmp_path, var_dir, sink, logs) -> Iterator[Worker]:
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    found = Worker(
        tmp_path / "worker.log",
        loglevel="DEBUG",
        MLM_VAR_DIR=str(var_dir),
        LOG_LEVEL="DEBUG",
        **{**sink.email_env(), "EMAIL_BACKEND": "outbox", "MLM_MAIL_BACKENDS": "smtp"},
    )
    try:
        found.wait_ready()
        yield found
    finally:
        found.stop()


def _upload(client: Client, target, rows: list[list[str]], name: str) -> ImportJob:
    url = reverse("import_upload", args=["engineering", target.code])
    answer = client.post(url, {"file": SimpleUploadedFile(name, csv_bytes(rows))})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    return ImportJob.objects.get(file_name=name)


def _import(client: Client, target, rows: list[list[str]], name: str, **choices) -> ImportJob:
    """Upload a CSV through the page, start it with `choices`, wait for the worker."""
    job = _upload(client, target, rows, name)
    data = {f"column_{i}": column for i, column in enumerate(job.mapping)}
    url = reverse("import_job", args=["engineering", target.code, job.code])
    answer = client.post(url, {**data, **choices})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    finished = (ImportStatus.SUCCEEDED, ImportStatus.FAILED)
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).status in finished, timeout=30)
    job.refresh_from_db()
    assert job.status == ImportStatus.SUCCEEDED, job.error
    return job


def _send(campaign: Campaign, worker: Worker) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now() - timedelta(seconds=1)
    )
    campaign.refresh_from_db()
    campaign_start(campaign=campaign)
    sent = lambda: Campaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENT  # noqa: E731
    wait_for(sent, timeout=30, message=worker.log()[-3000:])


def _backend(world, name: str) -> None:
    """Send the unit's campaigns through `name` of MLM_MAIL_BACKENDS ("": the default)."""
    unit_settings_update(
        unit=world.unit,
        allow_self_approval=False,
        frequency_cap_mails=0,
        frequency_cap_days=7,
        banned_words="",
        mail_backend=name,
        by=world.alice,
    )


def test_an_erased_person_leaves_no_trace(client, worker, sink, var_dir, logs, receiver):
    """I9: after erasure, neither the database, nor a file under MLM_VAR_DIR, nor Redis, nor
    the logs of this process and of the worker hold the address in any case. The outbound
    events stored keep only the person's code, and the erasure is announced by code alone."""
    world = make_world()
    register(world, receiver)
    client.force_login(world.alice)
    events = factories.dm_type(world.unit, key="events")
    news = factories.dm_type(world.unit, key="newsletter")
    visitors = list_create(unit=world.unit, name="Open day", audience=Audience.EXTERNAL, by=None)

    # A grant import; its second row names the same person in lower case and is rejected.
    granted = _import(
        client,
        visitors,
        [["Email", "First name", "Last name"], [ADDRESS, "Erin", "Subject"], [LOWER, "Erin", "S"]],
        "open-day.csv",
        mode="grant",
        dm_types=[events.pk, news.pk],
        attested="on",
        evidence="Open-day registration forms, consent clause v3",
    )
    assert (granted.granted_count, granted.duplicate_count) == (2, 1)
    assert granted.rejected_file
    person = Recipient.objects.get(unit=world.unit)

    # An opt-out import in upper case.
    _import(
        client, visitors, [["Email"], [UPPER]], "opt-out.csv", mode="opt_out", dm_types=[news.pk]
    )
    # An upload in mixed case that is never started, its file named after them (as a single
    # person's request may be).
    request = f"request from {MIXED}.csv"
    abandoned = _upload(client, visitors, [["Email", "First name"], [MIXED, "Erin"]], request)

    # A campaign sent through SMTP (the unit's backend), another kept in the Outbox (the
    # default), and a [TEST] mail to an editor rendered as the person, kept in the Outbox too.
    _backend(world, "smtp")
    body = DEMO_BODY + "<p>This mail was sent to {{ email }}.</p>"
    spring = factories.campaign(
        world, name="Spring news", dm_type=events, lists=[visitors], html_body=body
    )
    _send(spring, worker)
    (mail,) = sink.messages
    _backend(world, "")
    summer = factories.campaign(
        world, name="Summer news", dm_type=events, lists=[visitors], html_body=body
    )
    _send(summer, worker)
    assert OutboxMessage.objects.filter(campaign=summer).count() == 1
    url = reverse("campaign_test", args=["engineering", summer.code])
    assert client.post(url, {"recipient": str(person.code)}).status_code == 302
    wait_for(lambda: OutboxMessage.objects.filter(subject__startswith="[TEST]").exists())

    # The list exported; the person unsubscribes in one click from the SMTP mail (RFC 8058);
    # the provider reports soft bounces quoting the address, of that mail and of one not ours.
    export = client.get(reverse("list_export", args=["engineering", visitors.code]))
    assert ADDRESS.lower() in b"".join(export.streaming_content).decode().lower()
    header = message_from_bytes(mail.raw)["List-Unsubscribe"]
    one_click = re.search(r"<(https?://[^>]+/one-click)>", header).group(1)
    answer = Client().post(
        one_click, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert answer.status_code == 200
    delivery = Delivery.objects.get(campaign=spring, recipient=person)
    bounce = postmark_bounce(
        SHOUTED, "pm-1", {"delivery": str(delivery.pk), "campaign": str(spring.code)}, "SoftBounce"
    )
    assert post_postmark(client, bounce, **basic_auth()).status_code == 200
    assert SHOUTED in DeliveryEvent.objects.get(delivery=delivery).description
    unknown = {**postmark_bounce(SHOUTED, "pm-not-ours", {}, "SoftBounce"), "ID": 7}
    assert post_postmark(client, unknown, **basic_auth()).status_code == 200

    # The person's export holds every place, and every file that names them.
    url = reverse("recipient_export", args=["engineering", person.code])
    held = json.loads(client.post(url).content)
    assert {f["kind"] for f in held["files"]} == {"rejected rows report", "upload not yet imported"}
    assert sorted(m["subject"].startswith("[TEST]") for m in held["outbox_messages"]) == [
        False,
        True,
    ]
    assert {d["campaign_name"] for d in held["deliveries"]} == {"Spring news", "Summer news"}
    assert any(d["events"] for d in held["deliveries"])
    assert len(held["unmatched_provider_events"]) == 1

    # Before erasure the search finds them: in the database and in the import files. The
    # endpoint heard of the grants, the opt-out, the one-click and the bounce, with the address.
    assert traces.in_database(ADDRESS) and traces.in_files(var_dir, ADDRESS)
    told = {e.type for e in Event.objects.filter(recipient_key=str(person.code))}
    assert {"consent.granted", "consent.withdrawn"} <= told
    assert any(
        e.payload["data"]["recipient"].get("address") == person.email
        for e in Event.objects.filter(recipient_key=str(person.code))
    )

    # The administrator erases them.
    url = reverse("recipient_erase", args=["engineering", person.code])
    assert client.post(url, {"confirm": "on"}).status_code == 302
    person.refresh_from_db()
    assert person.status == RecipientStatus.ERASED
    abandoned.refresh_from_db()
    assert abandoned.status == ImportStatus.FAILED and not abandoned.file
    assert abandoned.file_name == "request from [erased].csv"
    erased = lambda: [r for r in receiver.received if r.payload["type"] == "recipient.erased"]  # noqa: E731
    wait_for(erased, timeout=30, message=worker.log()[-3000:])
    assert erased()[0].payload["data"] == {"recipient": {"code": str(person.code)}}
    worker.stop()

    found = [
        *traces.in_database(ADDRESS),
        *traces.in_files(var_dir, ADDRESS),
        *traces.in_redis(settings.REDIS_URL, ADDRESS),
        *traces.in_log(logs.text(), "this process's log", ADDRESS),
        *traces.in_log(worker.log(), "the worker's log", ADDRESS),
    ]
    assert found == [], "the address remains:\n" + "\n".join(map(str, found))
