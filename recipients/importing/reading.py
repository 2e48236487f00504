"""Reading an import file: its format, a CSV's encoding (detected unless chosen), delimiter
and rows, the head of any file for the preview (sniff), and the rows of a stored one.

Rows are read as a stream (CSV through the csv module, XLSX through recipients.importing.
workbooks), so memory stays flat however large the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from django.core.files.storage import default_storage

from recipients.importing.choices import ENCODINGS, column_names, guess_mapping
from recipients.importing.limits import CELL_LIMIT, MAX_COLUMNS, MB, ImportFileError
from recipients.importing.workbooks import preview_deadline, xlsx_rows
from recipients.models import ImportJob

_SAMPLE = 64 * 1024
_CHUNK = MB
# A large cell is a problem of its row, not of the whole file (see CELL_LIMIT).
csv.field_size_limit(CELL_LIMIT)
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
                f"Line {reader.line_num}: a cell is larger than {CELL_LIMIT // MB} MB, "
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
        deadline = preview_deadline(clock)
        rows, _total, close = xlsx_rows(stream, deadline)
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
    sniffed.columns = column_names(first, has_header, width)
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


def read_rows(
    job: ImportJob, stream: IO[bytes]
) -> tuple[Iterator[tuple[int, list[str]]], int | None, Callable]:
    """The data rows of a stored import file (header skipped), an estimate of their number,
    and a function that releases the file."""
    if job.file_format == "xlsx":
        rows, total, close = xlsx_rows(stream)
    else:
        total = estimate_rows(stream, job.encoding)
        rows, close = _csv_rows(stream, job.encoding, job.delimiter or ","), (lambda: None)
    if job.has_header:
        rows = itertools.islice(rows, 1, None)
        total = None if total is None else max(total - 1, 0)
    return rows, total, close
