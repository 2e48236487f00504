"""Reading recipient files: encodings, separators, line endings, spreadsheets, and files that are
not tables. Every file is made here, small."""

from __future__ import annotations

import codecs
import io
import zipfile

import pytest
from django.core.exceptions import ValidationError
from openpyxl import Workbook

from recipients.import_services import import_upload
from recipients.models import Audience, ImportStatus, Recipient
from recipients.services import list_create
from tests.imports.helpers import csv_bytes, run_import, upload

ROWS = [
    ["email", "first name", "last name"],
    ["chan.taiman@example.com", "大文", "陳"],
    ["wong.siuming@example.com", "小明", "黃"],
    ["lee.kayan@example.com", "嘉欣", "李"],
]
SIMPLIFIED = [
    ["email", "first name", "last name"],
    ["chen.dawen@example.com", "大文", "陈"],
    ["huang.xiaoming@example.com", "小明", "黄"],
    ["li.jiaxin@example.com", "嘉欣", "李"],
]


@pytest.fixture
def external(world):
    return list_create(unit=world.unit, name="Visitors", audience=Audience.EXTERNAL, by=None)


def names(unit) -> dict[str, str]:
    return {r.email: f"{r.last_name}{r.first_name}" for r in Recipient.objects.for_unit(unit)}


def xlsx_bytes(rows: list[list[object]]) -> bytes:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "encoding", "rows"),
    [
        (csv_bytes(ROWS), "utf-8", ROWS),
        (codecs.BOM_UTF8 + csv_bytes(ROWS), "utf-8-sig", ROWS),
        # Excel's "Unicode text": UTF-16 little-endian with a byte order mark, tab-separated.
        (csv_bytes(ROWS, encoding="utf-16", delimiter="\t"), "utf-16", ROWS),
        (csv_bytes(ROWS, encoding="big5hkscs"), "big5hkscs", ROWS),
        (csv_bytes(SIMPLIFIED, encoding="gb18030"), "gb18030", SIMPLIFIED),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16-excel-unicode-text", "big5", "gb18030"],
)
def test_it_detects_the_encoding_and_reads_the_names(world, external, data, encoding, rows):
    job, sniffed = import_upload(recipient_list=external, upload=upload(data), by=world.alice)
    assert sniffed.encoding == encoding and job.encoding_detected
    assert sniffed.columns == ["email", "first name", "last name"]
    assert sniffed.preview[0] == rows[1]
    job = run_import(external, data, by=world.alice)
    assert job.status == ImportStatus.SUCCEEDED, job.error
    assert names(world.unit) == {r[0]: r[2] + r[1] for r in rows[1:]}


def test_it_reads_with_the_encoding_the_person_chose(world, external):
    data = csv_bytes(ROWS, encoding="big5hkscs")
    job, sniffed = import_upload(
        recipient_list=external, upload=upload(data), encoding="big5hkscs", by=world.alice
    )
    assert not job.encoding_detected and sniffed.encoding_label.startswith("Big5")
    with pytest.raises(ValidationError, match="cannot be read as UTF-8"):
        import_upload(recipient_list=external, upload=upload(data), encoding="utf-8", by=None)


def test_it_reads_hong_kong_characters_of_big5_hkscs(world, external):
    rows = [["email", "name"], ["ho.ka@example.com", "何嘉㗎"], ["yeung.tsz@example.com", "楊梓啲"]]
    job = run_import(external, csv_bytes(rows, encoding="big5hkscs"), by=world.alice)
    assert job.status == ImportStatus.SUCCEEDED, job.error
    recipient = Recipient.objects.get(email="ho.ka@example.com")
    assert recipient.attributes == {"name": "何嘉㗎"}


def test_it_says_which_encoding_a_legacy_file_has_when_it_is_mostly_ascii(world, external):
    """The first non-ASCII text decides, even far down the file."""
    rows = [["email", "name"]] + [[f"p{i}@example.com", "Plain"] for i in range(40000)]
    rows.append(["last@example.com", "最後一位朋友"])
    _job, sniffed = import_upload(
        recipient_list=external, upload=upload(csv_bytes(rows, encoding="big5hkscs")), by=None
    )
    assert sniffed.encoding == "big5hkscs"


@pytest.mark.parametrize(
    ("delimiter", "newline"), [(",", "\r\n"), (";", "\r\n"), ("\t", "\n"), (";", "\n")]
)
def test_it_reads_separators_and_line_endings(world, external, delimiter, newline):
    data = csv_bytes(ROWS, delimiter=delimiter, newline=newline)
    _job, sniffed = import_upload(recipient_list=external, upload=upload(data), by=None)
    assert sniffed.delimiter == delimiter
    job = run_import(external, data, by=world.alice)
    assert job.status == ImportStatus.SUCCEEDED and job.created_count == 3


def test_it_reads_quoted_newlines_and_separators_in_cells(world, external):
    data = (
        b"email;note;last name\r\n"
        b'"a@example.com";"line one\r\nline two; still the note";"Chan"\r\n'
        b'b@example.com;"say ""hi""";Lee\r\n'
        b"not an address;x;y\r\n"
    )
    job = run_import(external, data, by=world.alice)
    assert job.status == ImportStatus.SUCCEEDED
    assert Recipient.objects.get(email="a@example.com").attributes == {
        "note": "line one\r\nline two; still the note"
    }
    assert Recipient.objects.get(email="b@example.com").attributes == {"note": 'say "hi"'}
    assert job.invalid_count == 1
    from django.core.files.storage import default_storage

    report = default_storage.open(job.rejected_file.name).read().decode("utf-8-sig")
    # The quoted cell spans two lines: the rejected row starts on line 5.
    assert report.splitlines()[1].startswith("5,")


def test_it_reads_an_xlsx_workbook(world, external):
    import datetime

    rows = [
        ["Email", "First name", "Member since", "Number"],
        ["ann@example.com", "Ann", datetime.date(2024, 9, 1), 42],
        [None, None, None, None],
        ["bob@example.com", "Bob", None, 3.5],
    ]
    data = xlsx_bytes(rows)
    _job, sniffed = import_upload(
        recipient_list=external, upload=upload(data, "people.xlsx"), by=None
    )
    assert sniffed.file_format == "xlsx"
    assert sniffed.mapping == ["email", "first_name", "attribute", "attribute"]
    job = run_import(external, data, by=world.alice, name="people.xlsx")
    assert job.status == ImportStatus.SUCCEEDED, job.error
    assert job.rows_read == 2 and job.created_count == 2
    ann = Recipient.objects.get(email="ann@example.com")
    assert ann.first_name == "Ann"
    assert ann.attributes == {"Member since": "2024-09-01", "Number": "42"}


def _zip_of(name: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, "hello")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "The file is empty"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "it is a PDF document"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "it is a PNG image"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", "old Excel"),
        (_zip_of("notes.txt"), "not an Excel workbook"),
        (bytes(range(256)) * 4, "binary data"),
        (b"\r\n\r\n,,,\r\n", "no rows"),
    ],
    ids=["empty", "pdf", "png", "xls", "zip", "binary", "blank"],
)
def test_it_refuses_a_file_that_is_not_a_table_with_a_clear_reason(world, external, data, reason):
    with pytest.raises(ValidationError, match=reason):
        import_upload(recipient_list=external, upload=upload(data, "file.csv"), by=None)


def test_it_refuses_a_file_over_the_size_limit(world, external, settings):
    settings.MLM_IMPORT_MAX_BYTES = 1024 * 1024
    data = csv_bytes([["email"]] + [[f"p{i}@example.com"] for i in range(80000)])
    with pytest.raises(
        ValidationError, match=r"The file is 1\.\d MB; an import accepts files up to 1\.0 MB"
    ):
        import_upload(recipient_list=external, upload=upload(data), by=None)


def test_it_fails_the_import_clearly_when_the_encoding_breaks_halfway(world, external):
    """A file that turns out not to be in the encoding read changes nothing."""
    good = csv_bytes([["email", "name"]] + [[f"p{i}@example.com", "Plain"] for i in range(30000)])
    data = good + "late@example.com,最後\r\n".encode("big5hkscs")
    job = run_import(external, data, by=world.alice, encoding="utf-8")
    assert job.status == ImportStatus.FAILED
    assert "Line 30002 cannot be read as UTF-8" in job.error
    assert not Recipient.objects.for_unit(world.unit).exists()
