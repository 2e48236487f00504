"""Exports that people open in Excel run nothing: list members and rejected rows neutralise
cells that start with = + - @ (or a tab or carriage return)."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from mlm.models import AuditEntry
from recipients.exports import spreadsheet_safe
from recipients.models import Audience, Category
from recipients.services import list_add_members, list_create, recipient_upsert
from tests.imports.helpers import csv_bytes, run_import

FORMULAS = ['=HYPERLINK("http://x.test","Click")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


@pytest.mark.parametrize("value", FORMULAS)
def test_it_neutralises_a_cell_that_a_spreadsheet_would_run(value):
    assert spreadsheet_safe(value) == "'" + value


@pytest.mark.parametrize("value", ["Ann", "", "a=b", "12", "2025-06-01", "中文", None, 42])
def test_it_leaves_other_cells_alone(value):
    assert spreadsheet_safe(value) == ("" if value is None else str(value))


def cells(content: bytes) -> list[list[str]]:
    text = content.decode("utf-8")
    assert text.startswith("\ufeff"), "a byte order mark tells Excel the file is UTF-8"
    return list(csv.reader(io.StringIO(text[1:], newline="")))


def assert_nothing_runs(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_the_list_export_neutralises_formulas(world, client):
    visitors = list_create(unit=world.unit, name="Visitors", audience=Audience.EXTERNAL, by=None)
    people = []
    for i, value in enumerate(FORMULAS):
        recipient, _ = recipient_upsert(
            unit=world.unit,
            email=f"p{i}@example.com",
            category=Category.EXTERNAL,
            first_name=value.strip()[:150],
            last_name="Lee",
            attributes={"note": value, "plain": "ok"},
            by=None,
        )
        people.append(recipient)
    list_add_members(recipient_list=visitors, recipients=people, by=None)
    client.force_login(world.bob)
    response = client.get(reverse("list_export", args=[world.unit.slug, visitors.code]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="visitors-members.csv"'
    rows = cells(b"".join(response.streaming_content))
    assert rows[0] == [
        "email",
        "first_name",
        "last_name",
        "category",
        "locale",
        "status",
        "note",
        "plain",
    ]
    assert len(rows) == 1 + len(FORMULAS)
    assert_nothing_runs(rows)
    assert rows[1][1] == '\'=HYPERLINK("http://x.test","Click")'
    assert rows[1][6] == '\'=HYPERLINK("http://x.test","Click")'
    entry = AuditEntry.objects.get(verb="list.export")
    assert "example.com" not in str(entry.data) + entry.object_repr


def test_the_rejected_rows_report_neutralises_formulas(world, client):
    visitors = list_create(unit=world.unit, name="Visitors", audience=Audience.EXTERNAL, by=None)
    data = csv_bytes(
        [
            ["email", "first name", "note"],
            ["=cmd|' /C calc'!A0", "@SUM(1+1)", "+41 22 000 00 00"],
            ["ok@example.com", "-5", "=1+1"],
            ["ok@example.com", "dup", "-dup"],
        ]
    )
    job = run_import(visitors, data, by=world.alice)
    client.force_login(world.bob)
    response = client.get(
        reverse("import_rejected", args=[world.unit.slug, visitors.code, job.code])
    )
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment; filename=")
    rows = cells(b"".join(response.streaming_content))
    assert_nothing_runs(rows)
    assert rows[1][:3] == ["2", rows[1][1], "'=cmd|' /C calc'!A0"]
    assert rows[1][3:] == ["'@SUM(1+1)", "'+41 22 000 00 00"]
    assert rows[2] == ["4", "Duplicate of line 3", "ok@example.com", "dup", "'-dup"]
