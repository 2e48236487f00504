"""Odd and hostile CSV files get a clear answer (I10): a NUL byte or an oversized cell is a
problem of its row, refused with its line while the rest is imported; UTF-16 without a byte
order mark is read, Chinese text included; and the numbers in messages are right."""

from __future__ import annotations

import io

import pytest

from recipients.importing.limits import CELL_LIMIT, ImportFileError
from recipients.importing.reading import detect_encoding, sniff
from recipients.models import ImportStatus, Recipient
from tests.imports.helpers import run_import


def guests(count: int, start: int = 0) -> list[str]:
    return [f"guest{i}@example.com,Guest {i}\r\n" for i in range(start, start + count)]


def rejected_lines(job) -> list[str]:
    return job.rejected_file.open("rb").read().decode().splitlines()[1:]


def test_a_nul_byte_far_into_the_file_rejects_only_its_row(world, visitors):
    """I10: a NUL after the first 64 KB used to fail the whole import at the database."""
    lines = ["email,first name\r\n", *guests(3000)]
    lines[2500] = "nul@example.com,Nu\x00ll\r\n"
    data = "".join(lines).encode()
    assert data.index(b"\x00") > 64 * 1024
    job = run_import(visitors, data, by=world.alice)
    assert job.status == ImportStatus.SUCCEEDED, job.error
    assert job.created_count == 2999 and job.invalid_count == 1
    assert not Recipient.objects.filter(email="nul@example.com").exists()
    (line,) = rejected_lines(job)
    assert line.startswith('2501,"The row holds a NUL character')
    assert "\x00" not in line


def test_a_ten_megabyte_cell_rejects_only_its_row(world, visitors):
    """I10: the csv module's 128 KB cell limit used to fail the whole file."""
    lines = ["email,first name\r\n", *guests(10)]
    lines[5] = "huge@example.com," + "x" * (10 * 1024 * 1024) + "\r\n"
    job = run_import(visitors, "".join(lines).encode(), by=world.alice)
    assert job.status == ImportStatus.SUCCEEDED, job.error
    assert job.created_count == 9 and job.invalid_count == 1
    (line,) = rejected_lines(job)
    assert line.startswith('6,"The row holds 10,485,776 characters; a row holds at most ')
    assert len(line) < 2000  # the report keeps the start of each cell


def test_a_cell_past_the_limit_fails_the_file_with_its_line(world, visitors):
    lines = ["email,first name\r\n", *guests(3)]
    lines[2] = "huge@example.com," + "x" * (CELL_LIMIT + 10) + "\r\n"
    job = run_import(visitors, "".join(lines).encode(), by=world.alice)
    assert job.status == ImportStatus.FAILED
    assert job.error.startswith("Line 3: a cell is larger than 16 MB")
    assert not Recipient.objects.exists()


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_is_read_chinese_included(world, visitors, encoding):
    """一 (U+4E00) has a zero low byte: the file is still text, not binary data."""
    text = "email,first name\r\n" + "".join(f"guest{i}@example.com,一丁{i}\r\n" for i in range(50))
    data = text.encode(encoding)
    assert detect_encoding(io.BytesIO(data)) == encoding
    job = run_import(visitors, data, by=world.alice)
    assert job.status == ImportStatus.SUCCEEDED, job.error
    assert Recipient.objects.get(email="guest7@example.com").first_name == "一丁7"


def test_binary_data_is_still_refused():
    data = bytes(range(256)) * 50
    with pytest.raises(ImportFileError, match="holds binary data"):
        detect_encoding(io.BytesIO(data))


def test_a_header_too_wide_for_the_sample_is_counted_as_more_than():
    """A 100,000-column header used to be reported as the columns of its first 256 KB."""
    header = ",".join(f"column{i}" for i in range(100_000)) + "\r\n"
    with pytest.raises(ImportFileError) as refused:
        sniff(io.BytesIO((header + "a@example.com\r\n").encode()))
    message = str(refused.value)
    assert message.startswith("The file has more than ") and "at most 200" in message
    wide = ",".join(f"c{i}" for i in range(300)) + "\r\n"
    with pytest.raises(ImportFileError, match=r"^The file has 300 columns"):
        sniff(io.BytesIO((wide + "a@example.com\r\n").encode()))
