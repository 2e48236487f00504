"""Directory sync of an internal list: `manage.py sync_internal` and the admins' page. People
who left leave the list; their consent history is untouched; nothing is granted (I2)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from consent.models import Channel, ConsentEvent, Subscription
from consent.selectors import subscription_mismatches
from consent.services import grant
from recipients.models import Audience, Category, ImportJob, ImportMode, Recipient, RecipientList
from recipients.services import list_add_members, list_create, recipient_upsert
from tests.imports.helpers import csv_bytes, dm_types

DIRECTORY = [
    ["Email", "First name", "Last name", "Category", "Department"],
    ["prof.chan@staff.example.edu", "Tai Man", "Chan", "Staff", "Civil Engineering"],
    ["student.lee@example.edu", "Ka Yan", "Lee", "Student", "Computing"],
    ["alum.wong@gmail.com", "Siu Ming", "Wong", "Alumni", ""],
    ["graduate.ho@example.edu", "Ka Ho", "Ho", "Alumni", "Computing"],
]


@pytest.fixture
def directory(world):
    """The list as last year's sync left it: a leaver with consent, a student who graduated."""
    (events,) = dm_types(world.unit, "events")
    listed = list_create(
        unit=world.unit, name="Institution directory", audience=Audience.INTERNAL, by=None
    )
    leaver, _ = recipient_upsert(
        unit=world.unit, email="left.tam@staff.example.edu", category=Category.STAFF, by=None
    )
    graduate, _ = recipient_upsert(
        unit=world.unit, email="graduate.ho@example.edu", category=Category.STUDENT, by=None
    )
    list_add_members(recipient_list=listed, recipients=[leaver, graduate], by=None)
    grant(recipient=leaver, dm_types=[events], channel=Channel.ADMIN, evidence="Staff form 2020")
    return world, listed, leaver


def write(tmp_path, rows) -> str:
    path = tmp_path / "directory.csv"
    path.write_bytes(csv_bytes(rows))
    return str(path)


def members(recipient_list: RecipientList) -> set[str]:
    return set(recipient_list.memberships.values_list("recipient__email", flat=True))


def test_it_syncs_the_directory_and_takes_leavers_off_the_list(directory, tmp_path, capsys):
    """I2, I4: upserts staff, students and alumni; the leaver leaves the list only."""
    _world, listed, leaver = directory
    events_before = list(ConsentEvent.objects.values_list("pk", "action", "evidence"))
    call_command("sync_internal", "engineering", write(tmp_path, DIRECTORY))
    out = capsys.readouterr().out
    assert "4 rows read, 3 created, 1 updated, 3 added to the list, 1 taken off (left)" in out
    assert members(listed) == {r[0] for r in DIRECTORY[1:]}
    graduate = Recipient.objects.get(email="graduate.ho@example.edu")
    assert graduate.category == Category.ALUMNI
    assert graduate.attributes == {"Department": "Computing"}
    assert Recipient.objects.get(email="prof.chan@staff.example.edu").category == Category.STAFF
    leaver.refresh_from_db()
    assert leaver.status == "active"  # still a recipient of the unit, only off this list
    assert list(ConsentEvent.objects.values_list("pk", "action", "evidence")) == events_before
    assert Subscription.objects.count() == 1
    assert subscription_mismatches() == []
    job = ImportJob.objects.get()
    assert (job.mode, job.actor_label, job.removed_count) == (ImportMode.SYNC, "operations", 1)


def test_a_second_sync_of_the_same_file_changes_nothing(directory, tmp_path, capsys):
    _world, listed, _leaver = directory
    path = write(tmp_path, DIRECTORY)
    call_command("sync_internal", "engineering", path)
    call_command("sync_internal", "engineering", path)
    out = capsys.readouterr().out.splitlines()
    assert "0 created, 0 updated, 0 added to the list, 0 taken off (left)" in out[-1]
    assert len(members(listed)) == 4


def test_it_refuses_external_rows_and_keeps_suppressed_people_listed(directory, tmp_path, capsys):
    """I3: an external row is refused; a suppressed member in the file has not left."""
    from consent.models import SuppressionReason
    from consent.services import suppress

    _world, listed, leaver = directory
    suppress(email=leaver.email, unit=None, reason=SuppressionReason.HARD_BOUNCE)
    rows = [*DIRECTORY, ["partner@acme.com", "P", "Q", "external", ""]]
    rows.append([leaver.email, "Left", "Tam", "staff", ""])
    call_command("sync_internal", "engineering", write(tmp_path, rows))
    out = capsys.readouterr().out
    assert "1 suppressed, 1 invalid" in out and "Rejected rows: http" in out
    assert leaver.email in members(listed) and "partner@acme.com" not in members(listed)


def test_it_refuses_a_directory_without_a_valid_row(directory, tmp_path):
    _world, listed, _leaver = directory
    with pytest.raises(CommandError, match="no valid row: nobody was added or removed"):
        rows = [["email", "category"], ["nope", "staff"]]
        call_command("sync_internal", "engineering", write(tmp_path, rows))
    assert len(members(listed)) == 2


def test_it_explains_what_is_wrong_with_the_command(world, tmp_path):
    with pytest.raises(CommandError, match="No unit with the slug 'nowhere'"):
        call_command("sync_internal", "nowhere", write(tmp_path, DIRECTORY))
    with pytest.raises(CommandError, match="is not a file"):
        call_command("sync_internal", "engineering", str(tmp_path / "missing.csv"))
    list_create(unit=world.unit, name="Visitors", audience=Audience.EXTERNAL, by=None)
    with pytest.raises(CommandError, match="“Visitors” is external"):
        call_command(
            "sync_internal", "engineering", write(tmp_path, DIRECTORY), list_name="Visitors"
        )


def test_unit_admins_sync_from_the_list_page(directory, client):
    """The same sync from the UI, for administrators only; the page maps the columns."""
    world, listed, _leaver = directory
    url = reverse("import_sync", args=[world.unit.slug, listed.code])
    client.force_login(world.bob)
    assert client.get(url).status_code == 403
    client.force_login(world.alice)
    response = client.post(url, {"file": _file(csv_bytes(DIRECTORY))})
    job = ImportJob.objects.get()
    assert response.status_code == 302 and job.mode == ImportMode.SYNC
    page = client.get(response["Location"])
    assert b"Directory sync" in page.content and b'name="dm_types"' not in page.content


def _file(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("directory.csv", data, content_type="text/csv")
