"""Benchmark: import a 1,000,000-row CSV with attestation and one DM type, as the UI does.

Creates (afresh each run) its own database `mlm_bench_import` next to the one in DATABASE_URL,
writes a CSV of 1,000,000 rows (1 % invalid addresses, 1 % duplicates of earlier rows, names
and one attribute column) to a temporary folder, then goes the UI's way: `import_upload` stores
the file, `import_start` records the mapping, mode, DM type, attestation and evidence, and the
Celery task function `recipients.tasks.run_import` runs in a child process, as in a worker. The
time is the job's own (claimed → finished); the peak RSS is the child's (the worker's).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mlm python bench/import_csv.py

The last line is `import: <rows/s> rows/s (1,000,000 rows in <s> s, peak RSS <MB> MB)`.
BENCH_IMPORT_ROWS sets another number of rows (for a quick look).
"""

from __future__ import annotations

import base64
import csv
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "1000000"))
BENCH_DB = "mlm_bench_import"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_urls(source: str) -> tuple[str, str]:
    """The bench database's URL (same server and user as `source`) and the maintenance URL."""
    parts = urlsplit(source)
    if not parts.scheme.startswith("postgres"):
        raise SystemExit(f"bench/import_csv.py needs PostgreSQL, not {parts.scheme!r}.")
    return urlunsplit(parts._replace(path=f"/{BENCH_DB}")), urlunsplit(
        parts._replace(path="/postgres")
    )


def environment(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlm.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret-0123456789-abcdefghijklmnop")
    os.environ.setdefault("MLM_ADDRESS_HASH_KEY", "bench-only-address-hash-key")
    dkim_key = base64.urlsafe_b64encode(b"bench-only-dkim-key-32-bytes-ok!").decode()
    os.environ.setdefault("MLM_DKIM_ENCRYPTION_KEY", dkim_key)
    os.environ.setdefault("MLM_INTERNAL_DOMAINS", "example.edu")
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("MLM_VAR_DIR", str(Path(tempfile.gettempdir()) / "mlm-bench-import-var"))


def recreate_database(maintenance: str) -> None:
    import psycopg

    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')


def drop_database(maintenance: str) -> None:
    import psycopg

    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def write_file(path: Path, rows: int) -> None:
    """`rows` data rows: 1 % invalid addresses, 1 % repeats of an earlier address."""
    rng = random.Random(42)
    cities = ["Hong Kong", "Kowloon", "Sha Tin", "Tai Po", "Shenzhen", "Macau"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["Email", "First name", "Last name", "City"])
        for i in range(rows):
            roll = i % 100
            if roll == 37:
                email = f"broken{i}@@example.com" if i % 2 else f"no-at-sign-{i}.example.com"
            elif roll == 73 and i > 100:
                j = rng.randrange(0, i - 50)
                email = f"person{j}.{j % 977}@Mail{j % 500}.Example.COM"
            else:
                email = f"person{i}.{i % 977}@mail{i % 500}.example.com"
            writer.writerow([email, f"First{i}", f"Last{i}", cities[i % len(cities)]])


def child(job_id: int) -> None:
    """The worker's side: the Celery task function, in its own process."""
    import django

    django.setup()
    from recipients.tasks import run_import

    run_import(job_id)


def main() -> None:
    source = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mlm")
    url, maintenance = bench_urls(source)
    environment(url)
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
        return
    recreate_database(maintenance)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files import File
    from django.core.management import call_command

    from consent.services import dm_type_create
    from mlm.models import Role
    from mlm.services import membership_set, unit_create
    from recipients.import_services import import_start, import_upload
    from recipients.models import Audience, ImportJob, ImportMode, ImportStatus
    from recipients.services import list_create

    call_command("migrate", verbosity=0)
    unit = unit_create(name="Bench unit", slug="bench", postal_address="1 Bench Road", by=None)
    admin = get_user_model().objects.create_user("bench-admin", password="x")
    membership_set(unit=unit, user=admin, role=Role.ADMIN, by=None)
    events = dm_type_create(
        unit=unit, key="events", name="Event invitations", notice_text="Events.", by=None
    )
    for key in ("newsletter", "fundraising"):
        dm_type_create(unit=unit, key=key, name=key.title(), notice_text=f"{key}.", by=None)
    recipient_list = list_create(
        unit=unit, name="Open day visitors", audience=Audience.EXTERNAL, by=None
    )

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "open-day.csv"
        started = time.monotonic()
        write_file(path, ROWS)
        size = path.stat().st_size / 1e6
        print(f"wrote {ROWS:,} rows ({size:.0f} MB) in {time.monotonic() - started:.1f} s")
        with path.open("rb") as f:
            job, sniffed = import_upload(
                recipient_list=recipient_list, upload=File(f, name=path.name), by=admin
            )
        import_start(
            job=job,
            mapping=sniffed.mapping,
            mode=ImportMode.GRANT,
            dm_types=[events],
            attested=True,
            evidence="Open-day registration form, consent clause v3, June 2025",
            by=admin,
            enqueue=False,
        )
        subprocess.run([sys.executable, __file__, "--child", str(job.pk)], check=True)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    job = ImportJob.objects.get(pk=job.pk)
    if job.status != ImportStatus.SUCCEEDED:
        raise SystemExit(f"the import failed: {job.error}")
    seconds = (job.finished_at - job.started_at).total_seconds()
    print(
        f"rows read {job.rows_read:,}; created {job.created_count:,}; added {job.added_count:,}; "
        f"granted {job.granted_count:,}; duplicates {job.duplicate_count:,}; "
        f"invalid {job.invalid_count:,}"
    )
    from django.db import connections

    connections.close_all()
    drop_database(maintenance)  # a million recipients take room on a shared machine
    print(
        f"import: {job.rows_read / seconds:.0f} rows/s ({job.rows_read:,} rows in {seconds:.1f} s, "
        f"peak RSS {peak_mb:.0f} MB)"
    )


if __name__ == "__main__":
    main()
