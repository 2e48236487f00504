"""The files the app wrote that name a person — uploads not yet imported and rejected-rows
reports — are listed in the person's export and lose the person at erasure (I9), whatever the
case of the address in them."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.files.storage import default_storage

from recipients.held_files import ERASED_UPLOAD
from recipients.import_services import import_upload
from recipients.models import ImportJob, ImportStatus
from recipients.rights import recipient_erase, recipient_export
from recipients.services import recipient_upsert
from tests.imports.helpers import csv_bytes, run_import, upload


@pytest.fixture
def erin(world):
    recipient, _ = recipient_upsert(
        unit=world.unit, email="Erin.Subject@Example.ORG", category="external", by=None
    )
    return recipient


def rejected_report_naming_erin(visitors, world) -> ImportJob:
    """An import whose rejected rows include Erin's address, in another case."""
    rows = [
        ["email", "first name"],
        ["ann@example.com", "Ann"],
        ["ERIN.SUBJECT@example.org", "Erin" * 100],  # refused: the name is too long
        ["not an address", "Nobody"],
    ]
    job = run_import(visitors, csv_bytes(rows), by=world.alice)
    assert job.rejected_file
    return job


def xlsx_naming(address: str) -> bytes:
    """A minimal workbook whose shared strings hold `address`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("[Content_Types].xml", "<Types/>")
        book.writestr("xl/sharedStrings.xml", f"<sst><si><t>{address}</t></si></sst>")
    return buffer.getvalue()


def test_the_export_lists_every_file_that_names_the_person(world, erin, visitors):
    """I9: the export says which files name the person, in any case of the address."""
    report = rejected_report_naming_erin(visitors, world)
    pending, _ = import_upload(
        recipient_list=visitors,
        upload=upload(csv_bytes([["email"], ["erin.subject@EXAMPLE.org"]]), "later.csv"),
        by=world.alice,
    )
    import_upload(
        recipient_list=visitors,
        upload=upload(csv_bytes([["email"], ["someone@example.org"]]), "other.csv"),
        by=world.alice,
    )
    files = recipient_export(recipient=erin)["files"]
    assert [(f["import"], f["kind"]) for f in files] == [
        (str(report.code), "rejected rows report"),
        (str(pending.code), "upload not yet imported"),
    ]


def test_erasure_takes_the_person_out_of_every_file(world, erin, visitors):
    """I9: the person's rows leave rejected-rows reports (the other rows stay); an upload not
    yet imported that names them is deleted, and its job says why; other files are kept."""
    report = rejected_report_naming_erin(visitors, world)
    pending, _ = import_upload(
        recipient_list=visitors,
        upload=upload(csv_bytes([["email"], ["erin.subject@EXAMPLE.org"]]), "later.csv"),
        by=world.alice,
    )
    other, _ = import_upload(
        recipient_list=visitors,
        upload=upload(csv_bytes([["email"], ["someone@example.org"]]), "other.csv"),
        by=world.alice,
    )
    pending_path = pending.file.name

    recipient_erase(recipient=erin, by=world.alice)

    report.refresh_from_db()
    text = default_storage.open(report.rejected_file.name).read().decode()
    assert "erin" not in text.lower()
    assert "not an address" in text  # the other rejected row stays
    pending.refresh_from_db()
    assert pending.status == ImportStatus.FAILED and pending.error == ERASED_UPLOAD
    assert not pending.file and not default_storage.exists(pending_path)
    other.refresh_from_db()
    assert other.status == ImportStatus.UPLOADED and default_storage.exists(other.file.name)
    everything = "".join(
        default_storage.open(name).read().decode(errors="replace").lower()
        for name in _stored_files()
    )
    assert "erin.subject" not in everything


def test_a_workbook_naming_the_person_is_found(world, erin, visitors):
    job = ImportJob.objects.create(
        unit=world.unit,
        recipient_list=visitors,
        actor_label="alice",
        file_name="guests.xlsx",
        file_format="xlsx",
    )
    job.file.save("guests.xlsx", io.BytesIO(xlsx_naming("ERIN.subject@example.ORG")))
    assert [f["kind"] for f in recipient_export(recipient=erin)["files"]] == [
        "upload not yet imported"
    ]


def _stored_files(folder: str = "") -> list[str]:
    directories, files = default_storage.listdir(folder)
    names = [f"{folder}/{f}".lstrip("/") for f in files]
    for directory in directories:
        names += _stored_files(f"{folder}/{directory}".lstrip("/"))
    return names


def test_it_erases_the_address_from_what_import_jobs_say(world, erin, visitors):
    """I9: a file named after the person, a header row that was their row, and evidence that
    quotes them lose the address, in any case."""
    rows = [["erin.subject@EXAMPLE.org", "Erin"], ["ann@example.com", "Ann"]]
    job = run_import(
        visitors,
        csv_bytes(rows),
        by=world.alice,
        name="Request of ERIN.SUBJECT@example.org.csv",
        evidence="Asked by erin.subject@example.org",
    )
    ImportJob.objects.filter(pk=job.pk).update(columns=["erin.subject@EXAMPLE.org", "Erin"])
    untouched = run_import(visitors, csv_bytes([["email"], ["bob@example.com"]]), by=world.alice)

    recipient_erase(recipient=erin, by=world.alice)

    job.refresh_from_db()
    assert job.file_name == "Request of [erased].csv"
    assert job.columns == ["[erased]", "Erin"]
    assert job.evidence == "Asked by [erased]"
    assert ImportJob.objects.get(pk=untouched.pk).file_name == "people.csv"
