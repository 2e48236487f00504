"""Lists through the API: read by viewers, members added and removed in bulk by editors, one
answer per address (I3), other units' lists 404 (I8), a bounded number of queries."""

from __future__ import annotations

import pytest

from recipients.memberships import MOST_ADDRESSES
from recipients.models import Audience, Category, ListMembership
from recipients.services import list_add_members, list_create, recipient_upsert
from tests.api.test_framework import assert_problem
from tests.recipients.test_bulk_membership import many


def add(unit, email: str, category: str = Category.EXTERNAL):
    recipient, _ = recipient_upsert(unit=unit, email=email, category=category, by=None)
    return recipient


@pytest.fixture
def theirs(world):
    """A list of the other unit, which no key of world.unit may see or change."""
    return list_create(unit=world.other_unit, name="Donors", audience=Audience.EXTERNAL, by=None)


def members_url(recipient_list, remove: bool = False) -> str:
    return f"/api/v1/lists/{recipient_list.code}/members/" + ("remove/" if remove else "")


def test_a_viewer_lists_the_units_lists_with_their_member_counts(
    world, api_keys, api, visitors, theirs
):
    """I8: the other unit's list is not in the page."""
    list_add_members(
        recipient_list=visitors, recipients=[add(world.unit, "lee@partner.org")], by=None
    )
    staff = list_create(unit=world.unit, name="Staff", audience=Audience.INTERNAL, by=None)
    response = api(api_keys.viewer).get("/api/v1/lists/")
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(r["code"], r["name"], r["audience"], r["member_count"]) for r in rows] == [
        (str(staff.code), "Staff", "internal", 0),
        (str(visitors.code), "Visitors", "external", 1),
    ]
    one = api(api_keys.viewer).get(f"/api/v1/lists/{visitors.code}/")
    assert one.json()["member_count"] == 1


def test_an_editor_adds_members_with_an_answer_per_address(world, api_keys, api, visitors):
    """I3: the internal-domain address is refused with its reason; the others are answered."""
    add(world.unit, "lee@partner.org")
    add(world.unit, "kim@example.edu", category=Category.STAFF)
    response = api(api_keys.editor).post(
        members_url(visitors),
        {"addresses": ["Lee@partner.org", "kim@example.edu", "x@nowhere.org", "nope"]},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(r["address"], r["result"]) for r in body["results"]] == [
        ("Lee@partner.org", "added"),
        ("kim@example.edu", "audience_mismatch"),
        ("x@nowhere.org", "not_recipient"),
        ("nope", "invalid_address"),
    ]
    assert "cannot be added to an external list" in body["results"][1]["detail"]
    assert body["counts"] == {
        "added": 1,
        "audience_mismatch": 1,
        "invalid_address": 1,
        "not_recipient": 1,
    }
    again = api(api_keys.editor).post(
        members_url(visitors), {"addresses": ["lee@partner.org"]}, format="json"
    )
    assert again.json()["results"][0]["result"] == "already"


def test_an_editor_removes_members(world, api_keys, api, visitors):
    lee = add(world.unit, "lee@partner.org")
    list_add_members(recipient_list=visitors, recipients=[lee], by=None)
    response = api(api_keys.editor).post(
        members_url(visitors, remove=True),
        {"addresses": ["LEE@partner.org", "lee@partner.org"]},
        format="json",
    )
    assert [r["result"] for r in response.json()["results"]] == ["removed", "not_member"]
    assert not ListMembership.objects.exists()


@pytest.mark.parametrize("remove", [False, True])
@pytest.mark.parametrize("role", ["viewer", "consent_writer"])
def test_only_an_editor_key_changes_members(world, api_keys, api, visitors, role, remove):
    lee = add(world.unit, "lee@partner.org")
    list_add_members(recipient_list=visitors, recipients=[lee], by=None)
    response = api(getattr(api_keys, role)).post(
        members_url(visitors, remove), {"addresses": ["lee@partner.org"]}, format="json"
    )
    assert_problem(response, 403)
    assert ListMembership.objects.count() == 1


def test_a_consent_writer_key_does_not_read_lists(world, api_keys, api, visitors):
    assert_problem(api(api_keys.consent_writer).get("/api/v1/lists/"), 403)


@pytest.mark.parametrize("remove", [False, True])
def test_another_units_list_is_404(world, api_keys, api, theirs, remove):
    """I8: the other unit's key gets 404, as for a list that does not exist."""
    recipient = add(world.other_unit, "lee@partner.org")
    list_add_members(recipient_list=theirs, recipients=[recipient], by=None)
    client = api(api_keys.editor)
    assert_problem(client.get(f"/api/v1/lists/{theirs.code}/"), 404)
    response = client.post(
        members_url(theirs, remove), {"addresses": ["lee@partner.org"]}, format="json"
    )
    assert_problem(response, 404)
    assert ListMembership.objects.count() == 1


@pytest.mark.parametrize("which", ["revoked", "expired", None])
def test_revoked_expired_or_missing_keys_get_401(world, api_keys, api, visitors, which):
    client = api(getattr(api_keys, which) if which else None)
    assert_problem(client.get("/api/v1/lists/"), 401)
    response = client.post(members_url(visitors), {"addresses": ["a@b.org"]}, format="json")
    assert_problem(response, 401)


def test_more_than_a_thousand_addresses_are_a_clear_400(world, api_keys, api, visitors):
    addresses = many(world.unit, MOST_ADDRESSES + 1)
    response = api(api_keys.editor).post(
        members_url(visitors), {"addresses": addresses}, format="json"
    )
    body = assert_problem(response, 400)
    assert body["detail"] == (
        "One request takes at most 1,000 addresses; split them into several requests."
    )
    assert body["errors"][0]["field"] == "addresses"
    assert not ListMembership.objects.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"addresses": []}, "Give at least one address."),
        ({"addresses": "lee@partner.org"}, 'Expected a list of items but got type "str".'),
        ({}, "This field is required."),
    ],
)
def test_a_malformed_body_is_a_clear_400(world, api_keys, api, visitors, payload, message):
    body = assert_problem(
        api(api_keys.editor).post(members_url(visitors), payload, format="json"), 400
    )
    assert body["detail"] == message


def test_a_thousand_addresses_take_a_bounded_number_of_queries(
    world, api_keys, api, visitors, django_assert_max_num_queries
):
    """The key, the list, and the bulk statements (one read, one write, the audit entry): not
    one query per address."""
    addresses = many(world.unit, MOST_ADDRESSES)
    client = api(api_keys.editor)
    with django_assert_max_num_queries(10):
        response = client.post(members_url(visitors), {"addresses": addresses}, format="json")
    assert response.json()["counts"] == {"added": MOST_ADDRESSES}
    with django_assert_max_num_queries(10):
        response = client.post(
            members_url(visitors, remove=True), {"addresses": addresses}, format="json"
        )
    assert response.json()["counts"] == {"removed": MOST_ADDRESSES}


@pytest.mark.parametrize(
    "query", ["page_size=null", "page_size=0", "page_size=1001", "page_size=2&page_size=3"]
)
def test_a_page_size_it_cannot_read_is_a_clear_400(world, api_keys, api, query):
    body = assert_problem(api(api_keys.viewer).get(f"/api/v1/lists/?{query}"), 400)
    assert body["errors"][0]["field"] == "page_size"


def test_pages_follow_the_cursor(world, api_keys, api):
    for name in ("A", "B", "C"):
        list_create(unit=world.unit, name=name, audience=Audience.EXTERNAL, by=None)
    client = api(api_keys.viewer)
    first = client.get("/api/v1/lists/?page_size=2").json()
    second = client.get(first["next"]).json()
    assert [r["name"] for r in first["results"] + second["results"]] == ["C", "B", "A"]
    assert second["next"] is None
