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
import os
import statistics
import time
import uuid

from _served import (
    cpu_seconds,
    drop_database,
    health_bytes,
    paced,
    prepare,
    seed_newsletter,
    start_gunicorn,
    stop,
)

RATE = int(os.environ.get("BENCH_RATE", "300"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "20"))
WARMUP_SECONDS = 3
WORKERS = int(os.environ.get("BENCH_WORKERS", "4"))
THREADS = int(os.environ.get("BENCH_THREADS", "1"))  # more than 1: gunicorn's gthread workers
BENCH_DB = "mlm_bench_unsub"


def seed(count: int) -> list[str]:
    """One unit, a newsletter, `count` external recipients who granted it (written in bulk by
    `_served.seed_newsletter`); one token each."""
    import django

    django.setup()
    from django.db import connection, transaction

    from consent.tokens import make_recipient_token

    with transaction.atomic():
        _, newsletter, recipients = seed_newsletter(count)
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


def main() -> None:
    port, env = prepare(BENCH_DB, "bench/unsubscribe.py", MLM_RATE_LIMITS="one_click_ip=1000000/m")
    warmup_count, count = RATE * WARMUP_SECONDS, RATE * SECONDS
    print(f"seeding {warmup_count + count} recipients with distinct tokens", flush=True)
    tokens = seed(warmup_count + count)
    assert len(set(tokens)) == len(tokens)
    server, log = start_gunicorn(env, port, workers=WORKERS, threads=THREADS)
    try:
        kind = f"gthread workers of {THREADS} threads" if THREADS > 1 else "sync workers"
        print(f"gunicorn: {WORKERS} {kind} on 127.0.0.1:{port}", flush=True)
        requests = [request_bytes(port, t) for t in tokens]
        _, warmup_errors, _ = asyncio.run(paced(port, requests[:warmup_count], RATE))
        load = os.getloadavg()[0]
        cpu_before = cpu_seconds(server, env, BENCH_DB)
        client_before = time.process_time()
        latencies, errors, elapsed = asyncio.run(paced(port, requests[warmup_count:], RATE))
        client_ms = (time.process_time() - client_before) / count * 1000
        cpu_after = cpu_seconds(server, env, BENCH_DB)
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
    drop_database(env, BENCH_DB)
    print(
        f"one-click: p99 {p99:.1f} ms at {achieved:.0f} req/s ({len(ms)} requests, {errors} errors)"
    )


if __name__ == "__main__":
    main()
