"""The institution's written procedure for external lists, as the import page gives it, in a
real browser with a real worker: import granting nothing; grant with attestation and evidence
(here a list that arrived with "all types" ticked, so every DM type); then opt out of all but
the one agreed to. The recipients end with exactly that DM type, and each recipient's consent
timeline shows every step with its evidence (I1, I2, I4)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from consent.selectors import recipient_dm_type_states, subscription_mismatches
from consent.services import dm_type_create
from recipients.models import Audience, ImportJob, Recipient
from recipients.services import list_create
from tests.e2e.conftest import log_in
from tests.personas import PASSWORD, make_world
from tests.processes import Worker

pytestmark = pytest.mark.system  # and `e2e` by its folder

ATTESTATION = "I confirm these people gave explicit consent to the DM types ticked."
EVIDENCE = "Open-day registration form, consent clause v3, June 2025"
OPT_OUT_EVIDENCE = "Procedure step 3: they agreed to event invitations only"
PEOPLE = (
    "Email,First name,Last name,Company\r\n"
    "ann.lee@example.com,Ann,Lee,ACME\r\n"
    "bob.chan@example.org,Bob,Chan,\r\n"
    "cy.wong@example.net,Cy,Wong,Harbour Ltd\r\n"
)


@pytest.fixture
def worker(live_server, flushed_broker, tmp_path) -> Iterator[Worker]:
    """A real `celery worker` beside the live server, sharing its uploads folder."""
    worker = Worker(tmp_path / "worker.log", MLM_VAR_DIR=str(tmp_path))
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


def import_file(page: Page, url: str, tmp_path, step: str) -> None:
    path = tmp_path / f"open-day-{step}.csv"
    path.write_text(PEOPLE, encoding="utf-8")
    page.goto(url)
    page.get_by_label("File (CSV or XLSX)").set_input_files(path)
    page.get_by_role("button", name="Upload and preview").click()
    expect(page.get_by_role("cell", name="bob.chan@example.org")).to_be_visible()
    expect(page.get_by_text("Text read as UTF-8 (detected)")).to_be_visible()


def start_and_wait(page: Page, worker: Worker) -> None:
    page.get_by_role("button", name="Start the import").click()
    # The status block polls every second (HTMX) until the import is done.
    expect(page.get_by_role("heading", name="Done")).to_be_visible(timeout=60_000)


def test_the_written_procedure_ends_with_the_one_agreed_dm_type(page, worker, tmp_path):
    world = make_world()
    types = [
        dm_type_create(unit=world.unit, key=key, name=name, notice_text=f"{name}.", by=None)
        for key, name in (
            ("events", "Event invitations"),
            ("newsletter", "Newsletter"),
            ("fundraising", "Fundraising"),
        )
    ]
    visitors = list_create(
        unit=world.unit, name="Open day 2025", audience=Audience.EXTERNAL, by=world.alice
    )
    url = f"/units/engineering/lists/{visitors.code}/import/"
    log_in(page, "alice", PASSWORD)

    # The page gives the steps in this order and says which one makes people mailable.
    page.goto(url)
    steps = page.locator("ol.procedure > li")
    expect(steps).to_have_count(3)
    expect(steps.nth(0)).to_contain_text("Import the list, granting nothing.")
    expect(steps.nth(1)).to_contain_text("This step makes them mailable.")
    expect(steps.nth(2)).to_contain_text("opt out of every other DM type")

    # 1. Import the list: nothing is ticked, nothing is granted.
    import_file(page, url, tmp_path, "1")
    expect(page.get_by_label("Add to the list, granting nothing")).to_be_checked()
    for dm_type in types:
        expect(page.get_by_label(dm_type.name)).not_to_be_checked()
    expect(page.get_by_label(ATTESTATION)).not_to_be_checked()
    start_and_wait(page, worker)
    expect(page.get_by_role("row", name="Recipients created 3")).to_be_visible()
    assert not any(
        s.subscribed for r in Recipient.objects.all() for s in recipient_dm_type_states(r)
    )

    # 2. The same list again, granting with the attestation and the evidence; it arrived with
    # "all types" ticked, so every DM type.
    import_file(page, url, tmp_path, "2")
    page.get_by_label("Add or update recipients and grant the DM types ticked").check()
    for dm_type in types:
        page.get_by_label(dm_type.name).check()
    page.get_by_label("Evidence of consent").fill(EVIDENCE)
    page.screenshot(path=tmp_path / "import-choices.png", full_page=True)
    page.get_by_role("button", name="Start the import").click()
    expect(page.get_by_role("alert")).to_contain_text("confirm that these people gave explicit")
    page.get_by_label(ATTESTATION).check()
    start_and_wait(page, worker)
    expect(page.get_by_role("row", name="Consent granted 9")).to_be_visible()

    # 3. After the grant, re-import choosing the opt-out, ticking every DM type except the one
    # agreed to.
    import_file(page, url, tmp_path, "3")
    page.get_by_label("Opt out: withdraw the DM types ticked").check()
    page.get_by_label("Newsletter").check()
    page.get_by_label("Fundraising").check()
    page.get_by_label("Evidence of consent").fill(OPT_OUT_EVIDENCE)
    start_and_wait(page, worker)
    expect(page.get_by_role("row", name="Consent withdrawn 6")).to_be_visible()
    page.screenshot(path=tmp_path / "import-done.png", full_page=True)

    for recipient in Recipient.objects.all():
        states = {s.dm_type.key: s.subscribed for s in recipient_dm_type_states(recipient)}
        assert states == {"events": True, "newsletter": False, "fundraising": False}
    assert subscription_mismatches() == []
    assert ImportJob.objects.count() == 3

    # The consent timeline shows each step with its evidence.
    ann = Recipient.objects.get(email="ann.lee@example.com")
    page.goto(f"/units/engineering/recipients/{ann.code}/")
    timeline = page.locator("ol.timeline > li")
    expect(timeline).to_have_count(5)
    expect(timeline.nth(0)).to_contain_text("Withdrew Fundraising")
    expect(timeline.nth(0)).to_contain_text(OPT_OUT_EVIDENCE)
    expect(timeline.nth(1)).to_contain_text("Withdrew Newsletter")
    for i, name in ((2, "Fundraising"), (3, "Newsletter"), (4, "Event invitations")):
        expect(timeline.nth(i)).to_contain_text(f"Granted {name}")
        expect(timeline.nth(i)).to_contain_text(EVIDENCE)
        expect(timeline.nth(i)).to_contain_text(ATTESTATION)
        expect(timeline.nth(i)).to_contain_text("by alice")
    page.screenshot(path=tmp_path / "timeline.png", full_page=True)
    assert not [e for e in page.csp_errors if "Content Security Policy" in e], page.csp_errors
