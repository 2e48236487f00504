"""Each row is checked and, if refused, reported with its line number and reason in a CSV of
rejected rows: invalid addresses, duplicates, the other audience (I3), suppressed or erased
addresses (I9), unknown categories, over-long fields."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.storage import default_storage
from hypothesis import given, settings
from hypothesis import strategies as st

from consent.models import SuppressionReason
from consent.services import suppress
from recipients.addresses import InvalidAddress, normalise_address
from recipients.importing.checking import normalise_import_address
from recipients.models import Audience, Category, ImportStatus, Recipient
from recipients.rights import recipient_erase
from recipients.services import list_create, recipient_upsert
from tests.imports.helpers import csv_bytes, run_import


@pytest.fixture
def external(world):
    return list_create(unit=world.unit, name="Visitors", audience=Audience.EXTERNAL, by=None)


@pytest.fixture
def internal(world):
    return list_create(unit=world.unit, name="Staff", audience=Audience.INTERNAL, by=None)


def rejected(job) -> list[dict[str, str]]:
    text = default_storage.open(job.rejected_file.name).read().decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


def emails(unit) -> set[str]:
    return set(Recipient.objects.for_unit(unit).values_list("email", flat=True))


def test_it_reports_invalid_addresses_with_line_and_reason(world, external):
    data = csv_bytes(
        [
            ["email", "name"],
            ["good@example.com", "Good"],
            ["bad@", "No domain"],
            ["no-at-sign.example.com", "No at"],
            ["two@@example.com", "Two at"],
            ["someone@example.local", "Special"],
            ["", "Empty"],
            ["  spaced@example.com  ", "Spaces"],
        ]
    )
    job = run_import(external, data, by=world.alice)
    assert job.status == ImportStatus.SUCCEEDED
    assert (job.rows_read, job.created_count, job.invalid_count) == (7, 2, 5)
    assert emails(world.unit) == {"good@example.com", "spaced@example.com"}
    report = rejected(job)
    assert [r["line"] for r in report] == ["3", "4", "5", "6", "7"]
    assert [r["name"] for r in report] == ["No domain", "No at", "Two at", "Special", "Empty"]
    assert "There must be something after the @-sign" in report[0]["reason"]
    assert "must have an @-sign" in report[1]["reason"]
    assert "special-use or reserved name" in report[3]["reason"]
    assert report[4]["reason"] == "The address is empty."


def test_it_skips_duplicates_within_the_file_in_any_case(world, external):
    data = csv_bytes(
        [
            ["email", "first name"],
            ["Ann.Lee@Example.COM", "First"],
            ["bob@example.org", "Bob"],
            ["Ann.Lee@example.com", "Second"],
            ["ann.lee@example.com", "Same person"],
            ["  ANN.LEE@EXAMPLE.com", "Third"],
        ]
    )
    job = run_import(external, data, by=world.alice)
    assert (job.created_count, job.duplicate_count) == (2, 3)
    # One identity per address, whatever the case of its letters; the first spelling is shown.
    assert emails(world.unit) == {"Ann.Lee@example.com", "bob@example.org"}
    report = {row["line"]: row["reason"] for row in rejected(job)}
    assert report == {
        "4": "Duplicate of line 2",
        "5": "Duplicate of line 2",
        "6": "Duplicate of line 2",
    }
    assert Recipient.objects.get(email="Ann.Lee@example.com").first_name == "First"


def test_it_keeps_internal_addresses_out_of_an_external_list(world, external):
    """I3: an address of the institution's own domains is refused by an external list."""
    data = csv_bytes(
        [
            ["email"],
            ["visitor@example.com"],
            ["joe@staff.example.edu"],
            ["amy@dept.example.edu"],
        ]
    )
    job = run_import(external, data, by=world.alice)
    assert emails(world.unit) == {"visitor@example.com"}
    reasons = {r["email"]: r["reason"] for r in rejected(job)}
    assert reasons["joe@staff.example.edu"] == (
        "joe@staff.example.edu is an address of the institution's own domains and cannot be "
        "added to an external list."
    )
    assert "amy@dept.example.edu" in reasons
    assert job.invalid_count == 2


def test_it_keeps_external_recipients_out_of_an_internal_list(world, internal):
    """I3, the reverse: a row of category external is refused by an internal list; alumni may
    write from any domain."""
    data = csv_bytes(
        [
            ["email", "category"],
            ["prof@staff.example.edu", "Staff"],
            ["old.friend@gmail.com", "alumni"],
            ["partner@acme.com", "external"],
        ]
    )
    job = run_import(internal, data, by=world.alice)
    assert emails(world.unit) == {"prof@staff.example.edu", "old.friend@gmail.com"}
    assert [r["reason"] for r in rejected(job)] == [
        "partner@acme.com is an external recipient and cannot be added to an internal list."
    ]


def test_it_refuses_a_recipient_the_unit_holds_in_the_other_audience(world, external):
    """I3: an address the unit has as alumni does not join an external list as external."""
    recipient_upsert(
        unit=world.unit, email="old.friend@gmail.com", category=Category.ALUMNI, by=None
    )
    job = run_import(external, csv_bytes([["email"], ["old.friend@gmail.com"]]), by=world.alice)
    assert job.added_count == 0 and job.invalid_count == 1
    assert rejected(job)[0]["reason"] == (
        "old.friend@gmail.com is already a recipient of this unit as alumni (internal) and "
        "cannot join an external list."
    )
    assert Recipient.objects.get(email="old.friend@gmail.com").category == Category.ALUMNI


def test_it_keeps_suppressed_and_erased_addresses_out_and_reports_them(world, external):
    """Suppressed addresses (this unit or every unit) and erased people (I9) are not imported."""
    suppress(email="bounced@example.com", unit=None, reason=SuppressionReason.HARD_BOUNCE)
    suppress(email="asked@example.com", unit=world.unit, reason=SuppressionReason.MANUAL)
    suppress(email="elsewhere@example.com", unit=world.other_unit, reason=SuppressionReason.MANUAL)
    gone, _ = recipient_upsert(
        unit=world.unit, email="gone@example.com", category=Category.EXTERNAL, by=None
    )
    recipient_erase(recipient=gone, by=None)
    data = csv_bytes(
        [
            ["email"],
            ["bounced@example.com"],
            ["asked@example.com"],
            ["elsewhere@example.com"],
            ["gone@example.com"],
            ["fine@example.com"],
        ]
    )
    job = run_import(external, data, by=world.alice)
    assert job.status == ImportStatus.SUCCEEDED, job.error
    assert (job.created_count, job.suppressed_count) == (2, 3)
    assert emails(world.unit) >= {"elsewhere@example.com", "fine@example.com"}
    assert not Recipient.objects.filter(email__in=["bounced@example.com", "asked@example.com"])
    reasons = {r["line"]: r["reason"] for r in rejected(job)}
    assert reasons["2"] == "Suppressed (hard bounce): the address must not be mailed."
    assert reasons["3"] == "Suppressed (manual): the address must not be mailed."
    assert reasons["5"] == "Erased at the person's request: the address is kept out of every unit."


def test_it_reports_unknown_categories_and_needs_one_for_internal_rows(world, internal):
    data = csv_bytes(
        [
            ["email", "category"],
            ["a@staff.example.edu", "STAFF"],
            ["b@staff.example.edu", "Student"],
            ["c@staff.example.edu", "professor"],
            ["d@staff.example.edu", ""],
        ]
    )
    job = run_import(internal, data, by=world.alice)
    assert emails(world.unit) == {"a@staff.example.edu", "b@staff.example.edu"}
    assert {r["line"]: r["reason"] for r in rejected(job)} == {
        "4": "Unknown category 'professor': use one of staff, student, alumni, external.",
        "5": "The category is empty and no default was chosen.",
    }
    job = run_import(internal, data, by=world.alice, default_category=Category.ALUMNI)
    assert Recipient.objects.get(email="d@staff.example.edu").category == Category.ALUMNI


def test_it_reports_over_long_fields(world, external):
    data = csv_bytes(
        [
            ["email", "first name", "last name", "locale", "note"],
            ["a@example.com", "A" * 151, "", "", ""],
            ["b@example.com", "", "B" * 151, "", ""],
            ["c@example.com", "", "", "zh-Hant-HK-x", ""],
            ["d@example.com", "", "", "", "n" * 1001],
            ["x" * 320 + "@example.com", "", "", "", ""],
            ["ok@example.com", "O" * 150, "", "zh-hant", "n" * 1000],
        ]
    )
    job = run_import(external, data, by=world.alice)
    assert emails(world.unit) == {"ok@example.com"}
    assert [r["reason"] for r in rejected(job)] == [
        "The first name is longer than 150 characters.",
        "The last name is longer than 150 characters.",
        "The language is longer than 10 characters.",
        "note is longer than 1000 characters.",
        "The address is longer than 320 characters.",
    ]


def test_it_refuses_a_row_with_more_cells_than_columns(world, external):
    data = b"email,name\r\na@example.com,Ann\r\nb@example.com,Bob,extra\r\nc@example.com,Cy,,\r\n"
    job = run_import(external, data, by=world.alice)
    assert emails(world.unit) == {"a@example.com", "c@example.com"}
    assert rejected(job) == [
        {
            "line": "3",
            "reason": "The row has more cells than the file has columns.",
            "email": "b@example.com",
            "name": "Bob",
        }
    ]


def test_the_rejected_rows_report_holds_the_columns_as_mapped(world, external):
    data = csv_bytes([["Notes", "E-mail", "Skip"], ["keep me", "nope", "ignored"]])
    job = run_import(external, data, by=world.alice, mapping=["attribute", "email", ""])
    assert rejected(job) == [
        {"line": "2", "reason": rejected(job)[0]["reason"], "Notes": "keep me", "E-mail": "nope"}
    ]


TOKENS = [*'abcXYZ09._+-@"<> é中', "xn--", ".example.com", "@ex.com", "info", "@"]
ADDRESSY = st.lists(st.sampled_from(TOKENS), max_size=14).map("".join)


@settings(max_examples=400, deadline=None)
@given(ADDRESSY)
def test_the_fast_address_check_agrees_with_email_validator(text):
    """The import's fast path gives exactly normalise_address's result, or the same refusal."""
    try:
        expected = normalise_address(text)
    except InvalidAddress as error:
        with pytest.raises(InvalidAddress) as raised:
            normalise_import_address(text)
        assert str(raised.value) == str(error)
    else:
        assert normalise_import_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Info@Example.COM",
        "a.b+c@sub.example.co.uk",
        "a..b@example.com",
        ".a@example.com",
        "a@-example.com",
        "a@example..com",
        "a@example.com.",
        "a@exa_mple.com",
        "a@127.0.0.1",
        "a@[127.0.0.1]",
        "a@example.123",
        "a@xn--fsqu00a.xn--3lr804guic",
        "a@ab--cd.com",
        "x" * 64 + "@" + "d" * 63 + ".com",
        "x" * 200 + "@" + "d" * 60 + ".com",
        "p@test",
        "p@example.local",
    ],
)
def test_the_fast_address_check_agrees_on_edge_cases(text):
    try:
        expected = normalise_address(text)
    except InvalidAddress:
        with pytest.raises(InvalidAddress):
            normalise_import_address(text)
    else:
        assert normalise_import_address(text) == expected
