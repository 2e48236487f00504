"""RFC 8058 one-click unsubscribes against the app under gunicorn and PostgreSQL.

Creates its own database (mlm_bench_unsub, next to DATABASE_URL's), migrates it, seeds one unit
with external recipients who granted a newsletter, and signs one distinct one-click token per
recipient. Then it starts gunicorn on a free loopback port (sync workers, DEBUG off, Redis-backed
rate limits as in production) and an open-loop load generator in this process: requests are
*scheduled* at a fixed rate (BENCH_RATE, default 300/s) for BENCH_SECONDS (default 20), each on
its own connection, and every latency is measured from its scheduled time, so a stalled server
cannot hide its queue (no coordinated omission; wrk without wrk2's fixed rate cannot do that).

Every POST must answer 200 within 5 s, and afterwards the ledger must hold a one-click
withdrawal for every request answered 200: a missing one counts as an error too. A baseline of
GET /health/ at the same rate follows, so that a busy machine shows in the detail line.
Everything it started is stopped; the database is dropped. Last line:
`one-click: p99 <ms> ms at <rps> req/s (<n> requests, <errors> errors)`.

The rate limit per client address is raised for the run (MLM_RATE_LIMITS=one_click_ip=...): all
requests come from 127.0.0.1, where in production they come from many mail providers. The
per-token limit and the counting in Redis stay as in production.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RATE = int(os.environ.get("BENCH_RATE", "300"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "20"))
WARMUP_SECONDS = 3
WORKERS = int(os.environ.get("BENCH_WORKERS", "4"))
THREADS = int(os.environ.get("BENCH_THREADS", "1"))  # more than 1: gunicorn's gthread workers
TIMEOUT = 5.0
BENCH_DB = "mlm_bench_unsub"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_env(port: int) -> dict[str, str]:
    source = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mlm")
    parts = urlsplit(source)
    if not parts.scheme.startswith("postgres"):
        sys.exit("bench/unsubscribe.py needs DATABASE_URL to point at PostgreSQL")
    env = dict(os.environ)
    env.update(
        DATABASE_URL=urlunsplit(parts._replace(path="/" + BENCH_DB)),
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        DEBUG="0",
        SECRET_KEY="bench-only-" + "k" * 50,
        MLM_ADDRESS_HASH_KEY="bench-only-address-hash-key",
        MLM_DKIM_ENCRYPTION_KEY=base64.urlsafe_b64encode(
            b"bench-only-dkim-key-32-bytes-ok!"
        ).decode(),
        SITE_URL=f"http://127.0.0.1:{port}",
        ALLOWED_HOSTS="127.0.0.1",
        MLM_RATE_LIMITS="one_click_ip=1000000/m",
        CONN_MAX_AGE="600",
        LOG_LEVEL="WARNING",
        EMAIL_BACKEND="console",
        DJANGO_SETTINGS_MODULE="mlm.settings",
    )
    return env


def recreate_database(env: dict[str, str]) -> None:
    import psycopg

    parts = urlsplit(env["DATABASE_URL"])
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def drop_database(env: dict[str, str]) -> None:
    import psycopg

    parts = urlsplit(env["DATABASE_URL"])
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def seed(count: int) -> list[str]:
    """One unit, a newsletter, `count` external recipients who granted it; one token each.

    Rows are written in bulk exactly as `consent.services.grant` writes them (event, then the
    folded subscription row), so that seeding takes seconds, not minutes.
    """
    import django

    django.setup()
    from django.db import connection, transaction

    from consent.models import Action, Channel, ConsentEvent, Subscription, SubscriptionState
    from consent.services import dm_type_create
    from consent.tokens import make_recipient_token
    from mlm.services import unit_create
    from recipients.addresses import address_hash
    from recipients.models import Category, Recipient

    with transaction.atomic():
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
            Recipient(unit=unit, email=e, email_hash=address_hash(e), category=Category.EXTERNAL)
            for e in emails
        )
        events = ConsentEvent.objects.bulk_create(
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
        )
        Subscription.objects.bulk_create(
            Subscription(
                unit=unit,
                recipient=e.recipient,
                dm_type=newsletter,
                state=SubscriptionState.GRANTED,
                event=e,
            )
            for e in events
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    campaign = uuid.uuid4()
    tokens = [
        make_recipient_token(recipient=r, dm_type=newsletter, campaign_code=campaign)
        for r in recipients
    ]
    connection.close()
    return tokens


def count_one_click_withdrawals() -> int:
    from django.db import connection

    from consent.models import Action, Channel, ConsentEvent

    connection.close()
    return ConsentEvent.objects.filter(action=Action.WITHDRAW, channel=Channel.ONE_CLICK).count()


def start_gunicorn(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    command = [
        str(Path(PYTHON).with_name("gunicorn")),
        "mlm.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(WORKERS),
        "--worker-class",
        "gthread" if THREADS > 1 else "sync",
        "--threads",
        str(THREADS),
        "--backlog",
        "2048",
        "--error-logfile",
        str(log),
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"gunicorn exited with {server.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    stop(server)
    sys.exit(f"gunicorn did not answer within 30 s; see {log}")


def cpu_seconds(server: subprocess.Popen, env: dict[str, str]) -> tuple[float, float]:
    """CPU time so far of the gunicorn workers and of their PostgreSQL backends.

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
                [BENCH_DB],
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


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def health_bytes(port: int) -> bytes:
    return f"GET /health/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()


def request_bytes(port: int, token: str) -> bytes:
    body = b"List-Unsubscribe=One-Click"
    return (
        f"POST /u/{token}/one-click HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "User-Agent: mlm-bench/1 (RFC 8058 one-click)\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


class _Exchange(asyncio.Protocol):
    """One request on its own connection; done when the server closes it (Connection: close).

    Plain protocol callbacks rather than streams and a task per request: the load generator
    shares the two cores with the server, so it must cost little (measured in the detail line).
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


async def paced(port: int, payloads: list[bytes], rate: int) -> tuple[list[float], int, float]:
    """Send the requests at `rate`/s; latencies (s) from each scheduled start."""
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
            async with asyncio.timeout(TIMEOUT - (loop.time() - scheduled)):
                transport, _ = await loop.create_connection(
                    lambda: _Exchange(payload, done), "127.0.0.1", port
                )
                try:
                    answer = await done
                finally:
                    transport.close()
            record(scheduled, answer[9:12] == b"200")
        except (TimeoutError, OSError):
            record(scheduled, False)

    for i, payload in enumerate(payloads):
        scheduled = start + i / rate
        loop.call_at(scheduled, lambda p=payload, t=scheduled: loop.create_task(exchange(p, t)))
    await finished
    return latencies, errors, loop.time() - start


def main() -> None:
    port = free_port()
    env = bench_env(port)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    recreate_database(env)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    warmup_count, count = RATE * WARMUP_SECONDS, RATE * SECONDS
    print(f"seeding {warmup_count + count} recipients with distinct tokens", flush=True)
    tokens = seed(warmup_count + count)
    assert len(set(tokens)) == len(tokens)
    log = Path(tempfile.mkdtemp(prefix="mlm-bench-")) / "gunicorn.log"
    server = start_gunicorn(env, port, log)
    try:
        kind = f"gthread workers of {THREADS} threads" if THREADS > 1 else "sync workers"
        print(f"gunicorn: {WORKERS} {kind} on 127.0.0.1:{port}", flush=True)
        requests = [request_bytes(port, t) for t in tokens]
        _, warmup_errors, _ = asyncio.run(paced(port, requests[:warmup_count], RATE))
        load = os.getloadavg()[0]
        cpu_before = cpu_seconds(server, env)
        client_before = time.process_time()
        latencies, errors, elapsed = asyncio.run(paced(port, requests[warmup_count:], RATE))
        client_ms = (time.process_time() - client_before) / count * 1000
        cpu_after = cpu_seconds(server, env)
        app_ms, db_ms = ((a - b) / count * 1000 for a, b in zip(cpu_after, cpu_before, strict=True))
        # Baseline in the same run: the cheapest page (/health/, one query) at the same rate, so
        # that a busy machine shows itself in the detail line.
        baseline, _, _ = asyncio.run(paced(port, [health_bytes(port)] * (RATE * 5), RATE))
    finally:
        stop(server)
    withdrawn = count_one_click_withdrawals()
    # Every request answered 200 must have left its withdrawal in the ledger: one without is a
    # lost unsubscribe, the worst error of all.
    answered = warmup_count + count - warmup_errors - errors
    missing = max(0, answered - withdrawn)
    errors += missing
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    base = sorted(x * 1000 for x in baseline)
    p99 = ms[int(0.99 * (len(ms) - 1))]
    achieved = len(ms) / elapsed
    print(
        f"latency ms: p50 {statistics.median(ms):.1f}, p90 {ms[int(0.9 * (len(ms) - 1))]:.1f}, "
        f"p99 {p99:.1f}, max {ms[-1]:.1f}; withdrawals recorded {withdrawn} "
        f"(missing {missing}); baseline GET /health/ p99 {base[int(0.99 * (len(base) - 1))]:.1f} "
        f"ms; CPU per one-click: app {app_ms:.2f} ms, PostgreSQL {db_ms:.2f} ms, load generator "
        f"{client_ms:.2f} ms; load average at "
        f"start {load:.1f}; gunicorn log {log}",
        flush=True,
    )
    drop_database(env)
    print(
        f"one-click: p99 {p99:.1f} ms at {achieved:.0f} req/s ({len(ms)} requests, {errors} errors)"
    )


if __name__ == "__main__":
    main()
