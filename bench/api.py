"""Consent writes through the REST API against the app under gunicorn and PostgreSQL, and a
bulk membership call of 1,000 addresses.

Creates its own database (mlm_bench_api, next to DATABASE_URL's), migrates it, seeds one unit
with a newsletter that external recipients granted, an external list and a consent-writer and
an editor API key. Then it starts gunicorn on a free loopback port (sync workers, DEBUG off,
the per-key rate limit raised: it is not what is measured) and an open-loop load generator in
this process: POST /api/v1/consent/ requests are *scheduled* at BENCH_RATE (default 200/s) for
BENCH_SECONDS (default 30), each on its own connection, every latency measured from its
scheduled time. They alternate a withdrawal by a seeded recipient and a grant, with its
evidence and notice version, by a new address (a recipient made on the way). Every request
must answer 201 within 5 s, and afterwards the ledger must hold one API event per 201: a
missing one counts as an error.

The floor, in the same run: GET /api/v1/key/ (the cheapest authenticated call) at the same
rate on the same server, printed before the last line. Then one POST of 1,000 addresses to
/api/v1/lists/<code>/members/ (taken as the median of three, each followed by its removal) if
this build has that endpoint. Everything it started is stopped; the database is dropped. Last
line: `api: p99 <ms> at <n> req/s (<requests> requests, <e> errors); bulk 1000 members in <s> s`.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import urllib.error
import urllib.request

from _served import (
    cpu_seconds,
    drop_database,
    paced,
    prepare,
    seed_newsletter,
    start_gunicorn,
    stop,
)

RATE = int(os.environ.get("BENCH_RATE", "200"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "30"))
WARMUP_SECONDS = 3
FLOOR_SECONDS = 5
WORKERS = int(os.environ.get("BENCH_WORKERS", "4"))
BULK = 1000
BULK_ROUNDS = 3
BENCH_DB = "mlm_bench_api"


def seed(count: int) -> tuple[str, str, str, list[str]]:
    """`count` external recipients who granted a newsletter, a list, a consent-writer key and an
    editor key; returns the list's code, the two secrets and the seeded addresses."""
    import django

    django.setup()
    from django.db import connection, transaction

    from api.models import ApiRole
    from api.services import api_key_create
    from recipients.models import Audience
    from recipients.services import list_create

    with transaction.atomic():
        unit, _, recipients = seed_newsletter(count)
        guests = list_create(unit=unit, name="Guests", audience=Audience.EXTERNAL, by=None)
        _, writer = api_key_create(
            unit=unit, name="Alumni portal", role=ApiRole.CONSENT_WRITER, expires_at=None, by=None
        )
        _, editor = api_key_create(
            unit=unit, name="CRM", role=ApiRole.EDITOR, expires_at=None, by=None
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    connection.close()
    return str(guests.code), writer, editor, [r.email for r in recipients]


def consent_body(i: int, seeded: list[str]) -> dict:
    """Even: a seeded recipient withdraws; odd: a new address grants, with its evidence."""
    if i % 2 == 0:
        return {
            "email": seeded[i // 2],
            "action": "withdraw",
            "dm_type": "newsletter",
            "evidence": {"source_system": "CRM", "timestamp": "2026-11-30T09:15:00Z"},
        }
    return {
        "email": f"visitor{i}@partner.example.org",
        "action": "grant",
        "dm_type": "newsletter",
        "evidence": {
            "source_system": "Open day registration",
            "timestamp": "2026-11-30T09:15:00Z",
            "form_text": "Yes, send me the faculty newsletter.",
            "form_url": "https://openday.example.edu/register",
            "ip_address": "203.0.113.7",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "notice_version": 1,
        },
    }


def request_bytes(port: int, secret: str, method: str, path: str, body: dict | None) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {secret}\r\n"
        "Connection: close\r\n"
    )
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    return (head + "\r\n").encode() + data


def call(port: int, secret: str, path: str, body: dict) -> tuple[float, int, dict]:
    """One POST; its wall time (s), status and JSON answer."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        method="POST",
    )
    start = time.perf_counter()
    try:
        # An http:// loopback URL made above, never a file: or other scheme.
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
            status, data = answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        status, data = error.code, json.loads(error.read() or b"{}")
    return time.perf_counter() - start, status, data


def bulk_seconds(port: int, secret: str, list_code: str, addresses: list[str]) -> float | None:
    """Median time of a bulk add of the addresses (each round removes them again); None if
    this build has no bulk membership endpoint."""
    members = f"/api/v1/lists/{list_code}/members/"
    times = []
    for _ in range(BULK_ROUNDS):
        took, status, answer = call(port, secret, members, {"addresses": addresses})
        if status == 404:
            return None
        if status != 200 or answer.get("counts") != {"added": len(addresses)}:
            raise SystemExit(f"the bulk call answered {status}: {answer}")
        times.append(took)
        _, status, answer = call(port, secret, members + "remove/", {"addresses": addresses})
        if status != 200:
            raise SystemExit(f"the bulk removal answered {status}: {answer}")
    return statistics.median(times)


def count_api_events() -> int:
    from django.db import connection

    from consent.models import Channel, ConsentEvent

    connection.close()
    return ConsentEvent.objects.filter(channel=Channel.API).count()


def percentile(sorted_ms: list[float], fraction: float) -> float:
    return sorted_ms[int(fraction * (len(sorted_ms) - 1))]


def main() -> None:
    port, env = prepare(BENCH_DB, "bench/api.py", MLM_API_RATE="100000000/m")
    warmup_count, count = RATE * WARMUP_SECONDS, RATE * SECONDS
    total = warmup_count + count
    print(f"seeding {total // 2 + BULK} recipients who granted a newsletter", flush=True)
    list_code, writer, editor, seeded = seed(total // 2 + 1 + BULK)
    bulk_addresses, seeded = seeded[-BULK:], seeded[:-BULK]
    server, log = start_gunicorn(env, port, workers=WORKERS)
    try:
        print(f"gunicorn: {WORKERS} sync workers on 127.0.0.1:{port}", flush=True)
        requests = [
            request_bytes(port, writer, "POST", "/api/v1/consent/", consent_body(i, seeded))
            for i in range(total)
        ]
        _, warmup_errors, _ = asyncio.run(paced(port, requests[:warmup_count], RATE, ok=b"201"))
        load = os.getloadavg()[0]
        cpu_before = cpu_seconds(server, env, BENCH_DB)
        client_before = time.process_time()
        latencies, errors, elapsed = asyncio.run(
            paced(port, requests[warmup_count:], RATE, ok=b"201")
        )
        client_ms = (time.process_time() - client_before) / count * 1000
        cpu_after = cpu_seconds(server, env, BENCH_DB)
        app_ms, db_ms = ((a - b) / count * 1000 for a, b in zip(cpu_after, cpu_before, strict=True))
        # The floor in the same run: the cheapest authenticated call at the same rate.
        key_get = request_bytes(port, writer, "GET", "/api/v1/key/", None)
        floor_before = cpu_seconds(server, env, BENCH_DB)
        floor, floor_errors, _ = asyncio.run(paced(port, [key_get] * (RATE * FLOOR_SECONDS), RATE))
        floor_after = cpu_seconds(server, env, BENCH_DB)
        floor_app_ms, floor_db_ms = (
            (a - b) / (RATE * FLOOR_SECONDS) * 1000
            for a, b in zip(floor_after, floor_before, strict=True)
        )
        bulk = bulk_seconds(port, editor, list_code, bulk_addresses)
    finally:
        stop(server)
    recorded = count_api_events()
    # Every 201 must have left its event in the ledger: one without is a lost consent.
    answered = total - warmup_errors - errors
    missing = max(0, answered - recorded)
    errors += missing
    ms = sorted(x * 1000 for x in latencies)
    floor_ms = sorted(x * 1000 for x in floor)
    p99 = percentile(ms, 0.99)
    achieved = len(ms) / elapsed
    print(
        f"latency ms: p50 {statistics.median(ms):.1f}, p90 {percentile(ms, 0.9):.1f}, "
        f"p99 {p99:.1f}, max {ms[-1]:.1f}; consent events recorded {recorded} (missing "
        f"{missing}); CPU per consent write: app {app_ms:.2f} ms, PostgreSQL {db_ms:.2f} ms, "
        f"load generator {client_ms:.2f} ms; load average at start {load:.1f}; gunicorn log "
        f"{log}",
        flush=True,
    )
    print(
        f"floor: GET /api/v1/key/ at {RATE} req/s p50 {statistics.median(floor_ms):.1f} ms, "
        f"p99 {percentile(floor_ms, 0.99):.1f} ms ({floor_errors} errors); CPU per request: app "
        f"{floor_app_ms:.2f} ms, PostgreSQL {floor_db_ms:.2f} ms",
        flush=True,
    )
    if bulk is None:
        print("bulk: this build has no POST /api/v1/lists/<code>/members/; not measured")
    drop_database(env, BENCH_DB)
    bulk_text = "n/a" if bulk is None else f"{bulk:.2f}"
    print(
        f"api: p99 {p99:.1f} at {achieved:.0f} req/s ({len(ms)} requests, {errors} errors); "
        f"bulk {BULK} members in {bulk_text} s"
    )


if __name__ == "__main__":
    main()
