"""Exports of what the app holds: a list's members as formula-safe CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from recipients.importing.limits import MAX_COLUMNS
from recipients.models import Recipient, RecipientStatus

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
