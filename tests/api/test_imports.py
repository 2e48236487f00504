"""Imports through the API: an editor key uploads a file and polls its job; the import adds
or withdraws, never grants (I2); another unit's lists and jobs are out of reach (I8)."""

from __future__ import annotations

import pytest

from consent.models import ConsentEvent
from recipients.import_services import import_run
from recipients.models import ImportJob, ImportStatus, ListMembership, Recipient
from recipients.services import list_create
from tests.api.test_framework import assert_problem
from tests.imports.helpers import csv_bytes, dm_types, upload

PEOPLE = csv_bytes(
    [
        ["Email", "First name", "Last name"],
        ["lee@partner.org", "Lee", "Chan"],
        ["kai@partner.org", "Kai", "Wong"],
        ["not an address", "No", "Body"],
        ["kim@example.edu", "Kim", "Ho"],
    ]
)


def start(client, recipient_list, data: bytes = PEOPLE, **fields):
    payload = {"file": upload(data), "list": str(recipient_list.code), **fields}
    return client.post("/api/v1/imports/", payload, format="multipart")


def test_an_editor_starts_an_import_and_polls_its_job(
    world, api_keys, api, visitors, django_capture_on_commit_callbacks
):
    """I3: the internal-domain row is rejected, with its line and reason in the job."""
    client = api(api_keys.editor)
    with django_capture_on_commit_callbacks() as queued:
        response = start(client, visitors)
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["mode"], body["list"]) == ("queued", "add", str(visitors.code))
    assert response["Location"].endswith(f"/api/v1/imports/{body['code']}/")
    assert len(queued) == 1  # the worker's task, once committed
    import_run(job_id=ImportJob.objects.get(code=body["code"]).pk)  # as the worker would
    polled = client.get(f"/api/v1/imports/{body['code']}/")
    assert polled.status_code == 200
    job = polled.json()
    assert job["status"] == "succeeded", job
    assert job["counts"]["created"] == 2 and job["counts"]["added"] == 2
    assert job["rejected"] == 2
    lines = {row["line"]: row["reason"] for row in job["rejected_rows"]}
    assert set(lines) == {4, 5}
    assert "kim@example.edu" in lines[5]
    assert ListMembership.objects.filter(recipient_list=visitors).count() == 2
    assert not ConsentEvent.objects.exists()  # I2: adding grants nothing
    listed = client.get("/api/v1/imports/").json()["results"]
    assert [row["code"] for row in listed] == [body["code"]]


def test_an_opt_out_import_withdraws_the_dm_types_named(
    world, api_keys, api, visitors, django_capture_on_commit_callbacks
):
    dm_types(world.unit, "events")
    with django_capture_on_commit_callbacks():
        response = start(
            api(api_keys.editor), visitors, mode="opt_out", dm_types=["events"], evidence="CRM"
        )
    assert response.status_code == 202, response.content
    job = import_run(job_id=ImportJob.objects.get(code=response.json()["code"]).pk)
    assert job.status == ImportStatus.SUCCEEDED


@pytest.mark.parametrize("mode", ["grant", "sync"])
def test_an_api_key_cannot_grant_or_sync_by_import(world, api_keys, api, visitors, mode):
    """I2: granting by import needs an administrator in the browser; nothing is kept."""
    dm_types(world.unit, "events")
    response = start(
        api(api_keys.editor), visitors, mode=mode, dm_types=["events"], evidence="Form"
    )
    body = assert_problem(response, 400)
    assert body["errors"][0]["field"] == "mode"
    assert "consent endpoint" in body["detail"]
    assert not ImportJob.objects.exists()


def test_refused_choices_keep_neither_job_nor_file(world, api_keys, api, visitors, media_folder):
    """I10: the service's reason comes back as a 400, and the upload is not kept."""
    staff = list_create(unit=world.unit, name="Staff", audience="internal", by=None)
    body = assert_problem(start(api(api_keys.editor), staff), 400)
    assert "staff, students or alumni" in body["detail"]
    assert not ImportJob.objects.exists()
    assert not [p for p in media_folder.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"dm_types": ["nope"], "mode": "opt_out"}, "dm_types"),
        ({"list": "6f1c5b0e-8b5d-4a7e-9a51-1d1d5e3f6a10"}, "list"),
        ({"mapping": ["bogus", "", ""]}, "mapping[0]"),
    ],
)
def test_bad_fields_are_clear_400s(world, api_keys, api, visitors, fields, field):
    payload = {"file": upload(PEOPLE), "list": str(visitors.code), **fields}
    response = api(api_keys.editor).post("/api/v1/imports/", payload, format="multipart")
    body = assert_problem(response, 400)
    assert body["errors"][0]["field"] == field
    assert not ImportJob.objects.exists()


def test_a_file_that_is_not_a_table_is_a_clear_400(world, api_keys, api, visitors):
    response = start(api(api_keys.editor), visitors, data=b"\x00\x01\x02 binary \xff\xfe")
    body = assert_problem(response, 400)
    assert body["detail"]
    assert not ImportJob.objects.exists()


def test_json_is_not_an_upload(world, api_keys, api, visitors):
    response = api(api_keys.editor).post(
        "/api/v1/imports/", {"list": str(visitors.code)}, format="json"
    )
    assert_problem(response, 415)


def test_another_units_list_and_job_are_out_of_reach(
    world, api_keys, api, django_capture_on_commit_callbacks
):
    """I8: their list is unknown to this key, their job 404."""
    theirs = list_create(unit=world.other_unit, name="Donors", audience="external", by=None)
    body = assert_problem(start(api(api_keys.editor), theirs), 400)
    assert body["errors"][0]["field"] == "list"
    with django_capture_on_commit_callbacks():
        made = start(api(api_keys.other_unit), theirs)
    assert made.status_code == 202
    assert_problem(api(api_keys.editor).get(f"/api/v1/imports/{made.json()['code']}/"), 404)
    assert api(api_keys.editor).get("/api/v1/imports/").json()["results"] == []
    assert not Recipient.objects.filter(unit=world.unit).exists()


@pytest.mark.parametrize("role", ["viewer", "consent_writer"])
def test_only_an_editor_key_imports_or_reads_imports(world, api_keys, api, visitors, role):
    client = api(getattr(api_keys, role))
    assert_problem(start(client, visitors), 403)
    assert_problem(client.get("/api/v1/imports/"), 403)


@pytest.mark.parametrize("which", ["revoked", "expired"])
def test_revoked_or_expired_keys_get_401(world, api_keys, api, visitors, which):
    client = api(getattr(api_keys, which))
    assert_problem(start(client, visitors), 401)
    assert_problem(client.get("/api/v1/imports/"), 401)
    assert not ImportJob.objects.exists()
