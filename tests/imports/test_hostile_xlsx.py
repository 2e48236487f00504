"""Odd and hostile workbooks get a clear answer at upload, never a 500 (I10): broken XML,
entity expansion and external entities, zip bombs, and a `<dimension>` that lies."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from django.core.exceptions import ValidationError
from openpyxl import Workbook

from recipients.import_services import import_upload
from recipients.models import ImportJob
from tests.imports.helpers import upload

SHEET = "xl/worksheets/sheet1.xml"


def workbook(rows=(("email", "first name"), ("ann@example.com", "Ann"))) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def rewritten(data: bytes, name: str, change) -> bytes:
    """The workbook with one part's XML changed by `change(text) -> text`."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == name:
                content = change(content.decode()).encode()
            target.writestr(item.filename, content)
    return out.getvalue()


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


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>"""


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
