"""Benchmark: materialise the sendable audience (I1) of one DM type among 1,000,000 recipients.

Builds (once, then reuses) its own database `mlm_bench_audience` on the server of DATABASE_URL:
one unit, 10 DM types, 1,000,000 recipients (mostly external, some internal, a few bounced or
complained; with attributes for segments: organisation, year, city, phone), one list of every
external recipient (bench/segment.py's), about four million consent events with grants,
withdrawals, "withdraw all" and re-grants, the subscriptions as the exact fold of those events
(verify_consent passes), and unit and global suppressions. Then it times
`consent.selectors.sendable` for one DM type: a COUNT and an INSERT … SELECT of the ids into a
scratch table, and prints the plan.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mlm python bench/audience.py [--fresh]

The last line is `audience: <seconds> s for 1,000,000 recipients (<rows> sendable)`, the
seconds being the median INSERT … SELECT (the campaign snapshot's shape) of three warm runs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

RECIPIENTS = 1_000_000
DM_TYPES = 10
BUILD = "audience-v2"  # change when the data below changes: the database is rebuilt
BENCH_DB = "mlm_bench_audience"

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_url(source: str) -> tuple[str, str]:
    """The bench database's URL (same server and user as `source`) and the maintenance URL."""
    parts = urlsplit(source)
    if not parts.scheme.startswith("postgres"):
        raise SystemExit(f"bench/audience.py needs PostgreSQL, not {parts.scheme!r}.")
    bench = urlunsplit(parts._replace(path=f"/{BENCH_DB}"))
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    return bench, maintenance


def prepare_database(maintenance: str, fresh: bool) -> bool:
    """Create mlm_bench if needed; True if it already holds this build's data."""
    import psycopg

    with psycopg.connect(maintenance, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if exists and fresh:
            conn.execute(f'DROP DATABASE "{BENCH_DB}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
            return False
    return True


def built(cursor) -> bool:
    cursor.execute("SELECT to_regclass('bench_meta') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return False
    cursor.execute("SELECT build FROM bench_meta")
    row = cursor.fetchone()
    return row is not None and row[0] == BUILD


def copy_recipients(cursor, unit_id: int, key: bytes) -> None:
    """1,000,000 recipients by COPY, with real keyed address hashes (suppressions match)."""
    columns = (
        "code, unit_id, email, email_hash, first_name, last_name, category, locale, "
        "attributes, status, created_at, updated_at"
    )
    internal = ("staff", "student", "alumni")
    with cursor.copy(f"COPY recipients_recipient ({columns}) FROM STDIN") as copy:
        chunk = []
        for i in range(1, RECIPIENTS + 1):
            if i % 100 < 15:  # 15 % internal: staff, students, alumni (some alumni mail outside)
                category = internal[i % 3]
                domain = (
                    "alumni-mail.example.com" if category == "alumni" and i % 2 else "example.edu"
                )
            else:
                category = "external"
                domain = f"partner{i % 500}.org"
            email = f"person{i}@{domain}"
            digest = hmac.new(key, email.encode(), hashlib.sha256).hexdigest()
            if i % 1000 < 10:
                status = "bounced"
            elif i % 1000 < 13:
                status = "complained"
            else:
                status = "active"
            chunk.append(
                f"{_uuid(i)}\t{unit_id}\t{email}\t{digest}\tFirst{i}\tLast{i}\t{category}\ten\t"
                f"{_attributes(i)}\t{status}\t2025-01-01 00:00:00+00\t"
                "2025-01-01 00:00:00+00\n"
            )
            if len(chunk) == 50_000:
                copy.write("".join(chunk))
                chunk = []
        copy.write("".join(chunk))


CITIES = [
    "Hong Kong",
    "Kowloon",
    "Shenzhen",
    "Singapore",
    "London",
    "Paris",
    "Toronto",
    "Sydney",
    "Macau",
    "Taipei",
]


def _attributes(i: int) -> str:
    """A recipient's attributes (JSON text for COPY): an organisation, a graduation year from
    1980 to 2024, a city of ten, and a phone number for six in ten, drawn independently."""
    phone = f', "phone": "+852 {i % 10_000:04d} {i % 7_919:04d}"' if (i * 13) % 10 < 6 else ""
    year = 1980 + (i * 7_919) % 45
    return f'{{"org": "Org {i % 977}", "year": "{year}", "city": "{CITIES[(i * 31) % 10]}"{phone}}}'


def build_list(cursor, unit_id: int) -> None:
    """One external list, "Alumni and friends", holding every external recipient."""
    cursor.execute(
        "INSERT INTO recipients_recipientlist (code, unit_id, name, audience, description, "
        "created_at) VALUES (%s, %s, 'Alumni and friends', 'external', '', now()) RETURNING id",
        [_uuid(0), unit_id],
    )
    list_id = cursor.fetchone()[0]
    cursor.execute(
        "INSERT INTO recipients_listmembership (recipient_list_id, recipient_id, added_at) "
        "SELECT %s, id, now() FROM recipients_recipient "
        "WHERE unit_id = %s AND category = 'external'",
        [list_id, unit_id],
    )


def _uuid(i: int) -> str:
    h = hashlib.blake2b(i.to_bytes(8, "big"), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


# Deterministic pseudo-random numbers in [0, 1000) per (recipient, DM type, salt).
ROLL = "(abs(hashtextextended(r.id::text || ':' || t.id::text || ':{salt}', 0)) % 1000)"


def build_ledger(cursor, unit_id: int) -> None:
    """Consent events in chronological phases (ids grow with time), then their fold."""
    roll = ROLL.format
    event_columns = (
        "unit_id, recipient_id, dm_type_id, action, channel, evidence, notice_id, actor_id, "
        "actor_label, ip_address, user_agent, campaign_code, created_at"
    )
    types = (
        "(SELECT d.id, d.internal_default, n.id AS notice_id, "
        "row_number() OVER (ORDER BY d.id) - 1 AS k FROM consent_dmtype d "
        "JOIN consent_dmtypenotice n ON n.dm_type_id = d.id)"
    )
    phases = [
        (
            "grants: externals 20-56 % per DM type, internals 8 %",
            f"""SELECT {unit_id}, r.id, t.id, 'grant', 'import',
                'Import attestation: registration form clause v2, bench row ' || r.id,
                t.notice_id, NULL, 'importer', NULL, '', NULL, '2025-02-01'
            FROM recipients_recipient r CROSS JOIN {types} t
            WHERE {roll(salt="g")} < CASE WHEN r.category = 'external' THEN 200 + 40 * t.k
                                          ELSE 80 END
            ORDER BY r.id, t.id""",
        ),
        (
            "withdrawals of one DM type: 15 % of grants, 5 % of internals from default types",
            f"""SELECT {unit_id}, r.id, t.id, 'withdraw', 'one_click', '', NULL, NULL,
                'recipient', '198.51.100.7', 'Mozilla/5.0 (bench)', NULL, '2025-03-01'
            FROM recipients_recipient r CROSS JOIN {types} t
            WHERE ({roll(salt="g")} < CASE WHEN r.category = 'external' THEN 200 + 40 * t.k
                                           ELSE 80 END
                   AND {roll(salt="w")} < 150)
               OR (r.category <> 'external' AND t.internal_default AND {roll(salt="d")} < 50)
            ORDER BY r.id, t.id""",
        ),
        (
            "withdraw all DM types: 3 % of recipients",
            f"""SELECT {unit_id}, r.id, NULL, 'withdraw', 'preference_centre', '', NULL, NULL,
                'recipient', '198.51.100.8', 'Mozilla/5.0 (bench)', NULL, '2025-04-01'
            FROM recipients_recipient r
            WHERE abs(hashtextextended(r.id::text || ':all', 0)) % 1000 < 30
            ORDER BY r.id""",
        ),
        (
            "re-grants after a withdraw-all: a third of them, one DM type each",
            f"""SELECT {unit_id}, r.id, t.id, 'grant', 'double_opt_in',
                'Double opt-in, bench row ' || r.id, t.notice_id, NULL, 'recipient',
                '198.51.100.9', 'Mozilla/5.0 (bench)', NULL, '2025-05-01'
            FROM recipients_recipient r
            JOIN {types} t ON t.k = abs(hashtextextended(r.id::text || ':k', 0)) % {DM_TYPES}
            WHERE abs(hashtextextended(r.id::text || ':all', 0)) % 1000 < 10
            ORDER BY r.id""",
        ),
    ]
    for label, select in phases:
        started = time.perf_counter()
        cursor.execute(f"INSERT INTO consent_consentevent ({event_columns}) {select}")
        print(f"  {label}: {cursor.rowcount:,} events in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    cursor.execute(
        """INSERT INTO consent_subscription (unit_id, recipient_id, dm_type_id, state, event_id,
                                            updated_at)
        SELECT DISTINCT ON (recipient_id, dm_type_id) unit_id, recipient_id, dm_type_id,
               CASE action WHEN 'grant' THEN 'granted' ELSE 'withdrawn' END, id, created_at
        FROM consent_consentevent
        ORDER BY recipient_id, dm_type_id, id DESC"""
    )
    print(
        f"  subscriptions (the fold): {cursor.rowcount:,} in {time.perf_counter() - started:.1f} s"
    )


def build_suppressions(cursor, unit_id: int) -> None:
    cursor.execute(
        f"""INSERT INTO consent_suppression (code, unit_id, email, email_hash, reason, note,
                                            case_sensitive, created_at)
        SELECT gen_random_uuid(), CASE WHEN r.id % 3 = 0 THEN NULL ELSE {unit_id} END,
               r.email, r.email_hash,
               CASE WHEN r.id % 3 = 0 THEN 'hard_bounce' ELSE 'manual' END, '', false, now()
        FROM recipients_recipient r
        WHERE abs(hashtextextended(r.id::text || ':s', 0)) % 1000 < 15"""
    )
    print(f"  suppressions: {cursor.rowcount:,} (a third global)")


BULK_TABLES = [
    "recipients_recipient",
    "recipients_listmembership",
    "consent_consentevent",
    "consent_subscription",
]


def drop_secondary_indexes(cursor, tables: list[str]) -> list[str]:
    """Drop the indexes that back no constraint; returns their definitions to recreate."""
    cursor.execute(
        """SELECT ic.relname, pg_get_indexdef(ix.indexrelid)
        FROM pg_index ix
        JOIN pg_class ic ON ic.oid = ix.indexrelid
        JOIN pg_class t ON t.oid = ix.indrelid
        WHERE t.relname = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid)""",
        [tables],
    )
    found = cursor.fetchall()
    for name, _ in found:
        cursor.execute(f'DROP INDEX "{name}"')
    return [definition for _, definition in found]


def build(connection) -> None:
    from django.conf import settings

    from campaigns.units import unit_create
    from consent.services import dm_type_create

    started = time.perf_counter()
    unit = unit_create(
        name="Faculty of Engineering", slug="engineering", postal_address="Campus", by=None
    )
    names = [
        "Event invitations",
        "Newsletter",
        "Fundraising",
        "Alumni magazine",
        "Research news",
        "Career fairs",
        "Continuing education",
        "Open days",
        "Volunteering",
        "Surveys",
    ]
    for k, name in enumerate(names[:DM_TYPES]):
        dm_type_create(
            unit=unit,
            key=f"type{k}",
            name=name,
            notice_text=f"{name}: what we send and how often.",
            internal_default=k in (0, 1, 4),
            by=None,
        )
    with connection.cursor() as django_cursor:
        cursor = django_cursor.cursor  # psycopg's own cursor: COPY
        # Bulk load: skip the per-row foreign-key triggers (the data is consistent by
        # construction; CHECK constraints still apply), and build the secondary indexes once
        # at the end instead of row by row.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SET maintenance_work_mem = '256MB'")
        cursor.execute("SET work_mem = '256MB'")
        indexes = drop_secondary_indexes(cursor, BULK_TABLES)
        copy_recipients(cursor, unit.pk, settings.MLM_ADDRESS_HASH_KEY.encode())
        print(f"  recipients: {RECIPIENTS:,} in {time.perf_counter() - started:.1f} s")
        build_list(cursor, unit.pk)
        build_ledger(cursor, unit.pk)
        build_suppressions(cursor, unit.pk)
        step = time.perf_counter()
        for definition in indexes:
            cursor.execute(definition)
        print(f"  {len(indexes)} indexes rebuilt in {time.perf_counter() - step:.1f} s")
        cursor.execute("RESET ALL")  # the measurement runs with the server's settings
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("CREATE TABLE bench_meta (build text)")
        cursor.execute("INSERT INTO bench_meta VALUES (%s)", [BUILD])
    connection.close()
    print(f"  built in {time.perf_counter() - started:.0f} s")


def backend_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the PostgreSQL backend `pid`, if it runs on this machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load() -> str:
    try:
        return "load average " + Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "load average unknown"


def ready_database(fresh: bool) -> None:
    """Point Django at the bench database and set it up, building its data unless this build's
    is there already (also for bench/segment.py)."""
    source = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mlm")
    url, maintenance = bench_url(source)
    reuse = prepare_database(maintenance, fresh)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlm.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret-0123456789-abcdefghijklmnop")
    os.environ.setdefault("MLM_ADDRESS_HASH_KEY", "bench-only-address-hash-key")
    os.environ.setdefault("MLM_INTERNAL_DOMAINS", "example.edu")
    os.environ.setdefault(
        "MLM_DKIM_ENCRYPTION_KEY",
        base64.urlsafe_b64encode(b"bench-only-dkim-key-32-bytes-ok!").decode(),
    )

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from consent.selectors import subscription_mismatches

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        ready = reuse and built(cursor)
    if ready:
        print(f"Reusing {BENCH_DB} ({BUILD}); --fresh rebuilds it.")
    else:
        if reuse:  # an older or half-built bench database: start again
            connection.close()
            prepare_database(maintenance, fresh=True)
            call_command("migrate", verbosity=0)
        print(f"Building {BENCH_DB}: {RECIPIENTS:,} recipients, {DM_TYPES} DM types")
        build(connection)
        started = time.perf_counter()
        mismatches = subscription_mismatches()
        print(
            f"  verify_consent: {len(mismatches)} mismatches "
            f"in {time.perf_counter() - started:.1f} s"
        )
        if mismatches:
            raise SystemExit("The bench ledger is not consistent; fix the build.")


def main() -> None:
    ready_database("--fresh" in sys.argv[1:])
    from django.db import connection, transaction

    from consent.models import DMType
    from consent.selectors import sendable
    from mlm.models import SenderUnit
    from recipients.models import Audience

    unit = SenderUnit.objects.get(slug="engineering")
    dm_type = DMType.objects.get(unit=unit, key="type5")  # granted by about 40 % of externals
    # A snapshot needs no order: `.order_by()` drops Recipient's default ordering by address.
    query = sendable(unit=unit, dm_type=dm_type, audience=Audience.EXTERNAL).order_by().values("pk")
    sql, params = query.query.sql_with_params()

    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS bench_audience (recipient_id bigint)")
        # The plan of the statement that is timed (INSERT … SELECT runs without parallel
        # workers, unlike a plain SELECT), rolled back.
        with transaction.atomic():
            cursor.execute(
                f"EXPLAIN (ANALYZE, BUFFERS) INSERT INTO bench_audience (recipient_id) {sql}",
                params,
            )
            print("\n".join(row[0] for row in cursor.fetchall()))
            transaction.set_rollback(True)
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
        counts, inserts, cpus = [], [], []
        rows = 0
        for run in range(4):  # the first run warms the cache and is not counted
            started = time.perf_counter()
            count = query.count()
            counted = time.perf_counter() - started
            with transaction.atomic():
                cursor.execute("TRUNCATE bench_audience")
                cpu = backend_cpu_seconds(backend)
                started = time.perf_counter()
                cursor.execute(f"INSERT INTO bench_audience (recipient_id) {sql}", params)
                inserted = time.perf_counter() - started
                cpu = backend_cpu_seconds(backend) - cpu
                rows = cursor.rowcount
            assert rows == count, (rows, count)
            print(
                f"run {run}: COUNT {counted:.2f} s, INSERT … SELECT {inserted:.2f} s "
                f"(server CPU {cpu:.2f} s), {rows:,} rows"
            )
            if run:
                counts.append(counted)
                inserts.append(inserted)
                cpus.append(cpu)
    print(f"COUNT median {statistics.median(counts):.2f} s")
    if all(cpus):
        # On a busy machine the wall time includes waiting for a CPU; the server process's own
        # CPU time is what the statement costs.
        print(f"INSERT … SELECT server CPU median {statistics.median(cpus):.2f} s, {_load()}")
    seconds = statistics.median(inserts)
    print(f"audience: {seconds:.2f} s for {RECIPIENTS:,} recipients ({rows:,} sendable)")


if __name__ == "__main__":
    main()
