"""Files the app wrote that can name a person: uploads of imports not yet run, and rejected-rows
reports. The person's export lists them; erasure removes the person from them (I9), and from
what an import job says of its file (its name, column names, evidence and error).

An address is matched in any case, as every refusal matches it: a report or an upload that
names `Erin@Example.org` names `erin@example.org`.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from django.core.files import File
from django.core.files.storage import default_storage
from django.db.models import Q
from django.utils import timezone

from mlm.models import SenderUnit
from recipients.models import ImportJob, ImportStatus

_CHUNK = 1024 * 1024
ERASED = "[erased]"  # what an erased address becomes in an import job's texts
ERASED_UPLOAD = (
    "Removed before it was imported: it named a person whose data was erased. Import the file "
    "again without them."
)


@dataclass(frozen=True)
class HeldFile:
    job: ImportJob
    field: str  # "file" (an upload not yet imported) or "rejected_file" (a rejected-rows report)

    @property
    def kind(self) -> str:
        return "upload not yet imported" if self.field == "file" else "rejected rows report"


def _chunks_naming(stream, needle: bytes, encodings: tuple[str, ...]) -> bool:
    """Whether a byte stream holds `needle` (lower-case text) in any case, read in chunks that
    overlap so that no match is split."""
    patterns = {needle.decode().encode(e, errors="ignore") for e in encodings}
    keep = max(len(p) for p in patterns)
    tail = b""
    while chunk := stream.read(_CHUNK):
        window = (tail + chunk).lower()
        if any(p and p in window for p in patterns):
            return True
        tail = window[-keep:]
    return False


def _names(job: ImportJob, field: str, address: str) -> bool:
    stored = getattr(job, field)
    if not stored or not default_storage.exists(stored.name):
        return False
    needle = address.lower().encode()
    encodings = ("utf-8", "utf-16-le", "utf-16-be", job.encoding or "utf-8")
    with default_storage.open(stored.name, "rb") as stream:
        head = stream.read(4)
        stream.seek(0)
        if head != b"PK\x03\x04":
            return _chunks_naming(stream, needle, encodings)
        try:
            with zipfile.ZipFile(stream) as workbook:  # an XLSX: its XML parts, streamed
                for member in workbook.namelist():
                    if member.endswith(".xml"):
                        with workbook.open(member) as part:
                            if _chunks_naming(part, needle, ("utf-8",)):
                                return True
        except zipfile.BadZipFile:
            stream.seek(0)
            return _chunks_naming(stream, needle, encodings)
    return False


def files_naming(*, unit: SenderUnit, address: str) -> list[HeldFile]:
    """The unit's import files that name `address`, in any case."""
    jobs = ImportJob.objects.filter(unit=unit).exclude(file="", rejected_file="")
    return [
        HeldFile(job, field)
        for job in jobs.order_by("created_at", "pk")
        for field in ("file", "rejected_file")
        if _names(job, field, address)
    ]


def _rows_without(stored_name: str, address: str) -> Iterator[str]:
    needle = address.lower()
    with default_storage.open(stored_name, "rb") as raw:
        for row in csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline="")):
            if not any(needle in cell.lower() for cell in row):
                out = io.StringIO()
                csv.writer(out).writerow(row)
                yield out.getvalue()


def erase_from_files(*, unit: SenderUnit, address: str) -> int:
    """Remove a person from the unit's import files (I9): their rows leave rejected-rows
    reports; an upload not yet imported that names them is deleted, and its job says why.
    Returns how many files were changed."""
    changed = 0
    for held in files_naming(unit=unit, address=address):
        job, name = held.job, getattr(held.job, held.field).name
        if held.field == "file":
            if job.status != ImportStatus.UPLOADED:
                continue  # running: the import refuses the suppressed address, then deletes it
            ImportJob.objects.filter(pk=job.pk, status=ImportStatus.UPLOADED).update(
                status=ImportStatus.FAILED, error=ERASED_UPLOAD, finished_at=timezone.now()
            )
            default_storage.delete(name)
            ImportJob.objects.filter(pk=job.pk).update(file="")
        else:
            with tempfile.TemporaryFile("w+b") as spool:
                text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
                for line in _rows_without(name, address):
                    text.write(line)
                text.flush()
                text.detach()
                spool.seek(0)
                default_storage.delete(name)
                saved = default_storage.save(name, File(spool, name="rejected.csv"))
            ImportJob.objects.filter(pk=job.pk).update(rejected_file=saved)
        changed += 1
    return changed


def erase_from_jobs(*, unit: SenderUnit, address: str) -> int:
    """Replace a person's address, in any case, by ERASED in what the unit's import jobs say
    of their files: a file named after them, a header row that was their row, evidence or an
    error that quotes them (I9). Returns how many jobs were changed."""
    pattern = re.compile(re.escape(address), re.IGNORECASE)
    naming = (
        Q(file_name__icontains=address)
        | Q(columns__icontains=address)
        | Q(evidence__icontains=address)
        | Q(error__icontains=address)
    )
    changed = 0
    for job in ImportJob.objects.filter(naming, unit=unit):
        ImportJob.objects.filter(pk=job.pk).update(
            file_name=pattern.sub(ERASED, job.file_name),
            columns=[pattern.sub(ERASED, str(name)) for name in job.columns],
            evidence=pattern.sub(ERASED, job.evidence),
            error=pattern.sub(ERASED, job.error),
        )
        changed += 1
    return changed
