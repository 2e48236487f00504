"""Dispatch survives its services restarting: Redis without persistence, and PostgreSQL, each
restarted while a campaign sends through real `celery worker` processes to a real SMTP sink.

Redis runs as a server of the test's own (same binary, its own port), so that `shutdown nosave`
loses exactly what a production restart loses — every queued task message — without touching
the Redis other tests use. PostgreSQL is the cluster the tests run on, restarted for real.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import OperationalError, connection

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from campaigns.sending.recovery import deliveries_recover
from campaigns.sending.start import campaign_start
from tests.personas import make_world
from tests.processes import wait_for
from tests.system.conftest import BATCH, LEASE, Workers
from tests.system.smtp_sink import SMTPSink
from tests.system.test_dispatch import (
    _assert_no_duplicates,
    _counts,
    _internal_campaign,
)

D = DeliveryStatus
TOTAL = 3000
CONCURRENCY = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A `redis-server` on its own port, without persistence, like production's broker."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder, self.process = _free_port(), folder, None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self.answers, timeout=20, message="redis-server did not start")

    def answers(self) -> bool:
        found = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
        )
        return found.stdout.strip() == "PONG"

    def shutdown_nosave(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], check=False)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _drop_publisher(app) -> None:
    """Forget the app's pooled broker connections, as Celery itself does after a fork (it has
    no public call to point a live app at another broker). The pools stay open in kombu's
    registry, keyed by broker, for when the app points back."""
    app._pool = None
    app.amqp._producer_pool = None


@contextlib.contextmanager
def broker(url: str) -> Iterator[None]:
    """Point this process's Celery app (what `campaign_start` and the recovery sweep publish
    through) at another broker, and back afterwards."""
    from mlm.celery import app

    before = app.conf.broker_url
    _drop_publisher(app)
    app.conf.broker_url = url
    try:
        yield
    finally:
        _drop_publisher(app)
        app.conf.broker_url = before


@pytest.fixture
def world(transactional_db, flushed_broker):
    return make_world()


def _sweep_until_sent(campaign: Campaign, workers: Workers, timeout: float) -> None:
    """What beat does every MLM_DISPATCH_SWEEP_SECONDS: recover, until the campaign is sent."""

    def sent() -> bool:
        try:
            deliveries_recover()
            status = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True)[0]
        except OperationalError:  # the database is still coming back
            connection.close()
            return False
        return status == CampaignStatus.SENT

    wait_for(sent, timeout=timeout, interval=1, message=f"not sent\n{workers.logs()}")


def _assert_each_once_or_in_doubt(campaign: Campaign, sink: SMTPSink) -> Counter:
    counts = Counter(_counts(campaign))
    assert set(counts) <= {D.SENT, D.IN_DOUBT}, counts
    assert counts[D.SENT] + counts[D.IN_DOUBT] == TOTAL  # nobody lost
    assert counts[D.IN_DOUBT] <= BATCH * CONCURRENCY  # at most the rows in flight
    _assert_no_duplicates(sink)
    at_sink = set(sink.message_ids())
    sent_ids = set(
        Delivery.objects.filter(campaign=campaign, status=D.SENT).values_list(
            "message_id", flat=True
        )
    )
    assert sent_ids <= at_sink
    assert len(at_sink - sent_ids) <= counts[D.IN_DOUBT]
    return counts


def test_redis_restarted_without_persistence_mid_campaign(world, sink, workers, private_redis):
    """I7: Redis shut down with `nosave` at a third of a campaign and started again: the workers
    consume again within 60 s, the recovery sweep re-queues the batch messages Redis lost, and
    the campaign completes with nobody lost and no duplicate beyond the in-flight rows."""
    campaign = _internal_campaign(world, TOTAL)
    sink.slow(2)
    env = {"REDIS_URL": private_redis.url, "CELERY_BROKER_URL": private_redis.url}
    started = [workers.start(concurrency=CONCURRENCY, **env)]
    with broker(private_redis.url):
        campaign_start(campaign=campaign)
        sink.wait_for(TOTAL // 3, timeout=180)
        private_redis.shutdown_nosave()
        time.sleep(3)  # batches in flight finish or are cancelled; nothing new is consumed
        at_restart = len(sink.messages)
        private_redis.start()
        restarted = time.monotonic()

        def consuming() -> bool:
            with contextlib.suppress(Exception):  # the sweep's publish may find Redis waking
                deliveries_recover()
            return len(sink.messages) > at_restart

        wait_for(consuming, timeout=60 + LEASE, interval=1, message=workers.logs())
        back_after = time.monotonic() - restarted
        _sweep_until_sent(campaign, workers, timeout=240)
    counts = _assert_each_once_or_in_doubt(campaign, sink)
    print(f"redis restart: consuming again after {back_after:.1f} s; {dict(counts)}")
    assert back_after < 60
    assert all(worker.process.poll() is None for worker in started), "a worker exited"


def _restart_postgresql() -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
    )


def test_postgresql_restarted_mid_campaign(world, sink, workers):
    """I7: PostgreSQL restarted at a third of a campaign: tasks retry with backoff, no worker
    exits for good, the campaign completes, and no row stays `sending` past its lease."""
    campaign = _internal_campaign(world, TOTAL)
    sink.slow(2)
    started = [workers.start(concurrency=CONCURRENCY)]
    campaign_start(campaign=campaign)
    sink.wait_for(TOTAL // 3, timeout=180)
    _restart_postgresql()
    connection.close()
    _sweep_until_sent(campaign, workers, timeout=300)
    counts = _assert_each_once_or_in_doubt(campaign, sink)
    print(f"postgresql restart: {dict(counts)}")
    assert not Delivery.objects.filter(campaign=campaign, status=D.SENDING).exists()
    assert all(worker.process.poll() is None for worker in started), "a worker exited"
    # Celery's line for a task retried with backoff, in some worker's log
    assert any("Retry in" in worker.log() for worker in started), workers.logs()
