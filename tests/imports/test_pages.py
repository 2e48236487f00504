"""The import pages: upload, preview and mapping, start (enqueued after commit), progress by
HTMX polling, summary, rejected rows, the list's jobs and the audit log."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import translation

from consent.models import ConsentEvent
from mlm.models import AuditEntry
from recipients.models import Audience, ImportJob, ImportMode, ImportStatus
from recipients.services import list_create
from recipients.tasks import run_import
from tests.imports.helpers import csv_bytes, dm_types
from tests.imports.helpers import run_import as import_file

ROWS = [
    ["Email", "First name", "Last name", "Company"],
    ["ann@example.com", "Ann", "Lee", "ACME"],
    ["bob@example.org", "Bob", "Chan", ""],
    ["broken@", "Bad", "Row", ""],
]


@pytest.fixture
def page(world, client):
    events, news = dm_types(world.unit, "events", "newsletter")
    visitors = list_create(unit=world.unit, name="Open day", audience=Audience.EXTERNAL, by=None)
    client.force_login(world.alice)
    return world, client, visitors, (events, news)


def upload(client, visitors, data: bytes, **extra):
    url = reverse("import_upload", args=["engineering", visitors.code])
    return client.post(url, {"file": SimpleUploadedFile("open-day.csv", data), **extra})


def start_data(job, **extra) -> dict:
    data = {f"column_{i}": target for i, target in enumerate(job.mapping)}
    data.update(extra)
    return data


def test_it_shows_the_preview_and_grants_nothing_by_default(page):
    """I2: after the upload, no DM type is ticked, the attestation is not ticked, and the
    import adds without granting unless the person chooses otherwise."""
    _world, client, visitors, _ = page
    data = csv_bytes(ROWS, encoding="utf-16", delimiter="\t")
    response = upload(client, visitors, data)
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "import_job", args=["engineering", visitors.code, job.code]
    )
    html = client.get(response["Location"]).content.decode()
    assert "UTF-16 (Excel “Unicode text”)</strong> (detected)" in html
    assert "<strong>tabs</strong>" in html
    assert "<td>ann@example.com</td>" in html and "<td>ACME</td>" in html
    assert re.search(r'<option value="email" selected>', html)
    dm_inputs = re.findall(r'<input type="checkbox" name="dm_types"[^>]*>', html)
    assert len(dm_inputs) == 2 and not any("checked" in i for i in dm_inputs)
    attest = re.search(r'<input type="checkbox" name="attested"[^>]*>', html).group(0)
    assert "checked" not in attest
    assert re.search(r'<input type="radio" name="mode" value="add"[^>]*checked', html)
    assert job.status == ImportStatus.UPLOADED and not ConsentEvent.objects.exists()


def test_it_refuses_a_grant_without_attestation_on_the_page(page):
    _world, client, visitors, (events, _news) = page
    upload(client, visitors, csv_bytes(ROWS))
    job = ImportJob.objects.get()
    url = reverse("import_job", args=["engineering", visitors.code, job.code])
    response = client.post(
        url, start_data(job, mode="grant", dm_types=[events.pk], evidence="Open-day form")
    )
    assert response.status_code == 200
    assert "confirm that these people gave explicit consent" in response.content.decode()
    job.refresh_from_db()
    assert job.status == ImportStatus.UPLOADED


def test_it_queues_the_import_after_commit_then_shows_progress_and_summary(
    page, django_capture_on_commit_callbacks
):
    _world, client, visitors, (events, _news) = page
    upload(client, visitors, csv_bytes(ROWS))
    job = ImportJob.objects.get()
    url = reverse("import_job", args=["engineering", visitors.code, job.code])
    choices = start_data(
        job, mode="grant", dm_types=[events.pk], attested="on", evidence="Open-day form v3"
    )
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, choices)
    assert response.status_code == 302 and len(callbacks) == 1
    job.refresh_from_db()
    assert job.status == ImportStatus.QUEUED and job.attested and job.mode == ImportMode.GRANT
    waiting = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 1s"' in waiting and "<progress" in waiting
    assert "<html" not in waiting  # HTMX gets the status block only
    run_import(job.pk)  # the task function, as the worker runs it
    done = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in done  # polling stops
    for label, count in [
        ("Rows read", 3),
        ("Recipients created", 2),
        ("Added to the list", 2),
        ("Consent granted", 2),
        ("Skipped duplicates", 0),
        ("Invalid rows", 1),
    ]:
        assert re.search(rf"{label}</th><td class=\"num\">{count}</td>", done), label
    assert "Download the 1 rejected rows (CSV)" in done
    jobs = client.get(reverse("import_list", args=["engineering", visitors.code])).content
    assert b"open-day.csv" in jobs and b"Open-day form v3" in jobs and b"(attested)" in jobs


def test_the_audit_log_records_every_import_without_personal_data(page):
    world, client, visitors, (_events, _news) = page
    upload(client, visitors, csv_bytes(ROWS))
    job = ImportJob.objects.get()
    url = reverse("import_job", args=["engineering", visitors.code, job.code])
    client.post(url, start_data(job, mode="add"))
    run_import(job.pk)
    entries = AuditEntry.objects.filter(object_id=str(job.code)).order_by("id")
    assert [e.verb for e in entries] == ["import.start", "import.finish"]
    assert entries[1].data["created_count"] == 2 and entries[1].data["mode"] == "add"
    assert entries[1].actor == world.alice
    text = " ".join(str(e.data) + e.object_repr for e in AuditEntry.objects.all())
    assert "example.com" not in text and "example.org" not in text
    audit = client.get(reverse("audit", args=["engineering"])).content.decode()
    assert "import.finish" in audit


def test_it_reads_the_file_again_with_the_encoding_chosen(page):
    _world, client, visitors, _ = page
    rows = [["email", "name"], ["chan@example.com", "陳大文"]]
    upload(client, visitors, csv_bytes(rows, encoding="big5hkscs"))
    job = ImportJob.objects.get()
    assert job.encoding == "big5hkscs" and job.encoding_detected
    reread = reverse("import_reread", args=["engineering", visitors.code, job.code])
    response = client.post(reread, {"encoding": "gb18030", "delimiter": ",", "has_header": "on"})
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.encoding == "gb18030" and not job.encoding_detected
    html = client.get(response["Location"]).content.decode()
    assert "GB18030 (Simplified Chinese, also GBK and GB2312)</strong> (chosen)" in html
    response = client.post(reread, {"encoding": "utf-8", "delimiter": ",", "has_header": "on"})
    html = client.get(response["Location"]).content.decode()
    assert "cannot be read as UTF-8" in html


def test_it_says_why_an_upload_is_refused(page, settings):
    _world, client, visitors, _ = page
    response = upload(client, visitors, b"%PDF-1.4 not a table")
    assert "it is a PDF document" in response.content.decode()
    settings.MLM_IMPORT_MAX_BYTES = 100
    data = csv_bytes(ROWS * 5)
    response = upload(client, visitors, data)
    assert f"The file is {len(data):,} bytes; an import accepts files up to 100 bytes" in (
        response.content.decode()
    )
    # Sizes that differ only past MB's first decimal are given in bytes, so the two differ.
    settings.MLM_IMPORT_MAX_BYTES = 12_000_000
    big = data + b"x" * (12_000_001 - len(data))
    answer = upload(client, visitors, big).content.decode()
    assert "The file is 12,000,001 bytes; an import accepts files up to 12,000,000 bytes" in answer
    settings.MLM_IMPORT_MAX_BYTES = 1024 * 1024
    answer = upload(client, visitors, big).content.decode()
    assert "The file is 11.4 MB; an import accepts files up to 1.0 MB" in answer
    assert not ImportJob.objects.exists()


def test_viewers_cannot_import_and_editors_cannot_grant(page):
    world, client, visitors, (events, _news) = page
    client.force_login(world.vic)
    assert upload(client, visitors, csv_bytes(ROWS)).status_code == 403
    client.force_login(world.bob)
    upload(client, visitors, csv_bytes(ROWS))
    job = ImportJob.objects.get()
    url = reverse("import_job", args=["engineering", visitors.code, job.code])
    choices = start_data(job, mode="grant", dm_types=[events.pk], attested="on", evidence="Form")
    assert "administrator role" in client.post(url, choices).content.decode()


def test_the_list_page_include_shows_the_jobs_and_the_links(page):
    """templates/imports/_list_jobs.html, for the list page: recent imports, import, sync and
    export links by role."""
    from django.template.loader import render_to_string

    world, client, visitors, _ = page
    upload(client, visitors, csv_bytes(ROWS))
    job = ImportJob.objects.get()
    context = {"list": visitors, "current_unit": world.unit, "is_unit_editor": True}
    html = render_to_string("imports/_list_jobs.html", {**context, "is_unit_admin": True})
    assert reverse("import_job", args=["engineering", visitors.code, job.code]) in html
    assert reverse("import_upload", args=["engineering", visitors.code]) in html
    assert reverse("list_export", args=["engineering", visitors.code]) in html
    assert "Sync with the directory" not in html  # an external list is never synced
    assert (
        render_to_string("imports/_list_jobs.html", {**context, "is_unit_editor": False}).strip()
        == ""
    )


def test_the_status_block_shows_rows_read_of_the_total_while_reading(page):
    _world, client, visitors, _ = page
    upload(client, visitors, csv_bytes(ROWS))
    job = ImportJob.objects.get()
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportStatus.READING, rows_read=40000, rows_total=100000
    )
    url = reverse("import_job", args=["engineering", visitors.code, job.code])
    html = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "40000 of about 100000 rows read." in html
    assert '<progress value="40000" max="100000"' in html and 'hx-trigger="every 1s"' in html
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.APPLYING)
    html = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "All 40000 rows read; saving them in one step." in html


def test_the_pipeline_reports_the_total_and_the_rows_read_as_it_stages(page):
    """Progress is written between chunks of the stream: the bar moves while a file is read."""
    from recipients.import_services import import_start
    from recipients.importing.applying import ImportRun
    from recipients.importing.reading import open_stored

    world, client, visitors, _ = page
    rows = [["email"]] + [[f"p{i}@example.com"] for i in range(45000)]
    upload(client, visitors, csv_bytes(rows))
    job = ImportJob.objects.get()
    import_start(job=job, mapping=["email"], mode="add", dm_types=[], by=world.alice, enqueue=False)
    job.refresh_from_db()
    seen, totals = [], []
    run = ImportRun(job)
    run.create_stage()
    try:
        with open_stored(job.file.name) as stream:
            run.stage(stream, progress=seen.append, total=totals.append)
    finally:
        run.drop_stage()
    assert totals == [45000]
    assert seen == [20000, 40000, 45000]


def test_the_list_page_links_to_its_imports(page):
    _, client, visitors, _ = page
    upload(client, visitors, csv_bytes(ROWS))
    job = ImportJob.objects.get()
    html = client.get(reverse("list_detail", args=["engineering", visitors.code])).content.decode()
    assert reverse("import_upload", args=["engineering", visitors.code]) in html
    assert reverse("import_job", args=["engineering", visitors.code, job.code]) in html


STEPS = [
    "Import the list, granting nothing.",
    "Once they have given consent, grant the DM type they agreed to, with evidence.",
    "When a list arrives with “all types” ticked, opt out of every other DM type.",
]


def test_the_upload_page_gives_the_procedure_in_the_order_that_works(page):
    """I1, I2: opting out alone leaves every DM type at “Never”; the page says the grant of
    step 2 is what makes people mailable, and that the opt-out comes after it."""
    world, client, visitors, _ = page
    html = client.get(reverse("import_upload", args=["engineering", visitors.code])).content
    html = html.decode()
    procedure = html[html.index('<ol class="procedure">') : html.index("</ol>")]
    items = procedure.split("<li>")[1:]
    assert [step in item for step, item in zip(STEPS, items, strict=True)] == [True] * 3
    assert "This step makes them mailable." in items[1]
    assert "mailable" not in items[0] + items[2]
    assert "opt out of every DM type except" not in html
    staff = list_create(unit=world.unit, name="Staff", audience=Audience.INTERNAL, by=None)
    internal = client.get(reverse("import_upload", args=["engineering", staff.code])).content
    assert b'class="procedure"' not in internal  # internal lists need no grant


def test_the_procedure_is_translated(page):
    _world, client, visitors, _ = page
    with translation.override("zh-hant"):
        html = client.get(reverse("import_upload", args=["engineering", visitors.code]))
    assert "才可向他們發送郵件" in html.content.decode()
    with translation.override("zh-hans"):
        html = client.get(reverse("import_upload", args=["engineering", visitors.code]))
    assert "才可以向他们发送邮件" in html.content.decode()


def test_the_import_history_shows_a_failed_import_as_failed(page):
    """I10: an import that failed says so where its history is read, with its reason, and
    shows no counts of changes it did not make."""
    world, client, visitors, _ = page
    good = csv_bytes([["email", "name"]] + [[f"p{i}@example.com", "Plain"] for i in range(30000)])
    data = good + "late@example.com,最後\r\n".encode("big5hkscs")
    failed = import_file(visitors, data, by=world.alice, encoding="utf-8")
    assert failed.status == ImportStatus.FAILED
    done = import_file(visitors, csv_bytes(ROWS), by=world.alice, name="open-day.csv")
    assert done.status == ImportStatus.SUCCEEDED

    history = client.get(reverse("import_list", args=["engineering", visitors.code]))
    rows = re.findall(r"<tr[^>]*>.*?</tr>", history.content.decode(), re.S)
    failed_row = next(r for r in rows if "people.csv" in r)
    assert 'class="import-failed"' in failed_row
    assert "Failed" in failed_row and "Nothing was changed." in failed_row
    assert "cannot be read as UTF-8" in failed_row
    assert failed_row.count('<td class="num">—</td>') == 4
    done_row = next(r for r in rows if "open-day.csv" in r)
    assert "import-failed" not in done_row and "Failed" not in done_row

    listing = client.get(reverse("list_detail", args=["engineering", visitors.code]))
    recent = re.findall(r"<li>.*?</li>", listing.content.decode(), re.S)
    assert any("people.csv" in li and "Failed: nothing was changed" in li for li in recent)
    assert not any("open-day.csv" in li and "Failed" in li for li in recent)
