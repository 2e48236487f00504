"""A bulk membership call of the REST API: 1,000 addresses put on a list in one request.

Creates its own database (mlm_bench_api_bulk, next to DATABASE_URL's), migrates it, seeds one
unit with 1,000 external recipients (in bulk), an external list and an editor API key, and
starts gunicorn on a free loopback port (one sync worker, DEBUG off). Then it times, over HTTP
with a warmed-up connection pool on the server's side, BENCH_ROUNDS (default 5) rounds of
POST /api/v1/lists/<code>/members/ with the 1,000 addresses (every one must come back
`added`) followed by the same addresses removed; and, as the baseline of the machine, a
GET /api/v1/key/ (the cheapest authenticated call) in each round.

The issue's target is a bulk call under 2 s; the figure is the median of the rounds. The rate
limit is raised for the run: it is not what is measured. Everything it started is stopped; the
database is dropped. Last line: `api bulk: 1000 members in <s> s`.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import urllib.request

from _served import drop_database, prepare, start_gunicorn, stop

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
COUNT = 1000
BENCH_DB = "mlm_bench_api_bulk"


def seed() -> tuple[str, str, list[str]]:
    """The list's code, an editor key's secret and the 1,000 addresses of the unit."""
    import django

    django.setup()
    from django.db import connection, transaction

    from api.models import ApiRole
    from api.services import api_key_create
    from mlm.services import unit_create
    from recipients.addresses import AddressHasher
    from recipients.models import Audience, Category, Recipient
    from recipients.services import list_create

    hasher = AddressHasher()
    emails = [f"guest{i}@partner.example.org" for i in range(COUNT)]
    with transaction.atomic():
        unit = unit_create(
            name="Faculty of Engineering",
            slug="engineering",
            postal_address="1 University Road, Hong Kong",
            by=None,
        )
        Recipient.objects.bulk_create(
            Recipient(unit=unit, email=e, email_hash=hasher(e), category=Category.EXTERNAL)
            for e in emails
        )
        guests = list_create(unit=unit, name="Guests", audience=Audience.EXTERNAL, by=None)
        _key, secret = api_key_create(
            unit=unit, name="Bench", role=ApiRole.EDITOR, expires_at=None, by=None
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    connection.close()
    return str(guests.code), secret, emails


def call(port: int, secret: str, path: str, body: dict | None = None) -> tuple[float, dict]:
    """One request; its wall time (s) and its JSON answer."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    start = time.perf_counter()
    # An http:// loopback URL made above, never a file: or other scheme.
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
        data = json.loads(answer.read())
    return time.perf_counter() - start, data


def main() -> None:
    port, env = prepare(BENCH_DB, "bench/api_bulk.py", MLM_API_RATE="100000/m")
    server = None
    try:
        code, secret, emails = seed()
        server, _log = start_gunicorn(env, port, workers=1)
        members = f"/api/v1/lists/{code}/members/"
        call(port, secret, "/api/v1/key/")  # warm the worker up
        adds, removes, baselines = [], [], []
        for _ in range(ROUNDS):
            took, answer = call(port, secret, members, {"addresses": emails})
            if answer["counts"] != {"added": COUNT}:
                raise SystemExit(f"the bulk call answered {answer['counts']}")
            adds.append(took)
            took, answer = call(port, secret, members + "remove/", {"addresses": emails})
            if answer["counts"] != {"removed": COUNT}:
                raise SystemExit(f"the bulk removal answered {answer['counts']}")
            removes.append(took)
            baselines.append(call(port, secret, "/api/v1/key/")[0])
    finally:
        if server is not None:
            stop(server)
        drop_database(env, BENCH_DB)
    add, remove, base = (statistics.median(x) for x in (adds, removes, baselines))
    print(
        f"rounds {ROUNDS}: add median {add * 1000:.0f} ms (best {min(adds) * 1000:.0f} ms), "
        f"remove median {remove * 1000:.0f} ms; GET /api/v1/key/ {base * 1000:.1f} ms, "
        f"so one bulk call is {add / base:.0f} cheapest calls"
    )
    print(f"api bulk: {COUNT} members in {add:.2f} s")


if __name__ == "__main__":
    main()
