"""Exports of a list: its members as spreadsheet rows (written as formula-safe CSV by
mlm.spreadsheets). Everything held about one person is exported by recipients.rights (I9)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from recipients.importing.limits import MAX_COLUMNS
from recipients.models import Recipient, RecipientStatus


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
