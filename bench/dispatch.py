"""Benchmark: dispatch of a 20,000-recipient campaign (10% of the list may not be mailed) through
PostgreSQL, Redis and 2 `celery worker` processes to a fast SMTP sink on loopback, against two
baselines in the same run.

- app: the real system (snapshot, claims, re-check, render, build, send, record), DKIM off;
- app with DKIM: the same with an RSA-2048 key for the From domain;
- bare pipeline: the same renderer and message builder, sent with smtplib over the same number
  of connections, no database, no Celery;
- raw blast: the same messages pre-built in memory, sent with smtplib over as many connections.

The sink (`--sink`, a process of its own) is a minimal asyncio SMTP responder that counts
messages and notes the first and last; it does no parsing, so it is not the bottleneck.
Builds its own database `mlm_bench_dispatch` on the server of DATABASE_URL; Redis DB from
REDIS_URL (flushed).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mlm REDIS_URL=redis://127.0.0.1:6379/7 \\
        python bench/dispatch.py [--recipients 20000] [--big 100000]

Last line: `dispatch: <app> msg/s = <r1> of bare pipeline, <r2> of raw blast; DKIM on <appd>
msg/s = <r3> of DKIM off; first mail after <s> s; worker RSS <a> MB at 20k, <b> MB at 100k`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import smtplib
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = "mlm_bench_dispatch"
CONNECTIONS = 2


# --- the sink -------------------------------------------------------------------------------------


class _Sink(asyncio.Protocol):
    stats = {"count": 0, "first": 0.0, "last": 0.0}

    def connection_made(self, transport) -> None:
        self.transport, self.buffer, self.data = transport, b"", False
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, chunk: bytes) -> None:
        self.buffer += chunk
        while True:
            if self.data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self.buffer, self.data = self.buffer[end + 5 :], False
                now = time.time()
                stats = _Sink.stats
                stats["count"] += 1
                stats["first"] = stats["first"] or now
                stats["last"] = now
                self.transport.write(b"250 2.0.0 Ok\r\n")
                continue
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                return
            self.buffer = rest
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.transport.write(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self.data = True
                self.transport.write(b"354 go on\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()
                return
            else:
                self.transport.write(b"250 Ok\r\n")


def run_sink(stats_path: Path) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Sink, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        stats_path.with_suffix(".port").write_text(str(port))
        while True:
            tmp = stats_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(_Sink.stats))
            os.replace(tmp, stats_path)
            await asyncio.sleep(0.05)

    asyncio.run(main())


class Sink:
    def __init__(self, folder: Path) -> None:
        self.stats_path = folder / "sink.json"
        self.stats_path.with_suffix(".port").unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--sink", str(self.stats_path)], cwd=ROOT
        )
        port = self.stats_path.with_suffix(".port")
        while not port.exists():
            time.sleep(0.05)
        self.port = int(port.read_text())

    def stats(self) -> dict:
        try:
            return json.loads(self.stats_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"count": 0, "first": 0.0, "last": 0.0}

    def wait(self, count: int, timeout: float = 1800) -> dict:
        deadline = time.monotonic() + timeout
        while (stats := self.stats())["count"] < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"the sink got {stats['count']} of {count} messages")
            time.sleep(0.05)
        return stats

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


# --- database and data ----------------------------------------------------------------------------


def prepare(source: str) -> str:
    import psycopg

    parts = urlsplit(source)
    bench = urlunsplit(parts._replace(path=f"/{BENCH_DB}"))
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    return bench


def make_campaign(unit, identity, dm_type, target, name: str):
    from django.utils import timezone

    from campaigns.demo import DEMO_BODY, DEMO_LAYOUT, DEMO_SUBJECT
    from campaigns.models import Campaign, CampaignStatus, Layout

    layout = Layout.objects.filter(unit=unit).first() or Layout.objects.create(
        unit=unit, name="Newsletter", html=DEMO_LAYOUT
    )
    campaign = Campaign.objects.create(
        unit=unit,
        name=name,
        dm_type=dm_type,
        audience="internal",
        identity=identity,
        subject=DEMO_SUBJECT,
        html_body=DEMO_BODY,
        layout=layout,
        status=CampaignStatus.SCHEDULED,
        scheduled_at=timezone.now(),
    )
    campaign.lists.set([target])
    return campaign


def make_world(count: int, tag: str):
    """A unit, a DM type internal staff get by default, and `count` staff on a list, one in ten
    of them suppressed (may not be mailed)."""
    from campaigns.models import SenderIdentity
    from consent.models import DMType, Suppression
    from mlm.models import SenderUnit
    from recipients.addresses import address_hash
    from recipients.models import ListMembership, Recipient, RecipientList

    unit, _ = SenderUnit.objects.get_or_create(
        slug="engineering",
        defaults={"name": "Faculty of Engineering", "postal_address": "1 University Road"},
    )
    identity, _ = SenderIdentity.objects.get_or_create(
        unit=unit, email="news@eng.example.edu", defaults={"name": "工程學院 Engineering"}
    )
    dm_type, _ = DMType.objects.get_or_create(
        unit=unit, key="events", defaults={"name": "Events", "internal_default": True}
    )
    target = RecipientList.objects.create(unit=unit, name=f"Staff {tag}", audience="internal")
    people = []
    for start in range(0, count, 5000):
        chunk = Recipient.objects.bulk_create(
            Recipient(
                unit=unit,
                email=f"{tag}{i:06d}@example.edu",
                email_hash=address_hash(f"{tag}{i:06d}@example.edu"),
                category="staff",
                first_name="陳",
                last_name=f"大文{i}",
            )
            for i in range(start, min(start + 5000, count))
        )
        ListMembership.objects.bulk_create(
            ListMembership(recipient_list=target, recipient=r) for r in chunk
        )
        people.extend(chunk)
    Suppression.objects.bulk_create(
        Suppression(unit=unit, email_hash=r.email_hash, reason="manual")
        for i, r in enumerate(people)
        if i % 10 == 0
    )
    # Statistics, as autovacuum keeps them on a live database: without them the planner takes
    # the freshly loaded tables for empty and picks nested loops (17 ms a batch re-check
    # instead of 1.5 ms).
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return unit, identity, dm_type, target, [r for i, r in enumerate(people) if i % 10]


# --- workers --------------------------------------------------------------------------------------


def start_workers(env: dict, logs: Path) -> list[subprocess.Popen]:
    workers = []
    for n in range(2):
        log = (logs / f"worker{n}.log").open("wb")
        command = [sys.executable, "-m", "celery", "-A", "mlm", "worker", "--loglevel=WARNING",
                   "--concurrency=1", "--without-mingle", "--without-gossip",
                   "-n", f"bench{n}-{os.getpid()}@%h"]  # fmt: skip
        workers.append(
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        )
    time.sleep(6)
    return workers


def pool_pids(workers: list[subprocess.Popen]) -> list[int]:
    pids = []
    for worker in workers:
        pids.append(worker.pid)
        for task in Path(f"/proc/{worker.pid}/task").iterdir():
            pids.extend(int(p) for p in (task / "children").read_text().split())
    return pids


def peak_rss_mb(pids: list[int]) -> float:
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except FileNotFoundError:
            pass
    return peak / 1024


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait()


def run_app(campaign, sink: Sink, expected: int) -> tuple[float, float]:
    """(msg/s from the start action to the last message at the sink, seconds to the first)."""
    from campaigns.sending.start import campaign_start

    before = sink.stats()["count"]
    started = time.time()
    campaign_start(campaign=campaign)
    committed = time.time() - started
    while sink.stats()["count"] - before < 1:
        time.sleep(0.01)
    first = sink.stats()["first"] if before == 0 else time.time()
    print(f"  start action {committed:.2f} s (snapshot), first mail {first - started:.2f} s")
    stats = sink.wait(before + expected)
    return expected / (stats["last"] - started), first - started


# --- baselines ------------------------------------------------------------------------------------


def _bare_part(args) -> float:
    campaign_id, recipient_ids, port = args
    from django.db import connections

    from campaigns.mail import CampaignMessages
    from campaigns.models import Campaign
    from recipients.models import Recipient

    campaign = Campaign.objects.select_related("unit", "dm_type", "identity", "layout").get(
        pk=campaign_id
    )
    people = list(Recipient.objects.filter(pk__in=recipient_ids))
    connections.close_all()
    started = time.time()
    messages = CampaignMessages(campaign, sign=False)
    smtp = smtplib.SMTP("127.0.0.1", port)
    for i, person in enumerate(people):
        message = messages.build(person, delivery_id=i + 1)
        smtp.sendmail(message.built.from_addr, [person.email], message.built.raw)
    smtp.quit()
    return started


def _raw_part(args) -> float:
    raws, port = args
    started = time.time()
    smtp = smtplib.SMTP("127.0.0.1", port)
    for to, raw in raws:
        smtp.sendmail("news@eng.example.edu", [to], raw)
    smtp.quit()
    return started


def run_parallel(function, parts, sink: Sink, expected: int) -> float:
    from django.db import connections

    connections.close_all()  # each forked process opens its own
    before = sink.stats()["count"]
    with multiprocessing.get_context("fork").Pool(len(parts)) as pool:
        starts = pool.map(function, parts)
    stats = sink.wait(before + expected)
    return expected / (stats["last"] - min(starts))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sink", type=Path)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--big", type=int, default=100_000)
    args = parser.parse_args()
    if args.sink:
        run_sink(args.sink)
        return
    source = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mlm")
    os.environ["DATABASE_URL"] = prepare(source)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/7")
    os.environ.setdefault("DEBUG", "1")
    os.environ["DJANGO_SETTINGS_MODULE"] = "mlm.settings"
    folder = ROOT / "var" / "bench-dispatch"
    folder.mkdir(parents=True, exist_ok=True)
    sink = Sink(folder)
    os.environ.update(
        EMAIL_BACKEND="smtp", EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(sink.port),
        MLM_DISPATCH_PARALLEL=str(CONNECTIONS), MLM_DISPATCH_BATCH_SIZE="200",
    )  # fmt: skip
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    call_command("migrate", verbosity=0)
    try:
        unit, identity, dm_type, target, mailable = make_world(args.recipients, "a")
        expected = len(mailable)
        workers = start_workers(dict(os.environ), folder)
        try:
            app, first = run_app(
                make_campaign(unit, identity, dm_type, target, "app"), sink, expected
            )
            rss_small = peak_rss_mb(pool_pids(workers))
            print(f"app: {app:.0f} msg/s, first mail after {first:.2f} s, RSS {rss_small:.0f} MB")
            from mlm.services import sending_domain_create

            sending_domain_create(domain="eng.example.edu", selector="bench", by=None)
            stop_workers(workers)  # the signer is cached per process: start afresh
            workers = start_workers(dict(os.environ), folder)
            app_dkim, _ = run_app(
                make_campaign(unit, identity, dm_type, target, "dkim"), sink, expected
            )
            print(f"app with DKIM: {app_dkim:.0f} msg/s")
            from mlm.models import SendingDomain

            SendingDomain.objects.update(active=False)
            stop_workers(workers)
            ids = [r.pk for r in mailable]
            bare_campaign = make_campaign(unit, identity, dm_type, target, "bare")
            halves = [ids[i::CONNECTIONS] for i in range(CONNECTIONS)]
            bare = run_parallel(
                _bare_part, [(bare_campaign.pk, h, sink.port) for h in halves], sink, expected
            )
            print(f"bare pipeline: {bare:.0f} msg/s")
            from campaigns.mail import CampaignMessages

            messages = CampaignMessages(bare_campaign, sign=False)
            raws = [
                (r.email, messages.build(r, delivery_id=i + 1).built.raw)
                for i, r in enumerate(mailable)
            ]
            blast = run_parallel(
                _raw_part,
                [(raws[i::CONNECTIONS], sink.port) for i in range(CONNECTIONS)],
                sink,
                expected,
            )
            print(f"raw blast: {blast:.0f} msg/s")
            rss_big = 0.0
            if args.big:
                unit, identity, dm_type, target, big = make_world(args.big, "b")
                workers = start_workers(dict(os.environ), folder)
                run_app(make_campaign(unit, identity, dm_type, target, "big"), sink, len(big))
                rss_big = peak_rss_mb(pool_pids(workers))
                print(f"app at {args.big}: RSS {rss_big:.0f} MB")
        finally:
            stop_workers(workers)
    finally:
        sink.stop()
    print(
        f"dispatch: {app:.0f} msg/s = {app / bare:.2f} of bare pipeline, {app / blast:.2f} of "
        f"raw blast; DKIM on {app_dkim:.0f} msg/s = {app_dkim / app:.2f} of DKIM off; first mail "
        f"after {first:.2f} s; worker RSS {rss_small:.0f} MB at {args.recipients // 1000}k, "
        f"{rss_big:.0f} MB at {args.big // 1000}k"
    )


if __name__ == "__main__":
    main()
