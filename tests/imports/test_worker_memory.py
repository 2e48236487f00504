"""The bombs, uploaded through the real view and run by a real `celery worker`: each is refused
with a clear message and imports nothing, and memory stays bounded — the worker process that
reads a file, and the upload's reading in a process of its own, both peak under 300 MB (the
peaks are printed: a benchmark-style measurement)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from django.conf import settings
from django.urls import reverse

from recipients.models import Audience, ImportJob, ImportStatus, Recipient
from recipients.services import list_create
from tests.imports import workbooks
from tests.imports.helpers import post_upload, start_on_page
from tests.personas import make_world
from tests.processes import ROOT, Worker, wait_for, worker_env

pytestmark = pytest.mark.system

PEAK_LIMIT_MB = 300
# Past the compression ratio a workbook is refused at upload; the worker is tested here with
# files that pass it (a giant cell within the byte limits), so the ratio is raised for both.
RATIO = "100000"
# The peak is read from VmHWM: ru_maxrss would count the test process it was forked from.
SNIFF = """
import sys
import django
django.setup()
from recipients.importing.limits import ImportFileError
from recipients.importing.reading import sniff
try:
    with open(sys.argv[1], "rb") as stream:
        sniff(stream)
    print("read")
except ImportFileError as error:
    print(error)
with open("/proc/self/status") as status:
    print(next(int(x.split()[1]) // 1024 for x in status if x.startswith("VmHWM:")))
"""


@pytest.fixture
def worker(transactional_db, tmp_path, media_folder) -> Iterator[Worker]:
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    worker = Worker(
        tmp_path / "worker.log",
        MLM_VAR_DIR=str(media_folder.parent),
        MLM_IMPORT_MAX_COMPRESSION_RATIO=RATIO,
    )
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


def upload_peak(path: Path) -> tuple[str, int]:
    """What the upload's reading says of a file, and its peak memory in MB, in a process of
    its own (as a web worker would read it)."""
    env = worker_env(DJANGO_SETTINGS_MODULE="mlm.settings")
    env["MLM_IMPORT_MAX_COMPRESSION_RATIO"] = settings.MLM_IMPORT_MAX_COMPRESSION_RATIO.__str__()
    done = subprocess.run(
        [sys.executable, "-c", SNIFF, str(path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    message, peak = done.stdout.strip().rsplit("\n", 1)
    return message, int(peak)


def child_of(worker: Worker) -> psutil.Process:
    (child,) = psutil.Process(worker.process.pid).children()
    return child


def reset_peak(process: psutil.Process) -> None:
    """Start the process's peak resident memory (VmHWM) again from what it holds now."""
    Path(f"/proc/{process.pid}/clear_refs").write_text("5")


def peak_mb(process: psutil.Process) -> int:
    status = Path(f"/proc/{process.pid}/status").read_text()
    (line,) = [x for x in status.splitlines() if x.startswith("VmHWM:")]
    return int(line.split()[1]) // 1024


def test_the_bombs_are_refused_in_bounded_memory(worker, client, tmp_path, settings, capsys):
    world = make_world()
    visitors = list_create(unit=world.unit, name="Gala", audience=Audience.EXTERNAL, by=None)
    client.force_login(world.alice)
    peaks: dict[str, tuple[int, int | None]] = {}
    tiny = tmp_path / "tiny.csv"  # what the reading process holds without any file
    tiny.write_bytes(b"email\r\nann@example.com\r\n")
    peaks[tiny.name] = (upload_peak(tiny)[1], None)

    # Refused at upload: they unpack far past the byte limit.
    cell = workbooks.giant_cell(tmp_path / "cell-bomb.xlsx", 700 * workbooks.MB)
    entry = b"<si><t>" + b"y" * 1000 + b"</t></si>"
    shared = workbooks.write(
        tmp_path / "shared-bomb.xlsx",
        [workbooks.HEADER, workbooks.row(2, "ann@example.com", "Ann", 0)],
        workbooks.repeated(entry, 1200 * workbooks.MB),
    )
    assert cell.stat().st_size < 1024 * 1024 and shared.stat().st_size < 6 * 1024 * 1024
    for path, expected in [
        (cell, "This workbook expands to 700 MB when unpacked; an import reads workbooks of up "
               "to 100 MB unpacked."),
        (shared, "This workbook expands to 1,200 MB when unpacked"),
    ]:  # fmt: skip
        status, answer = post_upload(client, visitors, path)
        assert status == 200 and expected in answer
        message, peak = upload_peak(path)
        assert expected in message
        peaks[path.name] = (peak, None)
    assert not ImportJob.objects.exists()

    # Within the byte limits (the ratio raised): a 90 MB cell past the preview's rows passes
    # the upload; the worker refuses it with its row, before it is in memory.
    settings.MLM_IMPORT_MAX_COMPRESSION_RATIO = int(RATIO)
    late = workbooks.giant_cell(tmp_path / "late-cell.xlsx", 90 * workbooks.MB, at_row=3000)
    status, answer = post_upload(client, visitors, late)
    assert status == 302, answer[-2000:]
    message, upload = upload_peak(late)
    assert message == "read"
    job = ImportJob.objects.get()
    child = child_of(worker)
    reset_peak(child)
    start_on_page(client, job)
    wait_for(
        lambda: ImportJob.objects.get(pk=job.pk).status == ImportStatus.FAILED,
        timeout=120,
        message=f"the import did not fail; worker log:\n{worker.log()[-3000:]}",
    )
    job.refresh_from_db()
    assert job.error.startswith("Row 3000 of the workbook has a cell larger than 16 MB")
    page = client.get(reverse("import_job", args=["engineering", visitors.code, job.code]))
    assert "Row 3000 of the workbook has a cell larger than 16 MB" in page.content.decode()
    assert not Recipient.objects.exists()
    peaks[late.name] = (upload, peak_mb(child))

    # A legitimate large workbook near the unpacked limit: 900,000 shared texts, 200,000 rows.
    large = workbooks.shared_texts(tmp_path / "large.xlsx", count=900_000, width=50, rows=200_000)
    status, answer = post_upload(client, visitors, large)
    assert status == 302, answer[-2000:]
    message, upload = upload_peak(large)
    assert message == "read"
    job = ImportJob.objects.exclude(pk=job.pk).get()
    reset_peak(child)
    start_on_page(client, job)
    wait_for(
        lambda: ImportJob.objects.get(pk=job.pk).status == ImportStatus.SUCCEEDED,
        timeout=400,
        message=f"the import did not finish; worker log:\n{worker.log()[-3000:]}",
    )
    assert Recipient.objects.count() == 200_000
    assert Recipient.objects.get(email="guest7@example.com").attributes["note"].startswith("28 ")
    peaks[large.name] = (upload, peak_mb(child))

    with capsys.disabled():
        for name, (upload, work) in peaks.items():
            size = (tmp_path / name).stat().st_size / 1024
            print(f"\n{name} ({size:,.0f} KB): upload peak {upload} MB, worker peak {work} MB")
    for name, (upload, work) in peaks.items():
        assert upload < PEAK_LIMIT_MB, (name, upload)
        assert work is None or work < PEAK_LIMIT_MB, (name, work)
