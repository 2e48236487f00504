"""Imports in a real `celery worker`: they run after commit, report progress, and a failure
halfway through leaves the database exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from consent.models import Channel, ConsentEvent, Subscription, Suppression
from consent.services import grant
from recipients.import_services import UNEXPECTED, import_start, import_upload
from recipients.models import (
    Audience,
    Category,
    ImportJob,
    ImportMode,
    ImportStatus,
    ListMembership,
    Recipient,
)
from recipients.services import list_add_members, list_create, recipient_upsert
from tests.imports.helpers import csv_bytes, dm_types, upload
from tests.personas import make_world
from tests.processes import Worker, wait_for

pytestmark = pytest.mark.system


@pytest.fixture
def worker(transactional_db, flushed_broker, tmp_path, media_folder) -> Iterator[Worker]:
    # The worker reads the uploads from the same media folder as this process.
    worker = Worker(tmp_path / "worker.log", MLM_VAR_DIR=str(media_folder.parent))
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


def snapshot() -> dict[str, list[tuple]]:
    """Every row of the tables an import writes, in id order."""
    return {
        model.__name__: list(model.objects.order_by("pk").values_list())
        for model in (Recipient, ListMembership, ConsentEvent, Subscription, Suppression)
    }


def file_of(count: int) -> bytes:
    rows = [["email", "first name"]] + [
        [f"guest{i}@example.com", f"Guest {i}"] for i in range(count)
    ]
    return csv_bytes(rows)


def start(recipient_list, data: bytes, by, dm_type) -> ImportJob:
    job, sniffed = import_upload(recipient_list=recipient_list, upload=upload(data), by=by)
    # Outside a transaction: on_commit sends the task at once.
    return import_start(
        job=job,
        mapping=sniffed.mapping,
        mode=ImportMode.GRANT,
        dm_types=[dm_type],
        attested=True,
        evidence="Open-day registration form, consent clause v3, June 2025",
        by=by,
    )


FAULT = """
CREATE FUNCTION mlm_test_fault() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'injected fault: the disk is full';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER mlm_test_fault AFTER INSERT ON recipients_listmembership
    FOR EACH STATEMENT EXECUTE FUNCTION mlm_test_fault();
"""
NO_FAULT = """
DROP TRIGGER IF EXISTS mlm_test_fault ON recipients_listmembership;
DROP FUNCTION IF EXISTS mlm_test_fault();
"""


def test_a_worker_failing_halfway_leaves_the_database_as_it_was(worker):
    """I4: the worker fails after the recipients are written, before the memberships and the
    consent: nothing of the import remains, the job says it failed, the ledger is untouched."""
    world = make_world()
    (events,) = dm_types(world.unit, "events")
    visitors = list_create(unit=world.unit, name="Open day", audience=Audience.EXTERNAL, by=None)
    known, _ = recipient_upsert(
        unit=world.unit, email="guest3@example.com", category=Category.EXTERNAL, by=None
    )
    list_add_members(recipient_list=visitors, recipients=[known], by=None)
    grant(recipient=known, dm_types=[events], channel=Channel.ADMIN, evidence="Phone call")

    done = start(visitors, file_of(3000), world.alice, events)
    wait_for(
        lambda: ImportJob.objects.get(pk=done.pk).status == ImportStatus.SUCCEEDED,
        timeout=120,
        message=f"the first import did not finish; worker log:\n{worker.log()[-3000:]}",
    )
    done.refresh_from_db()
    assert (done.created_count, done.granted_count, done.rows_total) == (2999, 3000, 3000)
    before = snapshot()

    with connection.cursor() as cursor:
        cursor.execute(FAULT)
    try:
        failing = start(visitors, file_of(6000), world.alice, events)
        wait_for(
            lambda: ImportJob.objects.get(pk=failing.pk).status == ImportStatus.FAILED,
            timeout=120,
            message=f"the import did not fail; worker log:\n{worker.log()[-3000:]}",
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute(NO_FAULT)
    failing.refresh_from_db()
    assert failing.error == UNEXPECTED
    assert failing.rows_read == 6000  # the file was read; the failure came while saving
    assert snapshot() == before
    assert "injected fault" in worker.log()
    assert "guest5000@example.com" not in worker.log()  # the log names no one


def test_a_worker_child_killed_mid_import_leaves_a_failed_job_not_a_stuck_one(
    transactional_db, flushed_broker, tmp_path, media_folder
):
    """I10: the worker process running an import is killed (as by the OOM killer); the job
    does not stay "Reading" for ever: after its lease the sweep fails it, with a reason and
    its upload removed, the task delivered again changes nothing, and nothing was imported."""
    import signal

    import psutil

    from recipients.import_services import WORKER_LOST, imports_recover

    worker = Worker(
        tmp_path / "worker.log", MLM_VAR_DIR=str(media_folder.parent), MLM_IMPORT_LEASE_SECONDS="3"
    )
    try:
        worker.wait_ready()
        world = make_world()
        (events,) = dm_types(world.unit, "events")
        visitors = list_create(unit=world.unit, name="Gala", audience=Audience.EXTERNAL, by=None)
        before = snapshot()
        job = start(visitors, file_of(400_000), world.alice, events)
        upload_path = ImportJob.objects.get(pk=job.pk).file.path
        wait_for(
            lambda: ImportJob.objects.get(pk=job.pk).rows_read >= 20_000,
            timeout=120,
            message=f"the import did not start reading; worker log:\n{worker.log()[-3000:]}",
        )
        (child,) = psutil.Process(worker.process.pid).children()
        child.send_signal(signal.SIGKILL)
        assert ImportJob.objects.get(pk=job.pk).status == ImportStatus.READING
        wait_for(
            lambda: imports_recover() == 1,
            timeout=30,
            message=f"the sweep did not give the job up; worker log:\n{worker.log()[-3000:]}",
        )
        job.refresh_from_db()
        assert job.status == ImportStatus.FAILED and job.error == WORKER_LOST
        assert not job.file and not Path(upload_path).exists()
        # The main process hands the lost task to a new child, which finds the job ended.
        wait_for(lambda: "not queued, or another worker has it" in worker.log(), timeout=60)
        assert ImportJob.objects.get(pk=job.pk).status == ImportStatus.FAILED
        assert snapshot() == before
    finally:
        worker.stop()
