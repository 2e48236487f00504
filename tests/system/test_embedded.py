"""The embedded default under faults: its worker and its database killed with SIGKILL while a
campaign sends, and the unit pages walked on its own PostgreSQL.

`make run` runs on a clean copy; the test reads the embedded database through its socket, and
finds the children to kill in var/embedded.json, where the supervisor names them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.processes import wait_for
from tests.system.make_run import Output, free_port, fresh_clone, make_run

RECIPIENTS = 3000
BATCH = 50
LEASE = 15

# A campaign to RECIPIENTS staff of a unit of its own, due now; prints its id. It runs in the
# clean copy's own environment, on the embedded database.
MAKE_CAMPAIGN = """
import django, sys
django.setup()
from datetime import timedelta
from types import SimpleNamespace
from django.contrib.auth import get_user_model
from django.utils import timezone
from campaigns.models import Campaign, CampaignStatus
from mlm.models import Role
from campaigns.units import unit_create
from mlm.services import membership_set
from recipients.addresses import address_hash
from recipients.models import Audience, Category, ListMembership, Recipient
from tests.campaigns import factories

name = sys.argv[1]
unit = unit_create(name=name, slug=name, postal_address="1 University Road, Hong Kong", by=None)
author = get_user_model().objects.create_user(f"{name}-author")
membership_set(unit=unit, user=author, role=Role.EDITOR, by=None)
events = factories.dm_type(unit, key="events", internal_default=True)
staff = factories.recipient_list(unit, audience=Audience.INTERNAL, name="Staff")
emails = [f"{name}.{i:05d}@example.edu" for i in range(int(sys.argv[2]))]
people = Recipient.objects.bulk_create(
    Recipient(unit=unit, email=e, email_hash=address_hash(e), category=Category.STAFF)
    for e in emails
)
ListMembership.objects.bulk_create(
    ListMembership(recipient_list=staff, recipient=p) for p in people
)
campaign = factories.campaign(
    SimpleNamespace(unit=unit, bob=author), dm_type=events, audience=Audience.INTERNAL,
    lists=[staff],
)
Campaign.objects.filter(pk=campaign.pk).update(
    status=CampaignStatus.SCHEDULED, scheduled_at=timezone.now() - timedelta(seconds=1)
)
print(campaign.pk)
"""


@dataclass
class Embedded:
    workdir: Path
    port: int
    output: Output

    @property
    def var(self) -> Path:
        return self.workdir / "var"

    def pid(self, child: str) -> int:
        return json.loads((self.var / "embedded.json").read_text())[child]

    def kill(self, child: str) -> int:
        pid = self.pid(child)
        os.kill(pid, signal.SIGKILL)
        return pid

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        """Read the embedded database; None while it is down."""
        try:
            with psycopg.connect(
                host=str(self.var / "run"), user="postgres", dbname="mlm", connect_timeout=2
            ) as conn:
                return conn.execute(sql, params or []).fetchall()
        except psycopg.OperationalError:
            return None

    def python(self, code: str, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        result = subprocess.run(
            [".venv/bin/python", "-c", code, *args],
            cwd=self.workdir, env={**env, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "mlm.settings"},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def counts(self, campaign_id: int) -> dict[str, int]:
        rows = self.query(
            "SELECT status, count(*) FROM campaigns_delivery WHERE campaign_id = %s "
            "GROUP BY status",
            [campaign_id],
        )
        return dict(rows or [])

    def campaign_status(self, campaign_id: int) -> str | None:
        rows = self.query("SELECT status FROM campaigns_campaign WHERE id = %s", [campaign_id])
        return rows[0][0] if rows else None

    def outbox_per_address(self, name: str) -> dict[str, int]:
        rows = self.query(
            "SELECT recipients, count(*) FROM mlm_outboxmessage WHERE recipients LIKE %s "
            "GROUP BY recipients",
            [f"%{name}.%"],
        )
        return dict(rows or [])


@pytest.fixture(scope="module")
def embedded() -> Iterator[Embedded]:
    with fresh_clone() as workdir:
        yield from _started(workdir)


def _started(workdir: Path) -> Iterator[Embedded]:
    port = free_port()
    # A short lease and sweep, so that recovery after a kill is seen within the test.
    settings = {
        "MLM_DISPATCH_LEASE_SECONDS": str(LEASE),
        "EMAIL_TIMEOUT": "3",  # the lease must outlast it; the Outbox never waits on a server
        "MLM_DISPATCH_SWEEP_SECONDS": "2",
        "MLM_DISPATCH_BATCH_SIZE": str(BATCH),
    }
    with make_run(workdir, port, **settings) as output:
        output.wait_for(r"MLM is running at", timeout=600)
        yield Embedded(workdir, port, output)


def _send_and_kill(embedded: Embedded, name: str, child: str) -> tuple[int, dict[str, int]]:
    """Start a campaign, SIGKILL `child` once some mail is out, and wait for the campaign to
    end; its id and its deliveries by status."""
    campaign_id = int(embedded.python(MAKE_CAMPAIGN, name, str(RECIPIENTS)).strip())
    wait_for(
        lambda: embedded.counts(campaign_id).get("sent", 0) >= 300,
        timeout=120,
        message=f"no mail went out: {embedded.counts(campaign_id)}\n{embedded.output.text()}",
    )
    killed = embedded.kill(child)
    embedded.output.wait_for(rf"The {child} stopped \(killed by SIGKILL\)", timeout=30)
    embedded.output.wait_for(rf"Restarted the {child}", timeout=30)
    assert embedded.pid(child) != killed
    wait_for(
        lambda: embedded.campaign_status(campaign_id) == "sent",
        timeout=240,
        interval=1,
        message=f"campaign not finished: {embedded.counts(campaign_id)}\n"
        + embedded.output.text()[-3000:],
    )
    return campaign_id, embedded.counts(campaign_id)


def _assert_at_most_once(embedded: Embedded, name: str, counts: dict[str, int]) -> None:
    """I7: every delivery ended sent or in doubt, and no address got the mail twice."""
    assert set(counts) <= {"sent", "in_doubt"}, counts
    assert sum(counts.values()) == RECIPIENTS
    per_address = embedded.outbox_per_address(name)
    assert max(per_address.values()) == 1
    # Sent rows are in the Outbox; in-doubt ones may or may not have been handed over.
    assert counts["sent"] <= len(per_address) <= RECIPIENTS


def test_a_worker_killed_mid_send_is_restarted_and_the_campaign_completes(embedded):
    """I7, I10: the supervisor restarts the killed worker; rows it held become in doubt after
    their lease, exactly as in production, and the rest of the campaign is sent once."""
    _, counts = _send_and_kill(embedded, "killworker", "worker")
    _assert_at_most_once(embedded, "killworker", counts)
    assert counts.get("in_doubt", 0) <= BATCH  # one solo worker: at most its one batch


def test_the_database_killed_mid_send_is_restarted_and_the_campaign_completes(embedded):
    """I7, I10: PostgreSQL killed with SIGKILL recovers from its WAL under the supervisor; the
    worker's batch in flight fails or ends in doubt, and nothing is sent twice."""
    _, counts = _send_and_kill(embedded, "killdb", "database")
    _assert_at_most_once(embedded, "killdb", counts)
    assert embedded.query("SELECT 1") == [(1,)]


def test_every_unit_page_answers_on_the_embedded_postgresql(embedded):
    """I8 and one engine: the isolation walk (every unit URL, as its admin and as an outsider)
    runs on the embedded PostgreSQL and Redis, in the clean copy's own environment."""
    sockets = embedded.var / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL=f"postgres://postgres@{urllib.parse.quote(str(sockets), safe='')}/mlm",
        REDIS_URL=f"unix://{sockets}/redis.sock?db=3",
        MLM_VAR_DIR=str(embedded.var),
    )
    subprocess.run(
        [".venv/bin/python", "-m", "pip", "install", "--quiet", "-e", ".[dev]"],
        cwd=embedded.workdir, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    result = subprocess.run(
        [".venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/mlm/test_isolation.py"],
        cwd=embedded.workdir, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout, result.stdout
    version = embedded.query("SHOW server_version")[0][0]
    assert version.startswith("18"), version
