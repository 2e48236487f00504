"""Small files made in the tests, and a way to run an import the way the worker does."""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

from django.core.files import File
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from consent.models import DMType
from consent.services import dm_type_create
from mlm.models import SenderUnit
from recipients.import_services import import_run, import_start, import_upload
from recipients.models import ImportJob, ImportMode, RecipientList


def csv_bytes(
    rows: list[list[str]], *, encoding: str = "utf-8", delimiter: str = ",", newline: str = "\r\n"
) -> bytes:
    text = io.StringIO(newline="")
    csv.writer(text, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return text.getvalue().encode(encoding)


def upload(data: bytes, name: str = "people.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="text/csv")


def dm_types(unit: SenderUnit, *keys: str) -> list[DMType]:
    return [
        dm_type_create(unit=unit, key=key, name=key.title(), notice_text=f"{key} notice", by=None)
        for key in keys
    ]


def run_import(
    recipient_list: RecipientList,
    data: bytes,
    *,
    by,
    name: str = "people.csv",
    mode: str = ImportMode.ADD,
    dm_types: list[DMType] = (),
    attested: bool = False,
    evidence: str = "",
    default_category: str = "",
    mapping: list[str] | None = None,
    encoding: str = "",
) -> ImportJob:
    """Upload, start and run an import; the task function runs here, as a worker would."""
    job, sniffed = import_upload(
        recipient_list=recipient_list, upload=upload(data, name), encoding=encoding, by=by
    )
    import_start(
        job=job,
        mapping=mapping or sniffed.mapping,
        mode=mode,
        dm_types=list(dm_types),
        attested=attested,
        evidence=evidence,
        default_category=default_category,
        by=by,
        enqueue=False,
    )
    return import_run(job_id=job.pk)


def post_upload(client, recipient_list: RecipientList, path: Path) -> tuple[int, str]:
    """Upload a file through the real view: the status, and the page (a refusal stays on the
    form with its message; a redirect goes to the preview)."""
    url = reverse("import_upload", args=[recipient_list.unit.slug, recipient_list.code])
    with open(path, "rb") as data:
        response = client.post(url, {"file": File(data, name=path.name)})
    return response.status_code, html.unescape(response.content.decode())


def start_on_page(client, job: ImportJob, **choices: str) -> None:
    """Start an uploaded import through its page, with the columns as guessed (adding by
    default); the task is queued once the request commits."""
    recipient_list = job.recipient_list
    url = reverse("import_job", args=[recipient_list.unit.slug, recipient_list.code, job.code])
    columns = {f"column_{i}": target for i, target in enumerate(job.mapping)}
    response = client.post(url, {**columns, "mode": "add", **choices})
    assert response.status_code == 302, response.content.decode()[-2000:]
