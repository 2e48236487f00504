"""Every odd and hostile file of the review, uploaded through the real view and, where the
upload accepts it, run by a real `celery worker`: the message the person sees, and what was
imported (nothing, or every row but the refused ones)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.urls import reverse

from recipients.models import Audience, ImportJob, ImportStatus, Recipient
from recipients.services import list_create
from tests.imports import workbooks
from tests.imports.helpers import csv_bytes, post_upload, start_on_page
from tests.imports.workbooks import BILLION_LAUGHS, EXTERNAL, SHEET, rewritten, workbook
from tests.personas import make_world
from tests.system.conftest import Worker, wait_for

pytestmark = pytest.mark.system

RATIO = 100_000  # raised where a file is to pass the zip-bomb check and reach the worker
XML_REFUSED = "its XML is broken or not allowed"


@pytest.fixture
def worker(transactional_db, tmp_path, media_folder) -> Iterator[Worker]:
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    worker = Worker(
        tmp_path / "worker.log",
        MLM_VAR_DIR=str(media_folder.parent),
        MLM_IMPORT_MAX_COMPRESSION_RATIO=str(RATIO),
    )
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


def entity(doctype: str):
    def inject(xml: str) -> str:
        xml = re.sub(r"^<\?xml[^>]*\?>", "", xml)
        return doctype + xml.replace("ann@example.com", "&lol3;" if "lol" in doctype else "&xxe;")

    return inject


def guests(count: int) -> list[list[str]]:
    return [[f"guest{i}@example.com", f"Guest {i}"] for i in range(count)]


def test_every_file_case_through_the_view_and_a_worker(worker, client, tmp_path, settings):
    world = make_world()
    visitors = list_create(unit=world.unit, name="Gala", audience=Audience.EXTERNAL, by=None)
    client.force_login(world.alice)

    def file(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    def refused(path: Path, message: str) -> None:
        status, answer = post_upload(client, visitors, path)
        assert status == 200 and message in answer, (path.name, answer[-3000:])
        assert not ImportJob.objects.exists() and not Recipient.objects.exists(), path.name

    # Refused at upload, with the reason on the form.
    settings.MLM_IMPORT_MAX_COMPRESSION_RATIO = 100
    refused(
        file("tag.xlsx", rewritten(workbook(), SHEET, lambda x: x.replace("</sheetData>", "</x>"))),
        XML_REFUSED,
    )
    refused(file("laughs.xlsx", rewritten(workbook(), SHEET, entity(BILLION_LAUGHS))), XML_REFUSED)
    refused(file("xxe.xlsx", rewritten(workbook(), SHEET, entity(EXTERNAL))), XML_REFUSED)
    bomb = rewritten(workbook(), SHEET, lambda x: x.replace("Ann", "x" * (20 * workbooks.MB)))
    refused(file("bomb.xlsx", bomb), "is packed")
    refused(file("doc.csv", b"%PDF-1.4 not a table"), "it is a PDF document")
    refused(file("binary.csv", bytes(range(256)) * 50), "it holds binary data, not text")
    wide = ",".join(f"column{i}" for i in range(100_000)) + "\r\na@example.com\r\n"
    refused(file("wide.csv", wide.encode()), "The file has more than ")
    settings.MLM_IMPORT_MAX_BYTES = 12_000_000
    refused(
        file("big.csv", csv_bytes([["email"]]) + b"x" * 12_000_000),
        "The file is 12,000,007 bytes; an import accepts files up to 12,000,000 bytes",
    )
    settings.MLM_IMPORT_MAX_BYTES = 200 * workbooks.MB
    settings.MLM_IMPORT_MAX_COMPRESSION_RATIO = RATIO
    refused(
        workbooks.giant_cell(tmp_path / "cell.xlsx", 20 * workbooks.MB),
        "Row 3 of the workbook has a cell larger than 16 MB",
    )
    giant_text = [b"<si><t>", *workbooks.repeated(b"y", 20 * workbooks.MB), b"</t></si>"]
    refused(
        workbooks.write(
            tmp_path / "shared.xlsx",
            [workbooks.HEADER, workbooks.row(2, "ann@example.com", "Ann", 0)],
            giant_text,
        ),
        "Text number 1 shared by the workbook's cells is larger than 16 MB",
    )

    # Accepted at upload, then run by the worker.
    def run(path: Path, status: str) -> ImportJob:
        code, answer = post_upload(client, visitors, path)
        assert code == 302, (path.name, answer[-3000:])
        job = ImportJob.objects.get(file_name=path.name)
        start_on_page(client, job)
        wait_for(
            lambda: ImportJob.objects.get(pk=job.pk).status in (status, ImportStatus.FAILED),
            timeout=120,
            message=f"{path.name} did not finish; worker log:\n{worker.log()[-3000:]}",
        )
        job.refresh_from_db()
        assert job.status == status, (path.name, job.error)
        return job

    def rejected(job: ImportJob) -> list[str]:
        url = reverse("import_rejected", args=["engineering", visitors.code, job.code])
        return b"".join(client.get(url).streaming_content).decode().splitlines()[1:]

    def failed(path: Path, message: str) -> None:
        before = Recipient.objects.count()
        job = run(path, ImportStatus.FAILED)
        assert job.error.startswith(message), (path.name, job.error)
        url = reverse("import_job", args=["engineering", visitors.code, job.code])
        assert message in client.get(url).content.decode()
        assert Recipient.objects.count() == before, path.name

    lying = rewritten(
        workbook(),
        SHEET,
        lambda x: re.sub(r'<dimension ref="[^"]*"', '<dimension ref="A1:XFD1048576"', x),
    )
    job = run(file("lying.xlsx", lying), ImportStatus.SUCCEEDED)
    assert job.columns == ["email", "first name"] and job.created_count == 1

    rows = [["email", "first name"], *guests(3000)]
    rows[2501] = ["nul@example.com", "Nu\x00ll"]
    job = run(file("nul.csv", csv_bytes(rows)), ImportStatus.SUCCEEDED)
    (line,) = rejected(job)
    assert line.startswith('2502,"The row holds a NUL character') and job.created_count == 2999

    rows = [["email", "first name"], *guests(10)]
    rows[5] = ["huge@example.com", "x" * (10 * workbooks.MB)]
    job = run(file("field.csv", csv_bytes(rows)), ImportStatus.SUCCEEDED)
    (line,) = rejected(job)
    assert line.startswith('6,"The row holds 10,485,776 characters; a row holds at most ')

    rows = [["email", "first name"], ["big@example.com", "x" * (17 * workbooks.MB)]]
    failed(file("cell.csv", csv_bytes(rows)), "Line 2: a cell is larger than 16 MB")

    text = "email,first name\r\n" + "".join(f"cjk{i}@example.com,一丁{i}\r\n" for i in range(50))
    job = run(file("utf16.csv", text.encode("utf-16-le")), ImportStatus.SUCCEEDED)
    assert job.encoding == "utf-16-le" and job.created_count == 50
    assert Recipient.objects.get(email="cjk7@example.com").first_name == "一丁7"

    late = workbooks.giant_cell(tmp_path / "late.xlsx", 20 * workbooks.MB, at_row=3000)
    failed(late, "Row 3000 of the workbook has a cell larger than 16 MB")

    wide_cell = "z" * 600_000
    rows = [
        workbooks.HEADER,
        workbooks.row(2, "ann@example.com", "Ann"),
        workbooks.row(3, "wide@example.com", "Wide", wide_cell, wide_cell),
    ]
    job = run(workbooks.write(tmp_path / "row.xlsx", rows), ImportStatus.SUCCEEDED)
    (line,) = rejected(job)
    assert line.startswith('3,"The row holds 1,200,020 characters; a row holds at most ')
    assert not Recipient.objects.filter(email="wide@example.com").exists()
