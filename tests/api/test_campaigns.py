"""Campaigns through the API, read-only: the list, one with its progress, and its report."""

from __future__ import annotations

import pytest

from campaigns.models import Campaign
from tests.api.test_framework import assert_problem
from tests.campaigns import factories
from tests.campaigns.report_data import sent_campaign


def test_a_viewer_lists_the_units_campaigns(world, api_keys, api):
    """I8: the other unit's campaign is not in the page."""
    draft = factories.campaign(world, name="Autumn news")
    factories.campaign(world, name="Theirs", unit=world.other_unit, by=world.charlie)
    response = api(api_keys.viewer).get("/api/v1/campaigns/")
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["code"] == str(draft.code)
    assert (row["name"], row["status"], row["dm_type"], row["audience"]) == (
        "Autumn news",
        "draft",
        "newsletter",
        "external",
    )
    assert row["lists"] == [str(draft.lists.get().code)]
    assert "progress" not in row


def test_the_detail_gives_the_sending_progress(world, api_keys, api):
    sent = sent_campaign(world)
    response = api(api_keys.viewer).get(f"/api/v1/campaigns/{sent.campaign.code}/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "sent"
    progress = body["progress"]
    assert {k: progress[k] for k in ("total", "sent", "skipped", "failed", "in_doubt")} == {
        "total": 23,
        "sent": 17,
        "skipped": 3,
        "failed": 1,
        "in_doubt": 1,
    }
    assert progress["deferred"] == 1 and progress["queued"] == 0
    assert progress["done_percent"] == round(100 * 22 / 23, 1)


def test_the_report_gives_the_figures_of_the_report_page(world, api_keys, api):
    """The same figures as campaigns.reports, which the report page shows."""
    sent = sent_campaign(world)
    response = api(api_keys.viewer).get(f"/api/v1/campaigns/{sent.campaign.code}/report/")
    assert response.status_code == 200, response.content
    body = response.json()
    figures = {f["key"]: (f["count"], f["rate"]) for f in body["figures"]}
    assert figures["sent"] == (17, 100.0)
    assert figures["clicked"][0] == 1
    assert figures["complained"][0] == 1
    assert {f["key"]: f["count"] for f in body["statuses"]}["in_doubt"] == 1
    assert [(f["label"], f["count"]) for f in body["skipped"]] == [
        ("No consent", 2),
        ("Withdrawn", 1),
    ]
    assert body["unsubscribes_by_dm_type"] == [
        {"dm_type": "All DM types", "count": 1},
        {"dm_type": "Newsletter", "count": 1},
    ]
    assert (body["deliveries"], body["sent"], body["status"]) == (23, 17, "sent")
    assert "@" not in str(body["domains"])  # domains only, never an address


def test_a_draft_has_an_empty_report_and_progress(world, api_keys, api):
    draft = factories.campaign(world)
    client = api(api_keys.editor)
    assert client.get(f"/api/v1/campaigns/{draft.code}/").json()["progress"]["total"] == 0
    report = client.get(f"/api/v1/campaigns/{draft.code}/report/").json()
    assert report["deliveries"] == 0
    assert {f["key"]: f["rate"] for f in report["figures"]}["opened"] is None


@pytest.mark.parametrize("suffix", ["", "report/"])
def test_another_units_campaign_is_404(world, api_keys, api, suffix):
    """I8."""
    theirs = factories.campaign(world, name="Theirs", unit=world.other_unit, by=world.charlie)
    response = api(api_keys.editor).get(f"/api/v1/campaigns/{theirs.code}/{suffix}")
    assert_problem(response, 404)


@pytest.mark.parametrize("suffix", ["", "report/"])
def test_keys_that_cannot_read_campaigns_are_refused(world, api_keys, api, suffix):
    url = f"/api/v1/campaigns/{factories.campaign(world).code}/{suffix}"
    assert_problem(api(api_keys.consent_writer).get(url), 403)
    assert_problem(api(api_keys.revoked).get(url), 401)
    assert_problem(api(api_keys.expired).get(url), 401)


def test_campaigns_cannot_be_changed_through_the_api(world, api_keys, api):
    draft = factories.campaign(world)
    client = api(api_keys.editor)
    assert_problem(client.post("/api/v1/campaigns/", {}, format="json"), 405)
    assert_problem(client.delete(f"/api/v1/campaigns/{draft.code}/"), 405)
    assert Campaign.objects.filter(pk=draft.pk).exists()


def test_a_code_that_is_not_a_uuid_is_404(world, api_keys, api):
    assert_problem(api(api_keys.viewer).get("/api/v1/campaigns/not-a-code/"), 404)
