"""Imports always end (I10): a job whose worker died is failed after its lease, with its files
removed and a way to try again; uploads never started and old rejected-rows reports are
deleted in time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from mlm.models import AuditEntry
from recipients.import_services import (
    NEVER_STARTED,
    WORKER_LOST,
    import_start,
    import_upload,
    imports_purge,
    imports_recover,
)
from recipients.models import ImportJob, ImportMode, ImportStatus, Recipient
from tests.imports.helpers import csv_bytes, run_import, upload

ROWS = [["email", "first name"], ["ann@example.com", "Ann"], ["ben@example.com", "Ben"]]


def uploaded(visitors, world) -> ImportJob:
    job, _sniffed = import_upload(
        recipient_list=visitors, upload=upload(csv_bytes(ROWS)), by=world.alice
    )
    return job


def started_by_a_worker_that_died(visitors, world, status=ImportStatus.READING) -> ImportJob:
    """A job claimed as a worker claims it, whose worker then stopped renewing its lease."""
    job = uploaded(visitors, world)
    import_start(
        job=job, mapping=["email", "first_name"], mode=ImportMode.ADD, dm_types=[],
        by=world.alice, enqueue=False,
    )  # fmt: skip
    ImportJob.objects.filter(pk=job.pk).update(
        status=status,
        started_at=timezone.now() - timedelta(minutes=10),
        lease_until=timezone.now() - timedelta(seconds=1),
    )
    job.refresh_from_db()
    return job


def stored(job: ImportJob, field: str = "file") -> Path:
    return Path(getattr(job, field).path)


@pytest.mark.parametrize("status", [ImportStatus.READING, ImportStatus.APPLYING])
def test_a_job_whose_worker_died_is_failed_after_its_lease(visitors, world, status, client):
    """I10: nothing else would end it; the sweep says what happened and removes its file."""
    job = started_by_a_worker_that_died(visitors, world, status)
    upload_path = stored(job)
    assert upload_path.exists()
    assert imports_recover() == 1
    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED and job.error == WORKER_LOST
    assert job.lease_until is None and job.finished_at is not None
    assert not upload_path.exists() and not job.file
    assert AuditEntry.objects.get(verb="import.fail").data["reason"] == "lease"
    assert not Recipient.objects.exists()
    client.force_login(world.alice)
    page = client.get(reverse("import_job", args=["engineering", visitors.code, job.code]))
    assert WORKER_LOST in page.text and "Import a file again" in page.text
    assert imports_recover() == 0  # once


def test_a_job_that_shows_life_is_left_alone(visitors, world):
    job = started_by_a_worker_that_died(visitors, world)
    ImportJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() + timedelta(minutes=1))
    assert imports_recover() == 0
    job.refresh_from_db()
    assert job.status == ImportStatus.READING and stored(job).exists()
    assert imports_recover(now=timezone.now() + timedelta(minutes=2)) == 1


def test_a_task_delivered_again_does_not_revive_a_given_up_job(visitors, world):
    """The broker hands the killed worker's task to the next worker: it finds the job ended."""
    from recipients.tasks import run_import as task

    job = started_by_a_worker_that_died(visitors, world)
    imports_recover()
    task.run(job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.FAILED and not Recipient.objects.exists()


def test_a_finished_job_has_no_lease(visitors, world):
    job = run_import(visitors, csv_bytes(ROWS), by=world.alice)
    assert job.status == ImportStatus.SUCCEEDED and job.lease_until is None


def test_uploads_never_started_are_deleted_after_a_day(visitors, world):
    """I9, I10: a file of people nobody imported is not kept; its job says why it is gone."""
    old, recent = uploaded(visitors, world), uploaded(visitors, world)
    ImportJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=25))
    assert imports_purge() == 1
    old.refresh_from_db()
    assert old.status == ImportStatus.FAILED and old.error == NEVER_STARTED and not old.file
    recent.refresh_from_db()
    assert recent.status == ImportStatus.UPLOADED and stored(recent).exists()


def test_rejected_rows_reports_are_deleted_after_the_retention(visitors, world, settings):
    settings.MLM_IMPORT_RETENTION_DAYS = 30
    jobs = [run_import(visitors, csv_bytes(ROWS), by=world.alice) for _ in range(2)]
    for job, days in zip(jobs, (31, 29), strict=True):
        job.rejected_file.save("rejected.csv", ContentFile(b"line,problem\r\n"), save=True)
        ImportJob.objects.filter(pk=job.pk).update(
            finished_at=timezone.now() - timedelta(days=days)
        )
    paths = [stored(job, "rejected_file") for job in jobs]
    assert imports_purge() == 1
    assert not paths[0].exists() and paths[1].exists()
    jobs[0].refresh_from_db()
    assert not jobs[0].rejected_file
