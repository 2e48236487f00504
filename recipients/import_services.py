"""Imports of recipient files into lists: upload, choices, the run in a worker, directory sync.

Privacy by default (I2): an import grants nothing unless the importer names DM types and gives
evidence, and for an external list also attests the people's explicit consent; both are stored
on every grant event. Separate audiences (I3): rows of the other audience are refused. A run
changes all or nothing (recipients.importing.applying).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import SuspiciousFileOperation, ValidationError
from django.core.files import File
from django.db import transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from consent.models import DMType
from mlm.queue import enqueue_on_commit
from mlm.services import audit_record
from mlm.spreadsheets import csv_lines
from recipients.exports import list_member_rows
from recipients.importing.applying import ImportRun
from recipients.importing.choices import (
    ATTESTATION,
    DELIMITERS,
    ENCODINGS,
    check_choices,
    check_mapping,
)
from recipients.importing.limits import ImportFileError
from recipients.importing.reading import Sniffed, open_stored, sniff
from recipients.models import (
    Audience,
    ImportJob,
    ImportMode,
    ImportStatus,
    RecipientList,
)

log = logging.getLogger(__name__)

UNEXPECTED = (
    "The import stopped on an unexpected error; nothing was changed. Try again, and if it fails "
    "again tell operations the import's code."
)


def _sizes(size: int, limit: int) -> tuple[str, str]:
    """The two sizes in MB, or in bytes where MB would show them equal."""
    shown = f"{size / 1024 / 1024:.1f} MB", f"{limit / 1024 / 1024:.1f} MB"
    return shown if shown[0] != shown[1] else (f"{size:,} bytes", f"{limit:,} bytes")


def _actor(by: AbstractBaseUser | None) -> tuple[AbstractBaseUser | None, str]:
    if by is not None and by.is_authenticated:
        return by, by.get_username()
    return None, "operations"


def _stream(upload: File):
    inner = getattr(upload, "file", None)
    stream = inner if inner is not None and hasattr(inner, "seek") else upload
    stream.seek(0)
    return stream


def _sniff(stream, **choices: Any) -> Sniffed:
    try:
        return sniff(stream, **choices)
    except ImportFileError as error:
        raise ValidationError(str(error)) from None


def _apply_sniffed(job: ImportJob, sniffed: Sniffed) -> None:
    job.file_format = sniffed.file_format
    job.encoding = sniffed.encoding
    job.encoding_detected = sniffed.encoding_detected
    job.delimiter = sniffed.delimiter
    job.has_header = sniffed.has_header
    job.columns = sniffed.columns
    job.mapping = sniffed.mapping


@transaction.atomic
def import_upload(
    *,
    recipient_list: RecipientList,
    upload: File,
    encoding: str = "",
    delimiter: str = "",
    sync: bool = False,
    by: AbstractBaseUser | None,
) -> tuple[ImportJob, Sniffed]:
    """Keep an uploaded file and read its first rows; nothing is imported or granted yet (I2)."""
    limit = settings.MLM_IMPORT_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        size, most = _sizes(upload.size, limit)
        raise ValidationError(
            f"The file is {size}; an import accepts files up to {most}. Split it into smaller "
            "files."
        )
    if encoding and encoding not in ENCODINGS:
        raise ValidationError(f"Unknown encoding {encoding!r}.")
    if delimiter and delimiter not in DELIMITERS:
        raise ValidationError("The separator is a comma, a semicolon or a tab.")
    if sync and recipient_list.audience != Audience.INTERNAL:
        raise ValidationError(
            "A directory sync fills an internal list (staff, students, alumni); "
            f"“{recipient_list.name}” is external."
        )
    sniffed = _sniff(_stream(upload), encoding=encoding, delimiter=delimiter)
    user, label = _actor(by)
    name = os.path.basename(upload.name or "upload")
    job = ImportJob(
        unit=recipient_list.unit,
        recipient_list=recipient_list,
        created_by=user,
        actor_label=label,
        file_name=name[:255],
        file_size=upload.size or 0,
        mode=ImportMode.SYNC if sync else ImportMode.ADD,
    )
    _apply_sniffed(job, sniffed)
    _stream(upload)
    try:
        stored_name = get_valid_filename(name)[:120]
    except SuspiciousFileOperation:
        stored_name = "upload"
    job.file.save(stored_name, upload, save=False)
    job.save()
    return job, sniffed


@transaction.atomic
def import_reread(
    *,
    job: ImportJob,
    encoding: str = "",
    delimiter: str = "",
    has_header: bool | None = None,
) -> Sniffed:
    """Read the head of an uploaded file again with another encoding, separator or header."""
    if job.status != ImportStatus.UPLOADED:
        raise ValidationError("This import has already started.")
    with open_stored(job.file.name) as stream:
        sniffed = _sniff(stream, encoding=encoding, delimiter=delimiter, has_header=has_header)
    _apply_sniffed(job, sniffed)
    job.save()
    return sniffed


@transaction.atomic
def import_start(
    *,
    job: ImportJob,
    mapping: list[str],
    mode: str,
    dm_types: list[DMType],
    attested: bool = False,
    evidence: str = "",
    default_category: str = "",
    by: AbstractBaseUser | None,
    enqueue: bool = True,
) -> ImportJob:
    """Queue an uploaded import with its choices, after checking them (I2, I3): a grant needs
    named DM types and evidence, and on an external list the importer's attestation."""
    dm_types = list(dm_types)
    check_mapping(job, mapping)
    check_choices(
        job=job,
        mode=mode,
        dm_types=dm_types,
        attested=attested,
        evidence=evidence,
        default_category=default_category,
        mapping=mapping,
        by=by,
    )
    started = ImportJob.objects.filter(pk=job.pk, status=ImportStatus.UPLOADED).update(
        status=ImportStatus.QUEUED,
        mapping=mapping,
        mode=mode,
        attested=attested and mode == ImportMode.GRANT,
        evidence=evidence.strip(),
        default_category=default_category,
    )
    if not started:
        raise ValidationError("This import has already been started.")
    job.refresh_from_db()
    job.dm_types.set(dm_types)
    user, _label = _actor(by)
    audit_record(
        unit=job.unit,
        actor=user,
        verb="import.start",
        obj=job,
        data={
            "list": str(job.recipient_list.code),
            "mode": mode,
            "dm_types": sorted(d.key for d in dm_types),
            "attested": job.attested,
            "evidence": job.evidence,
        },
    )
    if enqueue:
        enqueue_on_commit("recipients.tasks.run_import", job.pk)
    return job


def _event_evidence(job: ImportJob) -> str:
    """What every consent event of the import says as its evidence."""
    reference = f"(import {job.code})"
    if job.mode == ImportMode.GRANT and job.attested:
        return f"{job.evidence} — attested by the importer: “{ATTESTATION}” {reference}"
    if job.mode == ImportMode.GRANT:
        return f"{job.evidence} {reference}"
    return f"{job.evidence or 'Opt-out by list import'} {reference}"


def _fail(job: ImportJob, message: str) -> None:
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportStatus.FAILED, error=message, finished_at=timezone.now(), lease_until=None
    )
    audit_record(
        unit=job.unit,
        actor=job.created_by,
        verb="import.fail",
        obj=job,
        data={"list": str(job.recipient_list.code), "mode": job.mode},
    )


class LeaseLost(Exception):
    """The recovery sweep gave this import up while it ran (its lease had run out)."""


def _lease(seconds: int | None = None):
    return timezone.now() + timedelta(seconds=seconds or settings.MLM_IMPORT_LEASE_SECONDS)


def import_run(*, job_id: int) -> ImportJob | None:
    """Run a queued import: stream the file into a staging table (progress is visible), then
    apply it in one transaction, so that a failure changes nothing (I10).

    Returns None if the job is not queued (another worker has it, or it ended). The job holds
    a lease that its progress renews; if its worker dies, `imports_recover` fails it once the
    lease runs out, and a worker that finds its job given up stops without writing.
    """
    now = timezone.now()
    claimed = ImportJob.objects.filter(status=ImportStatus.QUEUED, pk=job_id).update(
        status=ImportStatus.READING, started_at=now, rows_read=0, error="", lease_until=_lease()
    )
    if not claimed:
        log.info("import %s: not queued, or another worker has it", job_id)
        return None
    job = ImportJob.objects.select_related("unit", "recipient_list", "created_by").get(pk=job_id)
    jobs = ImportJob.objects.filter(pk=job.pk)
    reading = jobs.filter(status=ImportStatus.READING)

    def progress(**fields: Any) -> None:
        """Show progress and renew the lease, unless the sweep has given the job up."""
        if not reading.update(lease_until=_lease(), **fields):
            raise LeaseLost

    run = ImportRun(job)
    try:
        run.create_stage()
        with open_stored(job.file.name) as stream:
            run.stage(
                stream,
                progress=lambda n: progress(rows_read=n),
                total=lambda n: progress(rows_total=n),
            )
        # Applying is one transaction, which renews nothing: its lease outlasts the task's
        # hard time limit, which ends a stuck worker first.
        if not reading.update(
            status=ImportStatus.APPLYING,
            rows_read=run.counts.rows_read,
            lease_until=_lease(settings.CELERY_TASK_TIME_LIMIT + 60),
        ):
            raise LeaseLost
        log.info(
            "import %s: %s rows read and staged in %.1f s; applying",
            job.code,
            run.counts.rows_read,
            (timezone.now() - now).total_seconds(),
        )
        dm_types = [(d.pk, getattr(d.current_notice, "pk", None)) for d in job.dm_types.all()]
        with transaction.atomic():
            run.check()
            run.tally()
            rejected = run.write_rejected()
            run.apply(
                now=timezone.now(),
                dm_types=sorted(dm_types),
                evidence=_event_evidence(job),
                actor_id=job.created_by_id,
                actor_label=job.actor_label,
            )
            counts = run.counts.as_dict()
            log.info("import %s: applied; committing", job.code)
            if not jobs.filter(status=ImportStatus.APPLYING).update(
                status=ImportStatus.SUCCEEDED,
                lease_until=None,
                rows_total=run.counts.rows_read,
                rejected_file=rejected,
                **counts,
            ):
                raise LeaseLost  # rolls the import back: the job was given up meanwhile
            audit_record(
                unit=job.unit,
                actor=job.created_by,
                verb="import.finish",
                obj=job,
                data={"list": str(job.recipient_list.code), "mode": job.mode, **counts},
            )
        # Finished means committed: the time is taken after the commit.
        jobs.update(finished_at=timezone.now())
    except ImportFileError as error:
        _fail(job, str(error))
    except LeaseLost:
        log.warning("import %s: given up by the recovery sweep; nothing was changed", job.code)
    except Exception:
        log.exception("import %s failed", job.code)
        _fail(job, UNEXPECTED)
    finally:
        try:
            run.drop_stage()
        except Exception:  # the connection may be gone with the error; the table goes with it
            log.warning("import %s: staging table not dropped", job.code)
        job.file.delete(save=False)
        jobs.update(file="")
    job.refresh_from_db()
    log.info(
        "import %s %s: %s rows read, %s created, %s granted, %s withdrawn, %s rejected",
        job.code,
        job.status,
        job.rows_read,
        job.created_count,
        job.granted_count,
        job.withdrawn_count,
        job.rejected_count,
    )
    return job


WORKER_LOST = (
    "The worker running this import stopped before it finished (it may have run out of "
    "memory, or been restarted). Nothing was changed: import the file again."
)


def imports_recover(*, now=None) -> int:
    """Fail the imports whose lease ran out: their worker died (killed, out of memory) and
    nothing else will end them (I10). Their files are removed; the page offers to try again.
    Returns how many were given up."""
    now = now or timezone.now()
    given_up = 0
    stale = ImportJob.objects.filter(
        status__in=[ImportStatus.READING, ImportStatus.APPLYING], lease_until__lt=now
    ).select_related("unit", "recipient_list", "created_by")
    for job in stale:
        # Conditional: a worker that renewed its lease meanwhile keeps its job.
        if not ImportJob.objects.filter(pk=job.pk, status=job.status, lease_until__lt=now).update(
            status=ImportStatus.FAILED, error=WORKER_LOST, finished_at=now, lease_until=None
        ):
            continue
        given_up += 1
        log.warning("import %s: its worker stopped; marked failed", job.code)
        audit_record(
            unit=job.unit,
            actor=None,
            verb="import.fail",
            obj=job,
            data={"list": str(job.recipient_list.code), "mode": job.mode, "reason": "lease"},
        )
        _delete_files(job, "file", "rejected_file")
    return given_up


def _delete_files(job: ImportJob, *fields: str) -> None:
    for name in fields:
        stored = getattr(job, name)
        if stored:
            stored.delete(save=False)
    ImportJob.objects.filter(pk=job.pk).update(**{name: "" for name in fields})


NEVER_STARTED = "Never started: the uploaded file was deleted after a day. Import it again."


def imports_purge(*, now=None) -> int:
    """Delete what imports keep of people's files once it is no longer needed: uploads never
    started after a day (the job says so), rejected-rows reports after
    MLM_IMPORT_RETENTION_DAYS. Returns how many files were deleted."""
    now = now or timezone.now()
    deleted = 0
    abandoned = ImportJob.objects.filter(
        status=ImportStatus.UPLOADED, created_at__lt=now - timedelta(days=1)
    ).exclude(file="")
    for job in abandoned:
        if ImportJob.objects.filter(pk=job.pk, status=ImportStatus.UPLOADED).update(
            status=ImportStatus.FAILED, error=NEVER_STARTED, finished_at=now
        ):
            _delete_files(job, "file")
            deleted += 1
    old = now - timedelta(days=settings.MLM_IMPORT_RETENTION_DAYS)
    for job in ImportJob.objects.filter(finished_at__lt=old).exclude(rejected_file=""):
        _delete_files(job, "rejected_file")
        deleted += 1
    return deleted


def directory_sync(
    *,
    recipient_list: RecipientList,
    upload: File,
    default_category: str = "",
    by: AbstractBaseUser | None = None,
) -> ImportJob:
    """Directory sync for operations, run here and now: upsert staff, students and alumni from
    the institution's directory export into an internal list; members who are not in the file
    leave the list, their consent history untouched. Grants nothing (I2)."""
    job, sniffed = import_upload(recipient_list=recipient_list, upload=upload, sync=True, by=by)
    import_start(
        job=job,
        mapping=sniffed.mapping,
        mode=ImportMode.SYNC,
        dm_types=[],
        default_category=default_category,
        by=by,
        enqueue=False,
    )
    return import_run(job_id=job.pk) or job


def list_export(*, recipient_list: RecipientList, by: AbstractBaseUser | None) -> Iterator[str]:
    """The members of a list as CSV lines that no spreadsheet runs as formulas; the export is
    recorded in the audit log (by list, never by person)."""
    user, _label = _actor(by)
    audit_record(unit=recipient_list.unit, actor=user, verb="list.export", obj=recipient_list)
    return csv_lines(list_member_rows(recipient_list))
