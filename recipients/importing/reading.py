"""Recipient files in and out: reading, decoding, checking, staging and applying an import.

Rows are read as a stream (CSV through the csv module, XLSX through openpyxl's read-only mode,
its sheet and shared texts size-checked before they are parsed: _CheckedPart) and checked in
Python where one row is enough: the address (email-validator's rules, no network), the audience
of the list (I3), the category, the lengths. They are copied (COPY) to a staging table of the
worker's connection, so memory stays flat however large the file. What needs the whole file or
the database — duplicates, suppressions, recipients the unit already has — is checked in SQL,
and the import is applied with set-based statements in one transaction: a failed import changes
nothing.

Consent is written exactly as consent.services.grant / withdraw would, row by row: one event per
(recipient, DM type) with its evidence and notice version, and the subscription row of each pair
set to that event. Recipients are locked before their events are written, so a recipient's event
ids grow in commit order and "the latest event" stays the highest id (I4).
"""

# ruff: noqa: S608
# The SQL here is assembled from model table names and constants; every value is a parameter.

from __future__ import annotations

import codecs
import csv
import datetime
import functools
import io
import itertools
import json
import logging
import operator
import re
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import email_validator
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
    EMAIL_MAX_LENGTH,
)
from email_validator.syntax import EmailSyntaxError, validate_email_domain_name

from consent.ledger import Who, record_bulk
from consent.models import (
    Action,
    Channel,
    Suppression,
    SuppressionReason,
)
from consent.services import carry_case_sensitive_suppressions
from mlm.inserts import insert_parts, table
from recipients.addresses import AddressHasher, InvalidAddress, normalise_address
from recipients.models import (
    Audience,
    Category,
    ImportJob,
    ImportMode,
    ListMembership,
    Recipient,
    RecipientStatus,
)
from recipients.services import FIELD_LIMITS, audience_problem

log = logging.getLogger(__name__)


class ImportFileError(ValueError):
    """The file cannot be imported as a whole; the message tells the person what to do."""


ATTESTATION = "I confirm these people gave explicit consent to the DM types ticked."

# What a column can become. Any column that is not one of the fields becomes an attribute
# (personalisation data) unless the person chooses to ignore it.
EMAIL, FIRST_NAME, LAST_NAME, CATEGORY, LOCALE = (
    "email",
    "first_name",
    "last_name",
    "category",
    "locale",
)
ATTRIBUTE, IGNORE = "attribute", ""
TARGETS = {
    EMAIL: "Email address",
    FIRST_NAME: "First name",
    LAST_NAME: "Last name",
    CATEGORY: "Category",
    LOCALE: "Language (locale)",
    ATTRIBUTE: "Attribute",
    IGNORE: "Ignore",
}
LIMITS = {EMAIL: 320, **FIELD_LIMITS, CATEGORY: 30, ATTRIBUTE: 1000}
ATTRIBUTE_KEY_LIMIT = 100
MAX_COLUMNS = 200

# Header names we recognise, lower-cased and without spaces, dashes or underscores.
_HEADER_WORDS = {
    EMAIL: {
        "email", "mail", "emailaddress", "mailaddress", "emails",
        "電郵", "电邮", "電郵地址", "电邮地址", "電子郵件", "电子邮件",
        "電子郵箱", "电子邮箱", "郵箱", "邮箱",
    },
    FIRST_NAME: {"firstname", "givenname", "forename", "first", "given", "名", "名字"},
    LAST_NAME: {"lastname", "surname", "familyname", "last", "family", "姓", "姓氏"},
    CATEGORY: {"category", "type", "affiliation", "audience", "role", "類別", "类别", "身份"},
    LOCALE: {"locale", "language", "lang", "語言", "语言"},
}  # fmt: skip

_FIELDS = (EMAIL, FIRST_NAME, LAST_NAME, CATEGORY, LOCALE)
_CATEGORY_WORDS = {c.value: c.value for c in Category} | {
    c.label.lower(): c.value for c in Category
}


# Encodings -----------------------------------------------------------------------------------

# The encodings a person can choose, and how each is named on the page.
ENCODINGS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 with byte order mark",
    "utf-16": "UTF-16 (Excel “Unicode text”)",
    "utf-16-le": "UTF-16 little-endian",
    "utf-16-be": "UTF-16 big-endian",
    "big5hkscs": "Big5 (Traditional Chinese, with HKSCS)",
    "gb18030": "GB18030 (Simplified Chinese, also GBK and GB2312)",
    "cp1252": "Windows-1252 (Western European)",
}
ENCODING_CHOICES = ["utf-8", "utf-16", "big5hkscs", "gb18030", "cp1252"]
DELIMITERS = {",": "Comma", ";": "Semicolon", "\t": "Tab"}

_SAMPLE = 64 * 1024
_CHUNK = 1024 * 1024
# The csv module refuses a cell over 128 KB by default, failing the whole file; a large cell is a
# row problem (the row checks refuse an over-long value with its line). Past this, the file.
CELL_LIMIT = 16 * 1024 * 1024
csv.field_size_limit(CELL_LIMIT)
# A row whose cells together hold more text than this is refused (a problem of its row), in
# whichever columns, imported or ignored: no row of people's data is this large.
ROW_LIMIT = 1024 * 1024
_NON_ASCII = re.compile(rb"[\x80-\xff]")
# Candidates for a file that is not UTF-8. Big5-HKSCS reads every Big5 file and the Hong Kong
# characters besides; GB18030 reads GB2312 and GBK files.
_LEGACY = {"big5hkscs": "big5hkscs", "gb18030": "gb18030", "cp1252": "cp1252"}
_NOT_TABLES = [
    (b"%PDF", "a PDF document"),
    (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) or Word file: save it as .xlsx or as CSV"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
]


def _is_utf8(data: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _utf16_without_bom(head: bytes) -> str:
    """UTF-16 without a byte order mark: the byte order whose text has no control characters
    and the most ASCII (an address list always has some). Chinese text has zero bytes on both
    sides (一 is 00 4E in little-endian), so counting zeros on one side misjudges it."""
    head = head[: len(head) // 2 * 2]
    best, most = "", 0
    for encoding in ("utf-16-le", "utf-16-be"):
        try:
            text = head.decode(encoding)
        except UnicodeDecodeError:
            continue
        controls = sum(1 for c in text if c < " " and c not in "\t\r\n")
        ascii_text = sum(1 for c in text if " " <= c < "\x7f")
        if controls <= len(text) // 100 and ascii_text > most:
            best, most = encoding, ascii_text
    return best


def detect_encoding(stream: IO[bytes]) -> str:
    """The codec of a text file: by its byte order mark, else UTF-8 if it decodes, else the
    likeliest of Big5, GB18030 and Windows-1252 judged on the first non-ASCII text."""
    stream.seek(0)
    head = stream.read(_SAMPLE)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "utf-16"
    if b"\x00" in head:
        found = _utf16_without_bom(head)
        if found:
            return found
        raise ImportFileError("This file is not a table: it holds binary data, not text.")
    # Judge on the first non-ASCII text, wherever it is: a file can be ASCII for a long while.
    stream.seek(0)
    offset = 0
    while chunk := stream.read(_CHUNK):
        found = _NON_ASCII.search(chunk)
        if found:
            stream.seek(offset + found.start())
            window = stream.read(_SAMPLE)
            break
        offset += len(chunk)
    else:
        return "utf-8"
    if _is_utf8(window):
        return "utf-8"
    if b"\n" in window[:-1]:
        window = window[: window.rindex(b"\n")]
    from charset_normalizer import from_bytes

    best = from_bytes(window, cp_isolation=list(_LEGACY)).best()
    if best is None or best.encoding not in _LEGACY:
        raise ImportFileError(
            "Could not tell how this file's text is encoded. Choose the encoding it was saved "
            "with (UTF-8, UTF-16, Big5, GB18030 or Windows-1252) and read it again."
        )
    return _LEGACY[best.encoding]


def _effective_encoding(stream: IO[bytes], chosen: str) -> str:
    """A chosen UTF-8 or UTF-16 still honours the file's byte order mark."""
    stream.seek(0)
    head = stream.read(4)
    if chosen == "utf-8" and head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if chosen.startswith("utf-16") and head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "utf-16"
    return chosen


def _guess_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into the most, and most regular, columns."""
    lines = text.splitlines()[:20]
    best, best_score = ",", (0, 0)
    for delimiter in ("\t", ";", ","):
        try:
            rows = list(csv.reader(lines, delimiter=delimiter))
        except csv.Error:
            continue
        if not rows:
            continue
        width = len(rows[0])
        regular = sum(1 for r in rows if len(r) == width)
        score = (regular if width > 1 else 0, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


# Reading -------------------------------------------------------------------------------------


@dataclass
class Sniffed:
    """What the first rows of a file say: its format, encoding, delimiter, header and preview."""

    file_format: str
    encoding: str = ""
    encoding_detected: bool = True
    delimiter: str = ""
    has_header: bool = True
    columns: list[str] = field(default_factory=list)
    mapping: list[str] = field(default_factory=list)
    preview: list[list[str]] = field(default_factory=list)

    @property
    def encoding_label(self) -> str:
        return ENCODINGS.get(self.encoding, self.encoding)


def _cell(value: Any) -> str:
    """A spreadsheet cell as text: whole numbers without '.0', dates in ISO form."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ").removesuffix(" 00:00:00")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _file_format(stream: IO[bytes]) -> str:
    stream.seek(0)
    head = stream.read(8)
    if not head:
        raise ImportFileError("The file is empty.")
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    for magic, what in _NOT_TABLES:
        if head.startswith(magic):
            raise ImportFileError(f"This file is not a table we can read: it is {what}.")
    return "csv"


# What an XLSX may expand to before it is opened: a few compressed megabytes can hold
# gigabytes of repeated XML (a "zip bomb"), which openpyxl would parse in memory.
_NOT_A_WORKBOOK = "This file is not a table we can read: it is a ZIP archive but not an Excel "
# Parts that openpyxl parses whole (the workbook, its styles, relations…): an ordinary workbook's
# are far smaller. The worksheet and the shared texts are read as a stream, under CELL_LIMIT.
_PART_LIMIT = 4 * 1024 * 1024
_STREAMED_PART = re.compile(r"^xl/(worksheets/[^/]+\.xml|sharedStrings\.xml)$", re.IGNORECASE)
_PARSED_PART = re.compile(r"\.(xml|rels|vml)$", re.IGNORECASE)
_MB = 1024 * 1024


def _check_expansion(stream: IO[bytes]) -> None:
    """Refuse a workbook whose parts expand past MLM_IMPORT_MAX_UNCOMPRESSED_BYTES or by more
    than MLM_IMPORT_MAX_COMPRESSION_RATIO, or whose other XML parts (read whole) are larger
    than an ordinary workbook's, before anything is decompressed."""
    stream.seek(0)
    try:
        with zipfile.ZipFile(stream) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ImportFileError(f"{_NOT_A_WORKBOOK}workbook (.xlsx) ({error}).") from None
    expanded = sum(m.file_size for m in members)
    packed = sum(m.compress_size for m in members) or 1
    limit = settings.MLM_IMPORT_MAX_UNCOMPRESSED_BYTES
    ratio = settings.MLM_IMPORT_MAX_COMPRESSION_RATIO
    if expanded > limit:
        raise ImportFileError(
            f"This workbook expands to {expanded / _MB:,.0f} MB when unpacked; an import "
            f"reads workbooks of up to {limit / _MB:,.0f} MB unpacked. Save it as CSV, or "
            "split it."
        )
    if expanded / packed > ratio:
        raise ImportFileError(
            f"This workbook is packed {expanded // packed:,} to 1 (at most {ratio} to 1 is read): "
            "it is not an ordinary spreadsheet. Save it as CSV and import that."
        )
    for member in members:
        name = member.filename
        if (
            member.file_size > _PART_LIMIT
            and _PARSED_PART.search(name)
            and not _STREAMED_PART.match(name)
        ):
            raise ImportFileError(
                f"This workbook's part {name} is {member.file_size / _MB:,.1f} MB; an import reads "
                f"such parts of up to {_PART_LIMIT // _MB} MB. Save the workbook as CSV and "
                "import that."
            )


def _no_deadline() -> None:
    """The worker reads a whole file, however long it takes."""


class _CheckedPart(io.RawIOBase):
    """A streamed part of a workbook (its worksheet, or its shared texts), checked as it is read:
    no cell and no row holds more than CELL_LIMIT bytes of XML, and the deadline holds. Data
    reaches the XML parser only once checked, so a huge cell is refused before it is in memory.
    """

    _TAGS = {
        "sheet": re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?(row|c)(?=[\s>/])"),
        "strings": re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?(si)(?=[\s>/])"),
    }
    _ROW_NUMBER = re.compile(rb"""\sr\s*=\s*["'](\d+)""")
    _READ = 64 * 1024

    def __init__(self, source: IO[bytes], kind: str, deadline: Callable[[], None]) -> None:
        super().__init__()
        self.source, self.kind, self.deadline = source, kind, deadline
        self.tags = self._TAGS[kind]
        self.ready, self.offset = b"", 0  # checked; what the parser has not read yet
        self.carry: list[bytes] = []  # after the last '>': a tag may be cut there
        self.carried = 0
        self.ended = False
        self.row = 0  # the row (or shared text) being read
        self.cell = 0  # bytes of XML of the cell (or shared text) being read
        self.row_size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self.ended and (size < 0 or len(self.ready) - self.offset < size):
            self.deadline()
            chunk = self.source.read(self._READ)
            cut = chunk.rfind(b">") + 1
            if chunk and not cut:
                # Text without a tag end (a large cell): counted, joined once a tag ends.
                self.carry.append(chunk)
                self.carried += len(chunk)
                self._limit(self.carried)
                continue
            self.ended = not chunk
            data = b"".join([*self.carry, chunk[:cut] if chunk else b""])
            self.carry, self.carried = [chunk[cut:]] if chunk else [], len(chunk) - cut
            self._check(data)
            self._limit(self.carried)
        out = self.ready[self.offset : None if size < 0 else self.offset + size]
        self.offset += len(out)
        return out

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.source.close()
        super().close()

    def _check(self, data: bytes) -> None:
        position = 0
        for found in self.tags.finditer(data):
            self.cell += found.start() - position
            self.row_size += found.start() - position
            self._limit(0)
            position = found.start()
            if found[1] == b"c":
                self.cell = 0
                continue
            self.cell = self.row_size = 0
            end = data.find(b">", found.end())
            number = self._ROW_NUMBER.search(data, found.end(), end if end >= 0 else len(data))
            self.row = int(number[1]) if number and found[1] == b"row" else self.row + 1
        self.cell += len(data) - position
        self.row_size += len(data) - position
        self._limit(0)
        self.ready, self.offset = self.ready[self.offset :] + data, 0

    def _limit(self, pending: int) -> None:
        most = CELL_LIMIT // _MB
        if self.kind == "strings" and self.cell + pending > CELL_LIMIT:
            raise ImportFileError(
                f"Text number {self.row} shared by the workbook's cells is larger than {most} MB, "
                "which no column of an import can hold. Remove it and import the file again."
            )
        if self.kind == "sheet" and self.row_size + pending > CELL_LIMIT:
            where = f"Row {self.row} of the workbook" if self.row else "The worksheet's start"
            what = "has a cell" if self.cell + pending > CELL_LIMIT else "is"
            raise ImportFileError(
                f"{where} {what} larger than {most} MB, which no column of an import can hold. "
                "Remove it and import the file again."
            )


class _SharedStrings:
    """The workbook's shared texts, read only as far as the cells read so far need them and
    kept compactly (blocks of joined text, not a million strings).

    openpyxl would parse the whole part into a list when the workbook is opened: a hundred
    megabytes of it took seconds and hundreds of megabytes of memory before the first row.
    """

    _BLOCK = 1024

    def __init__(self, source: IO[bytes]) -> None:
        from xml.parsers import expat

        self.source = source
        self.blocks: list[tuple[str, list[int]]] = []
        self.current: list[str] = []
        self.count = 0
        self.ended = False
        self.path: list[str] = []
        self.text: list[str] | None = None
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._refuse
        parser.EntityDeclHandler = self._refuse
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._data
        self.parser = parser

    @staticmethod
    def _refuse(*_args: Any) -> None:
        raise ValueError("XML with a DTD or entities is not read")

    def _start(self, name: str, _attributes: Any) -> None:
        name = name.rpartition(" ")[2]
        # The text of <t> in <si> or in a run <r>; phonetic guides (<rPh>) are not the text.
        if name == "si":
            self.text = []
        elif name == "t" and self.path and self.path[-1] in ("si", "r") and "rPh" not in self.path:
            self.path.append("t*")
            return
        self.path.append(name)

    def _end(self, _name: str) -> None:
        name = self.path.pop() if self.path else ""
        if name == "si" and self.text is not None:
            self._add("".join(self.text).replace("x005F_", ""))
            self.text = None

    def _data(self, data: str) -> None:
        if self.path and self.path[-1] == "t*" and self.text is not None:
            self.text.append(data)

    def _add(self, text: str) -> None:
        self.current.append(text)
        self.count += 1
        if len(self.current) == self._BLOCK:
            offsets = list(itertools.accumulate(map(len, self.current), initial=0))
            self.blocks.append(("".join(self.current), offsets))
            self.current = []

    def __getitem__(self, index: int) -> str:
        while index >= self.count and not self.ended:
            chunk = self.source.read(64 * 1024)
            self.parser.Parse(chunk, not chunk)
            self.ended = not chunk
        if not 0 <= index < self.count:
            raise IndexError(f"shared text {index} is not in the workbook")
        block, at = divmod(index, self._BLOCK)
        if block == len(self.blocks):
            return self.current[at]
        text, offsets = self.blocks[block]
        return text[offsets[at] : offsets[at + 1]]


class _CheckedArchive:
    """The archive as openpyxl's read-only worksheets see it: each read of a sheet is checked
    (_CheckedPart). While the workbook is being opened, a sheet reads as empty: openpyxl would
    look for its <dimension> there, parsing the whole sheet when it has none."""

    def __init__(self, archive: zipfile.ZipFile, deadline: Callable[[], None]) -> None:
        self.archive, self.deadline, self.opened = archive, deadline, False

    def open(self, name: str) -> IO[bytes]:
        if not self.opened:
            return io.BytesIO(b"<worksheet/>")
        return _CheckedPart(self.archive.open(name), "sheet", self.deadline)

    def close(self) -> None:
        self.archive.close()


_DIMENSION = re.compile(
    rb"""<(?:[A-Za-z_][\w.\-]*:)?dimension\s+ref\s*=\s*["'][^"':]*:?[A-Z]*(\d+)"""
)


def _claimed_rows(archive: zipfile.ZipFile, path: str) -> int | None:
    """The last row the sheet's <dimension> claims (it comes before the rows), if any."""
    with archive.open(path) as part:
        found = _DIMENSION.search(part.read(64 * 1024))
    return int(found[1]) if found else None


def _open_workbook(stream: IO[bytes], deadline: Callable[[], None]):
    """The workbook in openpyxl's read-only mode, its sheets and shared texts read as checked
    streams (_CheckedPart, _SharedStrings), and the rows its first sheet claims to have."""
    from openpyxl.reader.excel import SHARED_STRINGS, ExcelReader

    class Reader(ExcelReader):
        def read_strings(self) -> None:
            part = self.package.find(SHARED_STRINGS)
            if part is not None:
                source = self.archive.open(part.PartName[1:])
                self.shared_strings = _SharedStrings(_CheckedPart(source, "strings", deadline))

        def read_workbook(self) -> None:
            super().read_workbook()
            self.wb._archive = _CheckedArchive(self.archive, deadline)

    _check_expansion(stream)
    stream.seek(0)
    try:
        # openpyxl parses through defusedxml (a dependency): no DTD, no entity expansion.
        reader = Reader(stream, read_only=True, data_only=True)
        reader.read()
        workbook = reader.wb
        workbook._archive.opened = True
        sheets = workbook.worksheets
        claimed = _claimed_rows(reader.archive, sheets[0]._worksheet_path) if sheets else None
    except ImportFileError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        if not (isinstance(error, ValueError) and "XML" in str(error)):
            raise ImportFileError(f"{_NOT_A_WORKBOOK}workbook (.xlsx) ({error}).") from None
        raise ImportFileError(
            "This workbook cannot be read: its XML is broken or not allowed. Open it in Excel "
            "and save it again, or save it as CSV."
        ) from None
    except Exception as error:  # broken or hostile XML: ParseError, DTDForbidden, …
        raise ImportFileError(
            f"This workbook cannot be read: its XML is broken or not allowed "
            f"({type(error).__name__}). Open it in Excel and save it again, or save it as CSV."
        ) from None
    return workbook, claimed


def _xlsx_rows(
    stream: IO[bytes], deadline: Callable[[], None] = _no_deadline
) -> tuple[Iterator[tuple[int, list[str]]], int | None, Callable]:
    workbook, claimed = _open_workbook(stream, deadline)
    sheet = workbook.worksheets[0] if workbook.worksheets else None
    if sheet is None:
        workbook.close()
        raise ImportFileError("The workbook has no worksheet.")
    # The sheet's <dimension> is what the file claims; it only estimates the progress. Rows are
    # read as they are, not padded to a claimed width.
    total = claimed if claimed and 1 < claimed <= 1_048_576 else None

    def rows() -> Iterator[tuple[int, list[str]]]:
        number = 0
        try:
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                yield number, [_cell(v) for v in values]
        except ImportFileError:
            raise
        except Exception as error:  # XML broken further into the sheet
            raise ImportFileError(
                f"Row {number + 1} of the workbook cannot be read: its XML is broken or not "
                f"allowed ({type(error).__name__}). Nothing was changed."
            ) from None

    return rows(), total, workbook.close


def _csv_rows(stream: IO[bytes], encoding: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    stream.seek(0)
    text = io.TextIOWrapper(stream, encoding=encoding, errors="strict", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    start = 1
    try:
        for cells in reader:
            yield start, cells
            start = reader.line_num + 1
    except UnicodeDecodeError as error:
        line = _line_at(stream, stream.tell() - len(error.object) + error.start, encoding)
        raise ImportFileError(
            f"Line {line} cannot be read as {ENCODINGS.get(encoding, encoding)}. Choose the "
            "encoding the file was saved with and import it again."
        ) from None
    except csv.Error as error:
        if "field larger than field limit" in str(error):
            raise ImportFileError(
                f"Line {reader.line_num}: a cell is larger than {CELL_LIMIT // 1024 // 1024} MB, "
                "which no column of an import can hold. Remove it and import the file again."
            ) from None
        raise ImportFileError(
            f"Line {reader.line_num}: the file is not a readable table ({error})."
        ) from None
    finally:
        text.detach()


def _line_at(stream: IO[bytes], offset: int, encoding: str) -> int:
    """The line number of a byte offset (newline bytes counted; UTF-16 counted per unit)."""
    stream.seek(0)
    newline = "\n".encode(encoding.replace("-sig", "").replace("utf-16", "utf-16-le"))
    lines, left = 1, max(offset, 0)
    while left > 0 and (chunk := stream.read(min(left, _CHUNK))):
        lines += chunk.count(newline)
        left -= len(chunk)
    return lines


def _header_key(name: str) -> str:
    return re.sub(r"[\s_\-.:]+", "", name).lower()


def guess_mapping(columns: list[str], preview: list[list[str]], has_header: bool) -> list[str]:
    """What each column becomes, guessed from its name or, without a header, from its cells."""
    mapping: list[str] = []
    for index, name in enumerate(columns):
        key = _header_key(name) if has_header else ""
        target = next((t for t, words in _HEADER_WORDS.items() if key in words), None)
        if target is None and not has_header:
            cells = [row[index] for row in preview if index < len(row) and row[index].strip()]
            if cells and all("@" in c for c in cells):
                target = EMAIL
        if target in mapping:
            target = None
        mapping.append(target or (ATTRIBUTE if has_header else IGNORE))
    return mapping


def _column_names(first_row: list[str], has_header: bool, width: int) -> list[str]:
    if has_header:
        names = [c.strip()[:ATTRIBUTE_KEY_LIMIT] for c in first_row]
        names += [""] * (width - len(names))
        return [n or f"Column {i}" for i, n in enumerate(names, start=1)]
    return [f"Column {i}" for i in range(1, width + 1)]


def _preview_deadline(clock: Callable[[], float]) -> Callable[[], None]:
    """A check that raises ImportFileError once MLM_IMPORT_PREVIEW_SECONDS have passed."""
    seconds = settings.MLM_IMPORT_PREVIEW_SECONDS
    end = clock() + seconds

    def check() -> None:
        if clock() > end:
            raise ImportFileError(
                f"The first rows of this workbook could not be read within {seconds} seconds: "
                "it is too large or too complex to preview. Save it as CSV and import that, or "
                "split it."
            )

    return check


def sniff(
    stream: IO[bytes],
    *,
    encoding: str = "",
    delimiter: str = "",
    has_header: bool | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Sniffed:
    """Read the head of a file: format, encoding (detected unless chosen), delimiter, header
    and the first rows. Raises ImportFileError with a plain reason if it is not a table.

    It runs in the web request: it reads the first rows only (a CSV's first 256 KB; a
    workbook's first rows, within MLM_IMPORT_PREVIEW_SECONDS as `clock` counts them)."""
    file_format = _file_format(stream)
    if file_format == "xlsx":
        deadline = _preview_deadline(clock)
        rows, _total, close = _xlsx_rows(stream, deadline)
        try:
            head = []
            for row in itertools.islice(rows, 6):
                head.append(row)
                deadline()
        finally:
            close()
        sniffed = Sniffed(file_format="xlsx")
        first_line_cut = False
    else:
        chosen = bool(encoding)
        encoding = _effective_encoding(stream, encoding) if chosen else detect_encoding(stream)
        stream.seek(0)
        sample = stream.read(256 * 1024)
        complete = not stream.read(1)
        try:
            text = codecs.getincrementaldecoder(encoding)(errors="strict").decode(
                sample, final=complete
            )
        except UnicodeDecodeError:
            raise ImportFileError(
                f"The file cannot be read as {ENCODINGS.get(encoding, encoding)}: choose the "
                "encoding it was saved with."
            ) from None
        first_line_cut = not complete and "\n" not in text
        if not complete and "\n" in text:
            text = text[: text.rindex("\n") + 1]
        if any(ord(c) < 32 and c not in "\t\r\n" for c in text[:4096]):
            raise ImportFileError("This file is not a table: it holds control characters.")
        delimiter = delimiter or _guess_delimiter(text)
        try:
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            head = list(zip(itertools.count(1), itertools.islice(reader, 6), strict=False))
        except csv.Error as error:
            raise ImportFileError(f"The file is not a readable table ({error}).") from None
        sniffed = Sniffed(
            file_format="csv", encoding=encoding, encoding_detected=not chosen, delimiter=delimiter
        )
    head = [(n, r) for n, r in head if any(c.strip() for c in r)]
    if not head:
        raise ImportFileError("The file holds no rows.")
    first = head[0][1]
    if has_header is None:
        has_header = not any("@" in c for c in first)
    # With a header, the header says how many columns there are: a longer row is refused.
    width = len(first) if has_header else max(len(r) for _n, r in head)
    if width > MAX_COLUMNS:
        counted = f"more than {width - 1}" if file_format == "csv" and first_line_cut else width
        raise ImportFileError(f"The file has {counted} columns; at most {MAX_COLUMNS} can be read.")
    body = [r for _n, r in (head[1:] if has_header else head)][:5]
    sniffed.has_header = has_header
    sniffed.columns = _column_names(first, has_header, width)
    sniffed.preview = [(r + [""] * (width - len(r)))[:width] for r in body]
    sniffed.mapping = guess_mapping(sniffed.columns, sniffed.preview, has_header)
    return sniffed


def preview(job: ImportJob) -> Sniffed:
    """The head of an uploaded file as the job reads it now (encoding, separator, header)."""
    with open_stored(job.file.name) as stream:
        return sniff(
            stream, encoding=job.encoding, delimiter=job.delimiter, has_header=job.has_header
        )


def open_stored(name: str) -> IO[bytes]:
    """A binary, seekable stream of a file in the default storage."""
    stored = default_storage.open(name, "rb")
    inner = getattr(stored, "file", None)
    return inner if isinstance(inner, io.IOBase) else stored


def estimate_rows(stream: IO[bytes], encoding: str) -> int:
    """Lines in a text file (a quoted newline counts too): the progress bar's total."""
    stream.seek(0)
    lines, last = 0, "\n"
    if encoding.startswith("utf-16"):
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            text = decoder.decode(chunk)
            lines += text.count("\n")
            last = text[-1:] or last
    else:
        # Neither Big5 nor GB18030 uses the newline byte inside a character.
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            lines += chunk.count(b"\n")
            last = chr(chunk[-1])
    stream.seek(0)
    return lines + (last != "\n")


# Addresses -----------------------------------------------------------------------------------

_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


@functools.lru_cache(maxsize=100_000)
def _plain_domain(domain: str, test_environment: bool, globally_deliverable: bool) -> str | None:
    """The lower-cased domain if email-validator accepts it unchanged as plain ASCII, else None."""
    try:
        info = validate_email_domain_name(
            domain, test_environment=test_environment, globally_deliverable=globally_deliverable
        )
    except EmailSyntaxError:
        return None
    ascii_domain = info["ascii_domain"]
    if info["domain"] != ascii_domain or len(ascii_domain) != len(domain):
        return None
    return ascii_domain.lower()


def normalise_import_address(raw: str) -> str:
    """The same result as recipients.addresses.normalise_address, faster for plain addresses.

    email-validator checks a typical address in tens of microseconds, mostly spent on the domain
    and on Unicode checks that plain ASCII does not need. For an ASCII address with one @, a
    dot-atom local part and a domain email-validator accepts as it is (checked once per domain,
    by email-validator itself), its result is known; anything else goes to email-validator.
    """
    text = raw.strip()
    if (
        text.isascii()
        and len(text) <= EMAIL_MAX_LENGTH
        and text.count("@") == 1
        and '"' not in text
        and "<" not in text
    ):
        local, _, domain = text.partition("@")
        if local and DOT_ATOM_TEXT.match(local):
            plain = _plain_domain(
                domain, email_validator.TEST_ENVIRONMENT, email_validator.GLOBALLY_DELIVERABLE
            )
            if plain is not None:
                if local.lower() in _CASE_INSENSITIVE:
                    local = local.lower()
                return f"{local}@{plain}"
    return normalise_address(text)


# Checking rows -------------------------------------------------------------------------------

# Staged row: line, email, email_hash, first_name, last_name, category, locale, attributes (JSON),
# problem (why the row is rejected, or None), kind (of problem).
StagedRow = tuple[int, str, str | None, str, str, str, str, str, str | None, str | None]


_to_json = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


class RowChecker:
    """Turns the cells of one row into a staged row, with the reason if the row is refused."""

    def __init__(self, job: ImportJob) -> None:
        mapping = list(job.mapping)
        self.width = len(job.columns)
        # Unmapped fields read the empty cell appended to every row (index `width`).
        self.fields = operator.itemgetter(
            *(mapping.index(t) if t in mapping else self.width for t in _FIELDS)
        )
        self.attributes = [
            (i, job.columns[i]) for i, target in enumerate(mapping) if target == ATTRIBUTE
        ]
        self.audience = job.recipient_list.audience
        self.opt_out = job.mode == ImportMode.OPT_OUT
        self.default_category = job.default_category or (
            Category.EXTERNAL if self.audience == Audience.EXTERNAL else ""
        )
        self.hash = AddressHasher()
        self.limits = (LIMITS[FIRST_NAME], LIMITS[LAST_NAME], LIMITS[LOCALE])
        self._audience_clash: dict[tuple[str, str], bool] = {}

    def _cells(self, cells: list[str]) -> tuple[str, str, str, str, str, dict[str, str]]:
        cells.append("")
        email, first, last, category, locale = (c.strip() for c in self.fields(cells))
        attributes = {key: v for i, key in self.attributes if (v := cells[i].strip())}
        return email, first, last, category, locale, attributes

    def check(self, line: int, cells: list[str]) -> StagedRow | None:
        """The staged row, or None for a row without any content (skipped silently)."""
        joined = "\x1f".join(cells)
        if "\x00" in joined:
            # PostgreSQL text cannot hold NUL: the row is refused, its cells kept without it.
            problem = "The row holds a NUL character (binary data, not text)."
            return self._refused(line, [c.replace("\x00", "") for c in cells], problem)
        if len(joined) > ROW_LIMIT and (size := len(joined) - len(cells) + 1) > ROW_LIMIT:
            problem = f"The row holds {size:,} characters; a row holds at most {ROW_LIMIT:,}."
            return self._refused(line, [c[: LIMITS[ATTRIBUTE]] for c in cells], problem)
        width = self.width
        if len(cells) != width:
            if len(cells) < width:
                cells = cells + [""] * (width - len(cells))
            elif any(c.strip() for c in cells[width:]):
                problem = "The row has more cells than the file has columns."
                return self._refused(line, cells[:width], problem)
            else:
                cells = cells[:width]
        raw_email, first, last, category_text, locale, attributes = self._cells(cells)
        attributes_json = _to_json(attributes) if attributes else "{}"
        if not (raw_email or first or last or category_text or locale or attributes):
            return None

        def refuse(kind: str, problem: str) -> StagedRow:
            fields = (first, last, category_text, locale, attributes_json)
            return (line, raw_email, None, *fields, problem, kind)

        if not raw_email:
            return refuse("invalid", "The address is empty.")
        if len(raw_email) > LIMITS[EMAIL]:
            return refuse("invalid", f"The address is longer than {LIMITS[EMAIL]} characters.")
        try:
            email = normalise_import_address(raw_email)
        except InvalidAddress as error:
            return refuse("invalid", str(error))
        digest = self.hash(email)
        if self.opt_out:
            # A withdrawal is always allowed: only the address matters.
            return (line, email, digest, "", "", "", "", "{}", None, None)
        if category_text:
            category = _CATEGORY_WORDS.get(category_text.lower())
            if category is None:
                choices = ", ".join(Category.values)
                return refuse(
                    "category", f"Unknown category {category_text!r}: use one of {choices}."
                )
        else:
            category = self.default_category
            if not category:
                return refuse("category", "The category is empty and no default was chosen.")
        max_first, max_last, max_locale = self.limits
        if len(first) > max_first or len(last) > max_last or len(locale) > max_locale:
            for value, name, limit in (
                (first, "The first name", max_first),
                (last, "The last name", max_last),
                (locale, "The language", max_locale),
            ):
                if len(value) > limit:
                    return refuse("too_long", f"{name} is longer than {limit} characters.")
        for key, value in attributes.items():
            if len(value) > LIMITS[ATTRIBUTE]:
                return refuse("too_long", f"{key} is longer than {LIMITS[ATTRIBUTE]} characters.")
        # audience_problem (I3) depends on the category and the address's domain only: ask it
        # once per pair, and again with the real address for the message when there is one.
        domain = email[email.rindex("@") + 1 :]
        clash = self._audience_clash.get((domain, category))
        if clash is None:
            probe = audience_problem(email=f"x@{domain}", category=category, audience=self.audience)
            clash = self._audience_clash[(domain, category)] = probe is not None
        if clash:
            problem = audience_problem(email=email, category=category, audience=self.audience)
            return refuse("audience", problem or "The address is of the other audience.")
        return (line, email, digest, first, last, category, locale, attributes_json, None, None)

    def _refused(self, line: int, cells: list[str], problem: str) -> StagedRow:
        email, first, last, category, locale, attributes = self._cells(cells)
        fields = (first, last, category, locale, _to_json(attributes))
        return (line, email, None, *fields, problem, "invalid")


def read_rows(
    job: ImportJob, stream: IO[bytes]
) -> tuple[Iterator[tuple[int, list[str]]], int | None, Callable]:
    """The data rows of a stored import file (header skipped), an estimate of their number,
    and a function that releases the file."""
    if job.file_format == "xlsx":
        rows, total, close = _xlsx_rows(stream)
    else:
        total = estimate_rows(stream, job.encoding)
        rows, close = _csv_rows(stream, job.encoding, job.delimiter or ","), (lambda: None)
    if job.has_header:
        rows = itertools.islice(rows, 1, None)
        total = None if total is None else max(total - 1, 0)
    return rows, total, close


# Staging and applying ------------------------------------------------------------------------

STAGE = "mlm_import_stage"
IDS = "mlm_import_ids"
_STAGE_COLUMNS = (
    "line, email, email_hash, first_name, last_name, category, locale, attributes, problem, kind"
)
_COPY_CHUNK = 20_000


# A UUIDv7-style code (RFC 9562): the creation millisecond, then 74 random bits. A million new
# recipients then append to the end of the code index instead of touching random pages all over
# it, which thrashes PostgreSQL's buffers; the codes stay unguessable.
_TIME_ORDERED_UUID = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
    "substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) "
    "FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid"
)


@dataclass
class Counts:
    rows_read: int = 0
    created_count: int = 0
    updated_count: int = 0
    added_count: int = 0
    removed_count: int = 0
    granted_count: int = 0
    withdrawn_count: int = 0
    duplicate_count: int = 0
    invalid_count: int = 0
    suppressed_count: int = 0
    unknown_count: int = 0

    @property
    def rejected(self) -> int:
        return (
            self.duplicate_count + self.invalid_count + self.suppressed_count + self.unknown_count
        )

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class ImportRun:
    """One run of an import job on this process's database connection."""

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        self.unit_id = job.unit_id
        self.list_id = job.recipient_list_id
        self.counts = Counts()
        self.rows_total: int | None = None
        self.valid = 0

    # Staging (autocommit: progress is visible while the file is read) ------------------------

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(sql, list(params))
            rows = cursor.rowcount
        if log.isEnabledFor(logging.DEBUG):
            statement = " ".join(sql.split())[:90]
            log.debug("%.2f s, %s rows: %s", time.monotonic() - started, rows, statement)
        return rows

    def create_stage(self) -> None:
        self.drop_stage()
        self._execute(
            f"CREATE TEMP TABLE {STAGE} (line integer NOT NULL, email text, email_hash text, "
            "first_name text, last_name text, category text, locale text, attributes text, "
            "problem text, kind text)"
        )
        self._execute(
            f"CREATE TEMP TABLE {IDS} (recipient_id bigint NOT NULL, created boolean NOT NULL)"
        )

    def drop_stage(self) -> None:
        self._execute(f"DROP TABLE IF EXISTS {STAGE}")
        self._execute(f"DROP TABLE IF EXISTS {IDS}")

    def stage(
        self,
        stream: IO[bytes],
        progress: Callable[[int], None],
        total: Callable[[int | None], None] = lambda _total: None,
    ) -> None:
        """Read, check and stage every row of the file, reporting about how many rows there are
        and how many were read as it goes."""
        rows, self.rows_total, close = read_rows(self.job, stream)
        total(self.rows_total)
        checker = RowChecker(self.job)
        checked = (
            staged for line, cells in rows if (staged := checker.check(line, cells)) is not None
        )
        try:
            self._copy(checked, progress)
        finally:
            close()
        self._execute(f"ANALYZE {STAGE}")

    def _copy(self, rows: Iterator[StagedRow], progress: Callable[[int], None]) -> None:
        connection.ensure_connection()
        raw = connection.connection
        sql = f"COPY {STAGE} ({_STAGE_COLUMNS}) FROM STDIN"
        while True:
            written = 0
            # One transaction per chunk, progress included: a failure leaves the connection
            # usable (and, inside a caller's transaction, rolls back to a savepoint).
            with transaction.atomic():
                with raw.cursor() as cursor, cursor.copy(sql) as copy:
                    for row in itertools.islice(rows, _COPY_CHUNK):
                        copy.write_row(row)
                        written += 1
                self.counts.rows_read += written
                progress(self.counts.rows_read)
            if written < _COPY_CHUNK:
                return

    # Checks that need the whole file or the database (inside the import's transaction) -------

    def check(self) -> None:
        """Mark duplicates, suppressed addresses and clashes with recipients the unit has."""
        mode = self.job.mode
        self._execute(
            f"UPDATE {STAGE} AS s SET problem = %s || d.first, kind = 'duplicate' "
            f"FROM (SELECT email_hash, min(line) AS first FROM {STAGE} WHERE problem IS NULL "
            "GROUP BY email_hash HAVING count(*) > 1) AS d "
            "WHERE s.problem IS NULL AND s.email_hash = d.email_hash AND s.line <> d.first",
            ["Duplicate of line "],
        )
        recipients = table(Recipient)
        if mode == ImportMode.OPT_OUT:
            self._execute(
                f"UPDATE {STAGE} AS s SET problem = %s, kind = 'erased' FROM {recipients} AS r "
                "WHERE s.problem IS NULL AND r.unit_id = %s AND r.email_hash = s.email_hash "
                "AND r.status = %s",
                [
                    "This recipient was erased; consent cannot be recorded.",
                    self.unit_id,
                    RecipientStatus.ERASED,
                ],
            )
            self._execute(
                f"UPDATE {STAGE} SET problem = %s, kind = 'unknown' WHERE problem IS NULL AND "
                f"NOT EXISTS (SELECT 1 FROM {recipients} AS r WHERE r.unit_id = %s "
                f"AND r.email_hash = {STAGE}.email_hash)",
                ["Not a recipient of this unit: there is nothing to withdraw.", self.unit_id],
            )
            return
        self._carry_case_sensitive_suppressions()
        reasons, params = [], []
        for reason in SuppressionReason:
            reasons.append("WHEN %s THEN %s")
            text = (
                "Erased at the person's request: the address is kept out of every unit."
                if reason == SuppressionReason.ERASURE
                else f"Suppressed ({reason.label.lower()}): the address must not be mailed."
            )
            params += [reason.value, text]
        self._execute(
            f"UPDATE {STAGE} AS s SET problem = CASE p.reason {' '.join(reasons)} "
            "ELSE 'Suppressed.' END, kind = 'suppressed' "
            f"FROM {table(Suppression)} AS p WHERE s.problem IS NULL "
            "AND p.email_hash = s.email_hash AND (p.unit_id = %s OR p.unit_id IS NULL)",
            [*params, self.unit_id],
        )
        audience = self.job.recipient_list.audience
        other = Audience.INTERNAL if audience == Audience.EXTERNAL else Audience.EXTERNAL
        allowed = Category.of_audience(audience)
        self._execute(
            f"UPDATE {STAGE} AS s SET "
            "problem = CASE WHEN r.status = %s THEN %s ELSE s.email || %s || r.category || %s END, "
            "kind = CASE WHEN r.status = %s THEN 'erased' ELSE 'audience' END "
            f"FROM {recipients} AS r WHERE s.problem IS NULL AND r.unit_id = %s "
            "AND r.email_hash = s.email_hash "
            f"AND (r.status = %s OR r.category NOT IN ({', '.join(['%s'] * len(allowed))}))",
            [
                RecipientStatus.ERASED,
                "This recipient was erased at the person's request.",
                " is already a recipient of this unit as ",
                f" ({other}) and cannot join an {audience} list.",
                RecipientStatus.ERASED,
                self.unit_id,
                RecipientStatus.ERASED,
                *allowed,
            ],
        )

    def tally(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT kind, count(*) FROM {STAGE} GROUP BY kind")
            for kind, number in cursor.fetchall():
                if kind is None:
                    self.valid = number
                elif kind == "duplicate":
                    self.counts.duplicate_count = number
                elif kind == "suppressed":
                    self.counts.suppressed_count = number
                elif kind == "unknown":
                    self.counts.unknown_count = number
                else:
                    self.counts.invalid_count += number

    def write_rejected(self) -> str:
        """Store the rejected rows (line, reason, the file's mapped columns) as a CSV file;
        return its storage name, or '' if no row was rejected."""
        if not self.counts.rejected:
            return ""
        job = self.job
        mapped = [(i, job.columns[i], t) for i, t in enumerate(job.mapping) if t != IGNORE]
        position = {EMAIL: 2, FIRST_NAME: 4, LAST_NAME: 5, CATEGORY: 6, LOCALE: 7}

        def rows() -> Iterator[list[Any]]:
            yield ["line", "reason", *(name for _i, name, _t in mapped)]
            with connection.chunked_cursor() as cursor:
                cursor.execute(
                    f"SELECT line, problem, email, email_hash, first_name, last_name, category, "
                    f"locale, attributes FROM {STAGE} WHERE problem IS NOT NULL ORDER BY line"
                )
                while batch := cursor.fetchmany(2000):
                    for row in batch:
                        attributes = json.loads(row[8] or "{}")
                        values = [
                            attributes.get(name, "") if t == ATTRIBUTE else row[position[t]] or ""
                            for _i, name, t in mapped
                        ]
                        yield [row[0], row[1], *values]

        with tempfile.TemporaryFile("w+b") as spool:
            text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
            for line in csv_lines(rows()):
                text.write(line)
            text.flush()
            text.detach()
            spool.seek(0)
            return default_storage.save(
                f"imports/{job.unit_id}/{job.code}/rejected.csv",
                File(spool, name="rejected.csv"),
            )

    # Applying (inside the import's transaction) ----------------------------------------------

    def apply(
        self,
        *,
        now: datetime.datetime,
        dm_types: list[tuple[int, int | None]],
        evidence: str,
        actor_id: int | None,
        actor_label: str,
    ) -> None:
        """Write recipients, memberships and consent: all of it, or (on any error) nothing."""
        mode = self.job.mode
        self.now = connection.ops.adapt_datetimefield_value(now)
        self._execute("SET LOCAL work_mem = '64MB'")
        if mode == ImportMode.SYNC and not self.valid:
            raise ImportFileError(
                "The directory file has no valid row: nobody was added or removed. "
                "Check the rejected rows."
            )
        self._collect_existing()
        consent = {"dm_types": dm_types, "evidence": evidence, "actor_id": actor_id}
        consent["actor_label"] = actor_label
        if mode == ImportMode.OPT_OUT:
            self.counts.withdrawn_count = self._consent(action="withdraw", **consent)
            return
        self._update_existing()
        self._create_new()
        self.counts.added_count = self._add_to_list()
        if mode == ImportMode.GRANT:
            self.counts.granted_count = self._consent(action="grant", **consent)
        if mode == ImportMode.SYNC:
            self.counts.removed_count = self._remove_leavers()

    def _carry_case_sensitive_suppressions(self) -> None:
        """Let suppressions kept as a case-sensitive hash alone match the file's addresses."""
        if not Suppression.objects.filter(case_sensitive=True).exists():
            return
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT DISTINCT email FROM {STAGE} "
                "WHERE problem IS NULL AND email <> lower(email)"
            )
            carry_case_sensitive_suppressions(email for (email,) in cursor)

    def _collect_existing(self) -> None:
        """Lock the unit's recipients named in the file (in id order, so that two imports
        cannot deadlock) and note their ids: nobody else writes their consent until we commit."""
        select = (
            f"SELECT r.id FROM {table(Recipient)} AS r JOIN {STAGE} AS s "
            "ON r.unit_id = %s AND r.email_hash = s.email_hash WHERE s.problem IS NULL"
        )
        sql = (
            f"WITH locked AS ({select} ORDER BY r.id FOR UPDATE OF r) "
            f"INSERT INTO {IDS} (recipient_id, created) SELECT id, false FROM locked"
        )
        self._execute(sql, [self.unit_id])

    def _update_existing(self) -> None:
        """Update the profiles of recipients the unit has; a blank cell keeps what is there."""
        new = {
            "first_name": "CASE WHEN s.first_name <> '' THEN s.first_name ELSE r.first_name END",
            "last_name": "CASE WHEN s.last_name <> '' THEN s.last_name ELSE r.last_name END",
            "locale": "CASE WHEN s.locale <> '' THEN s.locale ELSE r.locale END",
            "category": "s.category",
        }
        new["attributes"] = "r.attributes || s.attributes::jsonb"
        changed = " OR ".join(f"r.{c} IS DISTINCT FROM {e}" for c, e in new.items())
        assignments = ", ".join(f"{c} = {e}" for c, e in new.items())
        self.counts.updated_count = self._execute(
            f"UPDATE {table(Recipient)} AS r SET {assignments}, updated_at = %s "
            f"FROM {STAGE} AS s WHERE r.unit_id = %s AND r.email_hash = s.email_hash "
            f"AND s.problem IS NULL AND ({changed})",
            [self.now, self.unit_id],
        )

    def _create_new(self) -> None:
        """Create the recipients the unit does not have yet; they grant nothing by themselves."""
        recipients = table(Recipient)
        columns, expressions, params = insert_parts(
            Recipient,
            {
                "code": _TIME_ORDERED_UUID,
                "unit_id": ("%s", [self.unit_id]),
                "email": "s.email",
                "email_hash": "s.email_hash",
                "first_name": "s.first_name",
                "last_name": "s.last_name",
                "category": "s.category",
                "locale": "s.locale",
                "attributes": "s.attributes::jsonb",
                "status": ("%s", [RecipientStatus.ACTIVE.value]),
                "created_at": ("%s", [self.now]),
                "updated_at": ("%s", [self.now]),
            },
            self.now,
        )
        select = (
            f"SELECT {expressions} FROM {STAGE} AS s WHERE s.problem IS NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {recipients} AS r "
            "WHERE r.unit_id = %s AND r.email_hash = s.email_hash)"
        )
        params.append(self.unit_id)
        self.counts.created_count = self._execute(
            f"WITH made AS (INSERT INTO {recipients} ({columns}) {select} ORDER BY s.email "
            "ON CONFLICT (unit_id, email_hash) DO NOTHING RETURNING id) "
            f"INSERT INTO {IDS} (recipient_id, created) SELECT id, true FROM made",
            params,
        )
        if self._count(IDS) < self.valid:
            # Someone added some of these addresses since we looked: take them as existing.
            self._execute(
                f"WITH locked AS (SELECT r.id FROM {recipients} AS r JOIN {STAGE} AS s "
                "ON r.unit_id = %s AND r.email_hash = s.email_hash WHERE s.problem IS NULL AND NOT "
                f"EXISTS (SELECT 1 FROM {IDS} AS i WHERE i.recipient_id = r.id) ORDER BY r.id "
                f"FOR UPDATE OF r) INSERT INTO {IDS} (recipient_id, created) "
                "SELECT id, false FROM locked",
                [self.unit_id],
            )
        self._execute(f"ANALYZE {IDS}")

    def _count(self, name: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {name}")
            return cursor.fetchone()[0]

    def _add_to_list(self) -> int:
        columns, expressions, params = insert_parts(
            ListMembership,
            {
                "recipient_list_id": ("%s", [self.list_id]),
                "recipient_id": "i.recipient_id",
                "added_at": ("%s", [self.now]),
            },
            self.now,
        )
        insert = (
            f"INSERT INTO {table(ListMembership)} ({columns}) SELECT {expressions} FROM {IDS} AS i"
        )
        # New recipients cannot be on the list yet: a plain insert, cheaper than an upsert.
        conflict = "ON CONFLICT (recipient_list_id, recipient_id) DO NOTHING"
        return self._execute(f"{insert} WHERE i.created", params) + self._execute(
            f"{insert} WHERE NOT i.created {conflict}", params
        )

    def _consent(
        self,
        *,
        action: str,
        dm_types: list[tuple[int, int | None]],
        evidence: str,
        actor_id: int | None,
        actor_label: str,
    ) -> int:
        """One consent event per (recipient, DM type) and the subscription row it makes current
        — what consent.services.grant / withdraw write, for every recipient at once."""
        return record_bulk(
            unit_id=self.unit_id,
            recipients=IDS,
            action=Action(action),
            dm_types=dm_types,
            channel=Channel.IMPORT,
            evidence=evidence,
            who=Who(actor_id=actor_id, actor_label=actor_label),
            now=self.now,
        )

    def _remove_leavers(self) -> int:
        """Directory sync: members who are not in the file leave the list (consent untouched).

        People whose address is in the file but suppressed stay: they have not left.
        """
        recipients = table(Recipient)
        return self._execute(
            f"DELETE FROM {table(ListMembership)} WHERE recipient_list_id = %s "
            f"AND recipient_id NOT IN (SELECT recipient_id FROM {IDS}) "
            f"AND recipient_id NOT IN (SELECT r.id FROM {recipients} AS r JOIN {STAGE} AS s "
            "ON r.unit_id = %s AND r.email_hash = s.email_hash WHERE s.kind = 'suppressed')",
            [self.list_id, self.unit_id],
        )


# Exports -------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> str:
    """A cell that a spreadsheet shows as text and never runs: one starting with = + - @ (or a
    tab or carriage return, which some programs skip first) gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """CSV text of `rows`, formula-safe, with a byte order mark so Excel reads it as UTF-8."""
    writer = csv.writer(_Echo())
    yield "\ufeff"
    for row in rows:
        yield writer.writerow([spreadsheet_safe(v) for v in row])


def list_member_rows(recipient_list) -> Iterator[list[Any]]:
    """The members of a list as spreadsheet rows: a header, then one row per recipient."""
    members = Recipient.objects.filter(list_memberships__recipient_list=recipient_list).exclude(
        status=RecipientStatus.ERASED
    )
    keys: list[str] = []
    seen: set[str] = set()
    for attributes in members.values_list("attributes", flat=True).iterator(chunk_size=2000):
        for key in attributes or {}:
            if key not in seen and len(keys) < MAX_COLUMNS:
                seen.add(key)
                keys.append(key)
    yield ["email", "first_name", "last_name", "category", "locale", "status", *keys]
    fields = ("email", "first_name", "last_name", "category", "locale", "status", "attributes")
    for row in members.order_by("email").values_list(*fields).iterator(chunk_size=2000):
        attributes = row[6] or {}
        yield [*row[:6], *(attributes.get(k, "") for k in keys)]
