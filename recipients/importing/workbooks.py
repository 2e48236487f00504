"""Reading an XLSX workbook as a stream of rows, within bounds: its size and packing ratio are
checked before anything is decompressed, and its sheet and shared texts are checked as they are
read (no cell or row past CELL_LIMIT), so a hostile workbook is refused before it is in memory."""

from __future__ import annotations

import datetime
import io
import itertools
import re
import zipfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from django.conf import settings

from recipients.importing.limits import CELL_LIMIT, MB, ImportFileError

# What an XLSX may expand to before it is opened: a few compressed megabytes can hold
# gigabytes of repeated XML (a "zip bomb"), which openpyxl would parse in memory.
_NOT_A_WORKBOOK = "This file is not a table we can read: it is a ZIP archive but not an Excel "
# Parts that openpyxl parses whole (the workbook, its styles, relations…): an ordinary workbook's
# are far smaller. The worksheet and the shared texts are read as a stream, under CELL_LIMIT.
_PART_LIMIT = 4 * 1024 * 1024
_STREAMED_PART = re.compile(r"^xl/(worksheets/[^/]+\.xml|sharedStrings\.xml)$", re.IGNORECASE)
_PARSED_PART = re.compile(r"\.(xml|rels|vml)$", re.IGNORECASE)


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
            f"This workbook expands to {expanded / MB:,.0f} MB when unpacked; an import "
            f"reads workbooks of up to {limit / MB:,.0f} MB unpacked. Save it as CSV, or "
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
                f"This workbook's part {name} is {member.file_size / MB:,.1f} MB; an import reads "
                f"such parts of up to {_PART_LIMIT // MB} MB. Save the workbook as CSV and "
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
        most = CELL_LIMIT // MB
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


def xlsx_rows(
    stream: IO[bytes], deadline: Callable[[], None] = _no_deadline
) -> tuple[Iterator[tuple[int, list[str]]], int | None, Callable]:
    """The rows of a workbook's first sheet as (number, cells), the rows it claims to have (an
    estimate for the progress, or None), and a function that closes the workbook."""
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


def preview_deadline(clock: Callable[[], float]) -> Callable[[], None]:
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
