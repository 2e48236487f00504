"""What the benches that serve the app share (bench/unsubscribe.py, bench/webhooks.py,
bench/api.py): a PostgreSQL database of their own next to DATABASE_URL's, migrated; a newsletter
seeded in bulk; gunicorn on a free loopback port, its CPU time and that of its PostgreSQL
backends; and an open-loop client that sends each request on its own connection at a fixed rate.

Imported as a sibling module (the benches run as scripts, so bench/ is first on sys.path); the
leading underscore keeps it out of `make bench`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from consent.models import DMType
    from mlm.models import SenderUnit
    from recipients.models import Recipient

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_env(port: int, database: str, script: str, **settings: str) -> dict[str, str]:
    """The environment of the app, on `database`, with `settings` added to the common ones."""
    source = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mlm")
    parts = urlsplit(source)
    if not parts.scheme.startswith("postgres"):
        sys.exit(f"{script} needs DATABASE_URL to point at PostgreSQL")
    env = dict(os.environ)
    env.update(
        DATABASE_URL=urlunsplit(parts._replace(path="/" + database)),
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        DEBUG="0",
        SECRET_KEY="bench-only-" + "k" * 50,
        MLM_ADDRESS_HASH_KEY="bench-only-address-hash-key",
        MLM_DKIM_ENCRYPTION_KEY=base64.urlsafe_b64encode(
            b"bench-only-dkim-key-32-bytes-ok!"
        ).decode(),
        SITE_URL=f"http://127.0.0.1:{port}",
        ALLOWED_HOSTS="127.0.0.1",
        CONN_MAX_AGE="600",
        LOG_LEVEL="WARNING",
        EMAIL_BACKEND="console",
        DJANGO_SETTINGS_MODULE="mlm.settings",
    )
    env.update(settings)
    return env


def _admin_url(env: dict[str, str]) -> str:
    return urlunsplit(urlsplit(env["DATABASE_URL"])._replace(path="/postgres"))


def recreate_database(env: dict[str, str], database: str) -> None:
    import psycopg

    with psycopg.connect(_admin_url(env), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')


def drop_database(env: dict[str, str], database: str) -> None:
    import psycopg

    with psycopg.connect(_admin_url(env), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def prepare(database: str, script: str, **settings: str) -> tuple[int, dict[str, str]]:
    """A free port and the app's environment (also made this process's), on `database`, created
    afresh and migrated."""
    port = free_port()
    env = bench_env(port, database, script, **settings)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    recreate_database(env, database)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    return port, env


def seed_newsletter(count: int) -> tuple[SenderUnit, DMType, list[Recipient]]:
    """One unit, a newsletter, `count` external recipients (reader<i>@example.com) who granted it.

    Rows are written in bulk exactly as `consent.services.grant` writes them (event, then the
    folded subscription row), so that seeding takes seconds, not minutes. Call it after
    `django.setup()`, in a transaction.
    """
    from campaigns.units import unit_create
    from consent.models import Action, Channel, ConsentEvent, Subscription, SubscriptionState
    from consent.services import dm_type_create
    from recipients.addresses import address_hash
    from recipients.models import Category, Recipient

    unit = unit_create(
        name="Faculty of Engineering",
        slug="engineering",
        postal_address="1 University Road, Hong Kong",
        by=None,
    )
    newsletter = dm_type_create(
        unit=unit, key="newsletter", name="Newsletter", notice_text="Monthly news.", by=None
    )
    notice = newsletter.current_notice
    emails = [f"reader{i}@example.com" for i in range(count)]
    recipients = Recipient.objects.bulk_create(
        (
            Recipient(unit=unit, email=e, email_hash=address_hash(e), category=Category.EXTERNAL)
            for e in emails
        ),
        batch_size=5000,
    )
    events = ConsentEvent.objects.bulk_create(
        (
            ConsentEvent(
                unit=unit,
                recipient=r,
                dm_type=newsletter,
                action=Action.GRANT,
                channel=Channel.IMPORT,
                evidence="Bench seed: newsletter sign-up sheet",
                notice=notice,
                actor_label="bench",
            )
            for r in recipients
        ),
        batch_size=5000,
    )
    Subscription.objects.bulk_create(
        (
            Subscription(
                unit=unit,
                recipient=e.recipient,
                dm_type=newsletter,
                state=SubscriptionState.GRANTED,
                event=e,
            )
            for e in events
        ),
        batch_size=5000,
    )
    return unit, newsletter, recipients


def start_gunicorn(
    env: dict[str, str],
    port: int,
    *,
    workers: int,
    threads: int | None = None,
    timeout: int | None = None,
    output_to_log: bool = False,
) -> tuple[subprocess.Popen, Path]:
    """gunicorn serving the app once /health/ answers, and its log. Sync workers unless
    `threads` is above 1 (gthread); gunicorn's default timeout unless `timeout`; its stdout and
    stderr this process's unless `output_to_log`."""
    log = Path(tempfile.mkdtemp(prefix="mlm-bench-")) / "gunicorn.log"
    command = [
        str(Path(PYTHON).with_name("gunicorn")),
        "mlm.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
    ]
    if threads is not None:
        command += ["--worker-class", "gthread" if threads > 1 else "sync"]
        command += ["--threads", str(threads)]
    command += ["--backlog", "2048"]
    if timeout is not None:
        command += ["--timeout", str(timeout)]
    command += ["--error-logfile", str(log)]
    if output_to_log:
        with log.open("ab") as sink:
            server = subprocess.Popen(
                command, cwd=ROOT, env=env, start_new_session=True, stdout=sink, stderr=sink
            )
    else:
        server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"gunicorn exited with {server.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=2) as r:
                if r.status == 200:
                    return server, log
        except OSError:
            time.sleep(0.2)
    stop(server)
    sys.exit(f"gunicorn did not answer within 30 s; see {log}")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def cpu_seconds(
    server: subprocess.Popen, env: dict[str, str], database: str
) -> tuple[float, float]:
    """CPU time so far of the gunicorn workers and of their PostgreSQL backends (on `database`).

    Divided by the requests served, it is the cost of one request whatever else the machine
    runs: two cores give at most 2000 / (ms per request) requests per second.
    """
    import psycopg

    workers = subprocess.run(
        ["pgrep", "-P", str(server.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        backends = [
            str(row[0])
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [database],
            )
        ]

    def ticks(pids: list[str]) -> int:
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime + stime
        return total

    hz = os.sysconf("SC_CLK_TCK")
    return ticks(workers) / hz, ticks(backends) / hz


def health_bytes(port: int) -> bytes:
    """GET /health/, the cheapest page (one query): the baseline of a run."""
    return f"GET /health/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()


class Exchange(asyncio.Protocol):
    """One request on its own connection; done when the server closes it (Connection: close).

    Plain protocol callbacks rather than streams and a task per request: the load generator
    shares the cores with the server, so it must cost little.
    """

    def __init__(self, payload: bytes, done: asyncio.Future) -> None:
        self.payload, self.done, self.received = payload, done, bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(bytes(self.received))


async def paced(
    port: int, payloads: list[bytes], rate: int, *, ok: bytes = b"200", timeout: float = 5.0
) -> tuple[list[float], int, float]:
    """Send the requests at `rate`/s, each on its own connection; latencies (s) from each
    scheduled start (no coordinated omission), and the errors: answers without status `ok` or
    none within `timeout` seconds."""
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    finished = loop.create_future()
    pending = len(payloads)

    def record(scheduled: float, ok: bool) -> None:
        nonlocal errors, pending
        latencies.append(loop.time() - scheduled)
        errors += not ok
        pending -= 1
        if pending == 0:
            finished.set_result(None)

    async def exchange(payload: bytes, scheduled: float) -> None:
        done = loop.create_future()
        try:
            async with asyncio.timeout(timeout - (loop.time() - scheduled)):
                transport, _ = await loop.create_connection(
                    lambda: Exchange(payload, done), "127.0.0.1", port
                )
                try:
                    answer = await done
                finally:
                    transport.close()
            record(scheduled, answer[9:12] == ok)
        except (TimeoutError, OSError):
            record(scheduled, False)

    for i, payload in enumerate(payloads):
        scheduled = start + i / rate
        loop.call_at(scheduled, lambda p=payload, t=scheduled: loop.create_task(exchange(p, t)))
    await finished
    return latencies, errors, loop.time() - start
