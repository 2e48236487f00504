"""Odd and hostile workbooks get a clear answer at upload, never a 500 (I10): broken XML,
entity expansion and external entities, zip bombs, and a `<dimension>` that lies."""

from __future__ import annotations

import html
import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from recipients.import_services import import_upload
from recipients.importing.choices import EMAIL, FIRST_NAME, IGNORE
from recipients.importing.limits import ImportFileError
from recipients.importing.reading import sniff
from recipients.models import ImportJob, ImportStatus, Recipient
from tests.imports import workbooks
from tests.imports.helpers import post_upload, run_import, upload
from tests.imports.workbooks import BILLION_LAUGHS, EXTERNAL, SHEET, rewritten, workbook


def refused(visitors, world, data: bytes) -> str:
    with pytest.raises(ValidationError) as error:
        import_upload(recipient_list=visitors, upload=upload(data, "guests.xlsx"), by=world.alice)
    assert not ImportJob.objects.exists()
    return " ".join(error.value.messages)


def test_an_ordinary_workbook_is_read(visitors, world):
    _job, sniffed = import_upload(
        recipient_list=visitors, upload=upload(workbook(), "guests.xlsx"), by=world.alice
    )
    assert sniffed.columns == ["email", "first name"] and sniffed.preview == [
        ["ann@example.com", "Ann"]
    ]


def test_a_mismatched_tag_is_a_clear_message(visitors, world):
    data = rewritten(workbook(), SHEET, lambda x: x.replace("</sheetData>", "</sheetDta>"))
    message = refused(visitors, world, data)
    assert "its XML is broken or not allowed" in message


@pytest.mark.parametrize("doctype", [BILLION_LAUGHS, EXTERNAL], ids=["entities", "external"])
def test_a_doctype_with_entities_is_refused(visitors, world, doctype):
    def inject(xml: str) -> str:
        xml = re.sub(r"^<\?xml[^>]*\?>", "", xml)
        return doctype + xml.replace("ann@example.com", "&lol3;" if "lol" in doctype else "&xxe;")

    message = refused(visitors, world, rewritten(workbook(), SHEET, inject))
    assert "its XML is broken or not allowed" in message
    assert "root:" not in message


def test_a_zip_bomb_is_refused_before_it_is_unpacked(visitors, world):
    """A few kilobytes that unpack to many megabytes of one cell."""
    bomb = "x" * (20 * 1024 * 1024)
    data = rewritten(workbook(), SHEET, lambda x: x.replace("Ann", bomb))
    assert len(data) < 100 * 1024
    message = refused(visitors, world, data)
    assert re.search(r"This workbook is packed [\d,]+ to 1 \(at most 100 to 1 is read\)", message)


def test_a_workbook_unpacking_past_the_limit_is_refused(visitors, world, settings):
    settings.MLM_IMPORT_MAX_UNCOMPRESSED_BYTES = 2 * 1024 * 1024
    rows = [("email", "note")] + [(f"g{i}@example.com", f"{i:x}" * 40) for i in range(20000)]
    message = refused(visitors, world, workbook(rows))
    assert re.search(r"This workbook expands to \d+ MB when unpacked; an import reads", message)
    assert "up to 2 MB unpacked" in message


def test_a_dimension_that_lies_is_not_trusted(visitors, world):
    """Two columns that claim A1:XFD1048576 are two columns, not "16384 columns"."""
    data = rewritten(
        workbook(),
        SHEET,
        lambda x: re.sub(r'<dimension ref="[^"]*"', '<dimension ref="A1:XFD1048576"', x),
    )
    _job, sniffed = import_upload(
        recipient_list=visitors, upload=upload(data, "guests.xlsx"), by=world.alice
    )
    assert sniffed.columns == ["email", "first name"]


# Limits that hold for every cell, and a preview that stays in the first rows ------------------


@pytest.fixture
def page(world, client, visitors):
    client.force_login(world.alice)
    return client


def refused_page(client, visitors, path) -> str:
    """Upload through the real view, which refuses the file: the page with its message."""
    status, answer = post_upload(client, visitors, path)
    assert status == 200
    return answer


def test_a_giant_cell_in_any_column_is_refused_with_its_row(page, visitors, tmp_path, settings):
    """20 MB in an unnamed third column, within the byte and ratio limits: refused with its
    row at upload, before the cell is in memory."""
    settings.MLM_IMPORT_MAX_COMPRESSION_RATIO = 10_000
    path = workbooks.giant_cell(tmp_path / "cell.xlsx", 20 * workbooks.MB, at_row=3)
    answer = refused_page(page, visitors, path)
    assert (
        "Row 3 of the workbook has a cell larger than 16 MB, which no column of an import can "
        "hold. Remove it and import the file again."
    ) in answer
    assert not ImportJob.objects.exists()


def test_a_giant_cell_past_the_preview_fails_the_import_with_its_row(
    world, visitors, tmp_path, settings
):
    settings.MLM_IMPORT_MAX_COMPRESSION_RATIO = 10_000
    path = workbooks.giant_cell(tmp_path / "cell.xlsx", 20 * workbooks.MB, at_row=3000)
    job = run_import(visitors, path.read_bytes(), by=world.alice, name="guests.xlsx")
    assert job.status == ImportStatus.FAILED
    assert job.error.startswith("Row 3000 of the workbook has a cell larger than 16 MB")
    assert not Recipient.objects.exists()


def test_a_giant_shared_text_is_refused(page, visitors, tmp_path, settings):
    settings.MLM_IMPORT_MAX_COMPRESSION_RATIO = 10_000
    rows = [workbooks.HEADER, workbooks.row(2, "ann@example.com", "Ann", 0)]
    shared = [b"<si><t>", *workbooks.repeated(b"y", 20 * workbooks.MB), b"</t></si>"]
    path = workbooks.write(tmp_path / "shared.xlsx", rows, shared)
    answer = refused_page(page, visitors, path)
    assert "Text number 1 shared by the workbook's cells is larger than 16 MB" in answer
    assert not ImportJob.objects.exists()


def test_a_row_too_large_is_a_problem_of_its_row(world, visitors, tmp_path, settings):
    """Two ignored cells of 600,000 characters: that row is refused with its number (its cells
    cut short in the report), the others are imported."""
    settings.MLM_IMPORT_MAX_COMPRESSION_RATIO = 10_000
    wide = "z" * 600_000
    rows = [
        workbooks.HEADER,
        workbooks.row(2, "ann@example.com", "Ann"),
        workbooks.row(3, "wide@example.com", "Wide", wide, wide),
        workbooks.row(4, "bob@example.com", "Bob"),
    ]
    path = workbooks.write(tmp_path / "wide.xlsx", rows)
    job = run_import(
        visitors,
        path.read_bytes(),
        by=world.alice,
        name="guests.xlsx",
        mapping=[EMAIL, FIRST_NAME, IGNORE],
    )
    assert job.status == ImportStatus.SUCCEEDED, job.error
    assert job.created_count == 2 and job.invalid_count == 1
    report = job.rejected_file.open("rb").read().decode()
    (line,) = report.splitlines()[1:]
    assert line.startswith('3,"The row holds 1,200,020 characters; a row holds at most 1,048,576."')
    assert not Recipient.objects.filter(email="wide@example.com").exists()


class Ticking:
    """A clock that moves one second each time it is read: the preview's bound is hit after a
    known amount of reading, without waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += 1.0
        return self.now


def test_the_preview_stops_at_its_time_bound(tmp_path, settings):
    """Row 1 names the last of 300,000 shared texts: reading up to it takes longer than the
    bound, and the person is told so (never a 500 nor a server timeout)."""
    settings.MLM_IMPORT_PREVIEW_SECONDS = 10
    shared = (b"<si><t>%d %s</t></si>" % (i, b"y" * 40) for i in range(300_000))
    rows = [workbooks.row(1, "email", 299_999), workbooks.row(2, "ann@example.com", 0)]
    path = workbooks.write(tmp_path / "slow.xlsx", rows, shared)
    with open(path, "rb") as stream, pytest.raises(ImportFileError) as refused:
        sniff(stream, clock=Ticking())
    assert str(refused.value) == (
        "The first rows of this workbook could not be read within 10 seconds: it is too large or "
        "too complex to preview. Save it as CSV and import that, or split it."
    )


def test_the_time_bound_is_a_message_on_the_page(page, visitors, settings):
    settings.MLM_IMPORT_PREVIEW_SECONDS = 0
    url = reverse("import_upload", args=["engineering", visitors.code])
    response = page.post(url, {"file": upload(workbook(), "guests.xlsx")})
    assert response.status_code == 200
    assert "could not be read within 0 seconds" in response.content.decode()
    assert not ImportJob.objects.exists()


@pytest.mark.parametrize("dimension", [True, False], ids=["dimension", "no-dimension"])
def test_the_preview_reads_only_the_first_rows(tmp_path, dimension):
    """A large sheet, with or without <dimension>, and large shared texts: the preview reads a
    few chunks of each, not the whole (each chunk of 64 KB reads the clock once)."""
    count = 100_000
    sheet = workbooks.shared_texts(tmp_path / "big.xlsx", count=count, width=60, rows=count)
    if dimension:
        sheet = rewritten(
            sheet.read_bytes(),
            SHEET,
            lambda x: x.replace("<sheetData>", '<dimension ref="A1:C100001"/><sheetData>'),
        )
        (tmp_path / "big.xlsx").write_bytes(sheet)
    clock = Ticking()
    with open(tmp_path / "big.xlsx", "rb") as stream:
        sniffed = sniff(stream, clock=clock)
    assert sniffed.preview[0] == ["guest0@example.com", "Guest 0", "0 " + "y" * 60]
    assert clock.reads < 20


def test_a_part_read_whole_is_limited(page, visitors, tmp_path, settings):
    settings.MLM_IMPORT_MAX_COMPRESSION_RATIO = 10_000
    styles = "<styleSheet>" + "<a/>" * (1024 * 1024 + 10) + "</styleSheet>"
    rows = [workbooks.HEADER, workbooks.row(2, "ann@example.com", "Ann")]
    path = workbooks.write(tmp_path / "styles.xlsx", rows, extra={"xl/styles.xml": styles})
    answer = refused_page(page, visitors, path)
    assert (
        "This workbook's part xl/styles.xml is 4.0 MB; an import reads such parts of up to 4 MB"
        in answer
    )
    assert not ImportJob.objects.exists()


def test_the_job_page_says_when_its_preview_cannot_be_read_again(page, visitors, settings):
    """A preview read at upload may be past the bound when the page shows it again later."""
    url = reverse("import_upload", args=["engineering", visitors.code])
    response = page.post(url, {"file": upload(workbook(), "guests.xlsx")})
    assert response.status_code == 302
    settings.MLM_IMPORT_PREVIEW_SECONDS = 0
    answer = html.unescape(page.get(response["Location"]).content.decode())
    assert "The preview cannot be shown: The first rows of this workbook could not" in answer
    assert "No data row in the first lines." in answer
