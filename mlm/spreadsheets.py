"""CSV for spreadsheets: what every export of the app (lists, reports, the audit log) writes,
with cells a spreadsheet shows as text and never runs."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

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
