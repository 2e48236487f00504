"""Workbooks for the tests: ordinary ones, ones with a part rewritten (broken or hostile XML),
and ones written part by part as a stream, so that a test can make a file that unpacks to
hundreds of megabytes (a zip bomb) without holding it in memory."""

from __future__ import annotations

import io
import itertools
import zipfile
from collections.abc import Iterable
from pathlib import Path

from openpyxl import Workbook

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PACKAGE = "http://schemas.openxmlformats.org/package/2006/relationships"
TYPES = "application/vnd.openxmlformats-officedocument.spreadsheetml"
PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
        'package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.'
        'openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType='
        f'"application/xml"/><Override PartName="/xl/workbook.xml" ContentType="{TYPES}.sheet.'
        f'main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="{TYPES}.'
        'worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="'
        f'{TYPES}.sharedStrings+xml"/></Types>'
    ),
    "_rels/.rels": (
        f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PACKAGE}"><Relationship '
        f'Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    ),
    "xl/workbook.xml": (
        f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets>'
        '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ),
    "xl/_rels/workbook.xml.rels": (
        f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PACKAGE}"><Relationship '
        f'Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/><Relationship '
        f'Id="rId2" Type="{REL}/sharedStrings" Target="sharedStrings.xml"/></Relationships>'
    ),
}
MB = 1024 * 1024
SHEET = "xl/worksheets/sheet1.xml"


def row(number: int, *cells: str | int) -> bytes:
    """A <row>: a str is an inline text, an int the index of a shared text."""
    xml = [f'<row r="{number}">']
    for cell in cells:
        if isinstance(cell, int):
            xml.append(f'<c t="s"><v>{cell}</v></c>')
        else:
            xml.append(f'<c t="inlineStr"><is><t>{cell}</t></is></c>')
    return "".join([*xml, "</row>"]).encode()


HEADER = row(1, "email", "first name", "note")


def write(
    path: Path, rows: Iterable[bytes], shared: Iterable[bytes] = (), extra: dict | None = None
) -> Path:
    """A workbook at `path` whose sheet holds `rows` (<row> elements) and whose shared texts
    are `shared` (the XML of <si> entries, in pieces); `extra` adds or replaces parts."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in PARTS.items():
            archive.writestr(name, text)
        for name, text in (extra or {}).items():
            archive.writestr(name, text)
        for name, root, items in (
            ("xl/worksheets/sheet1.xml", "worksheet", rows),
            ("xl/sharedStrings.xml", "sst", shared),
        ):
            with archive.open(name, "w", force_zip64=True) as part:
                part.write(
                    f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{MAIN}">'.encode()
                )
                part.write(b"<sheetData>" if root == "worksheet" else b"")
                for item in items:
                    part.write(item)
                part.write(b"</sheetData>" if root == "worksheet" else b"")
                part.write(f"</{root}>".encode())
    return path


def repeated(text: bytes, size: int) -> Iterable[bytes]:
    """`size` bytes of `text` repeated, a megabyte at a time."""
    piece = text * (MB // len(text))
    for _ in range(size // len(piece)):
        yield piece
    yield text * ((size % len(piece)) // len(text))


def giant_cell(path: Path, size: int, at_row: int = 3) -> Path:
    """Good rows, and at `at_row` a cell of `size` bytes in the third (a note) column."""
    good = [row(n, f"guest{n}@example.com", f"Guest {n}") for n in range(2, at_row)]
    giant = [
        (
            f'<row r="{at_row}"><c t="inlineStr"><is><t>huge@example.com</t></is></c>'
            f'<c r="C{at_row}" t="inlineStr"><is><t>'
        ).encode(),
        *repeated(b"x", size),
        b"</t></is></c></row>",
    ]
    return write(path, [HEADER, *good, *giant])


def shared_texts(path: Path, count: int, width: int, rows: int) -> Path:
    """`count` distinct shared texts of `width` characters; `rows` people, each with a note
    that is one of them (spread over the whole table)."""
    step = max(count // max(rows, 1), 1)
    sheet = (row(n + 2, f"guest{n}@example.com", f"Guest {n}", n * step) for n in range(rows))
    shared = (b"<si><t>%d %s</t></si>" % (i, b"y" * width) for i in range(count))
    return write(path, itertools.chain([HEADER], sheet), shared)


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


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>"""
