"""The list pages and the recipient search: lists and members, search and filters, each for
the role it needs."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from consent.models import Action, Channel, ConsentEvent, SuppressionReason
from consent.selectors import sendable
from consent.services import grant, suppress, withdraw
from recipients import selectors
from recipients.addresses import address_hash
from recipients.models import (
    Audience,
    Category,
    ListMembership,
    Recipient,
    RecipientList,
    RecipientStatus,
)
from recipients.services import list_add_members, list_create
from tests.recipients.conftest import page_of, person, shown

# Lists -----------------------------------------------------------------------------------------


def test_it_lists_the_lists_with_member_counts_in_one_query(
    world, client_for, partners, staff, django_assert_num_queries
):
    list_add_members(
        recipient_list=partners,
        recipients=[person(world, "a@partner.org"), person(world, "b@partner.org")],
        by=world.bob,
    )
    with django_assert_num_queries(1):
        counts = {x.name: x.member_count for x in selectors.lists_with_counts(world.unit)}
    assert counts == {"Partners": 2, "Staff": 0}
    response = client_for(world.vic).get(page_of(world, "lists"))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Partners" in page and "Staff" in page
    assert "New list" not in page  # a viewer cannot create one


def consent_on_lists(world, partners, staff, dm_types) -> None:
    """Partners: granted (news, events), never asked, granted then bounced, granted then
    suppressed. Staff: one by default, one who withdrew everything."""
    news, events = dm_types["news"], dm_types["events"]
    granted = person(world, "granted@partner.org")
    grant(recipient=granted, dm_types=[news, events], channel=Channel.ADMIN, evidence="Form 7")
    never = person(world, "never@partner.org")
    bounced = person(world, "bounced@partner.org")
    grant(recipient=bounced, dm_types=[news], channel=Channel.ADMIN, evidence="Form 8")
    Recipient.objects.filter(pk=bounced.pk).update(status=RecipientStatus.BOUNCED)
    suppressed = person(world, "suppressed@partner.org")
    grant(recipient=suppressed, dm_types=[news], channel=Channel.ADMIN, evidence="Form 9")
    suppress(email=suppressed.email, unit=world.unit, reason=SuppressionReason.MANUAL)
    members = [granted, never, bounced, suppressed]
    list_add_members(recipient_list=partners, recipients=members, by=world.bob)
    by_default = person(world, "staff@example.edu", Category.STAFF)
    left = person(world, "left@example.edu", Category.STAFF)
    withdraw(recipient=left, dm_types=None, channel=Channel.ONE_CLICK)
    list_add_members(recipient_list=staff, recipients=[by_default, left], by=world.bob)


def reach(world, recipient_list, dm_type) -> tuple[int, int]:
    """(granted, would receive) of a list's members for a DM type, counted another way (no
    grant here is withdrawn later)."""
    members = Recipient.objects.filter(list_memberships__recipient_list=recipient_list)
    would = sendable(unit=world.unit, dm_type=dm_type, audience=recipient_list.audience)
    agreed = ConsentEvent.objects.filter(dm_type=dm_type, action=Action.GRANT)
    return (
        members.filter(consent_events__in=agreed).distinct().count(),
        members.filter(pk__in=would.values("pk")).count(),
    )


def test_the_list_pages_show_totals_and_consent_per_dm_type(
    world, client_for, partners, staff, dm_types
):
    """I1: "would receive" is `sendable` for the list's audience, as a campaign counts it; a
    grant alone is not enough (bounced, suppressed)."""
    consent_on_lists(world, partners, staff, dm_types)
    news, events, seminars = dm_types["news"], dm_types["events"], dm_types["seminars"]
    summaries = selectors.list_summaries(world.unit, [partners, staff])
    got = {
        (name, r.dm_type.key): (r.granted, r.sendable)
        for name, rl in (("partners", partners), ("staff", staff))
        for r in summaries[rl.pk].reach
    }
    assert got == {
        ("partners", "events"): (1, 1),
        ("partners", "news"): (3, 1),
        ("partners", "seminars"): (0, 0),
        ("staff", "events"): (0, 0),
        ("staff", "news"): (0, 1),
        ("staff", "seminars"): (0, 0),
    }
    for rl in (partners, staff):
        for t in (news, events, seminars):
            assert got[(rl.name.lower(), t.key)] == reach(world, rl, t)
    assert (summaries[partners.pk].members, summaries[staff.pk].members) == (4, 2)

    client = client_for(world.vic)
    detail = client.get(page_of(world, "list_detail", partners)).content.decode()
    assert "<strong>4</strong> members." in detail
    assert (
        '<tr><th scope="row">Newsletter</th><td class="num">3</td><td class="num">1</td></tr>'
        in detail
    )
    listing = client.get(page_of(world, "lists")).content.decode()
    assert '1 would receive</span><br><small class="reach-granted">3 granted' in listing


def test_the_consent_summary_is_one_query_whatever_the_number_of_lists(
    world, partners, staff, dm_types
):
    consent_on_lists(world, partners, staff, dm_types)
    more = [
        list_create(unit=world.unit, name=f"More {i}", audience=Audience.EXTERNAL, by=None)
        for i in range(5)
    ]
    lists = [partners, staff, *more]
    with CaptureQueriesContext(connection) as few:
        selectors.list_summaries(world.unit, lists[:1])
    with CaptureQueriesContext(connection) as many:
        summaries = selectors.list_summaries(world.unit, lists)
    assert len(few) == len(many) == 2  # the DM types, then every list's counts
    assert summaries[more[0].pk].members == 0


def test_an_empty_list_says_so_and_what_to_do(world, client_for, partners):
    editor = client_for(world.bob).get(page_of(world, "list_detail", partners)).content.decode()
    assert "This list is empty." in editor
    assert "Import a file of recipients" in editor and "add one recipient" in editor
    assert page_of(world, "import_upload", partners) in editor
    viewer = client_for(world.vic).get(page_of(world, "list_detail", partners)).content.decode()
    assert "This list is empty." in viewer and "An editor of the unit can import" in viewer
    listing = client_for(world.vic).get(page_of(world, "lists")).content.decode()
    assert "0 <small>(empty)</small>" in listing
    list_add_members(recipient_list=partners, recipients=[person(world, "a@p.org")], by=None)
    again = client_for(world.bob).get(page_of(world, "list_detail", partners)).content.decode()
    assert "This list is empty." not in again and "<strong>1</strong> member." in again


def test_an_editor_creates_a_list_and_a_viewer_cannot(world, client_for):
    form = {"name": "Open day visitors", "audience": "external", "description": "2025"}
    assert client_for(world.vic).post(page_of(world, "list_create"), form).status_code == 403
    response = client_for(world.bob).post(page_of(world, "list_create"), form)
    created = RecipientList.objects.get(unit=world.unit, name="Open day visitors")
    assert created.audience == Audience.EXTERNAL
    assert response["Location"] == page_of(world, "list_detail", created)
    again = client_for(world.bob).post(page_of(world, "list_create"), form)
    assert "already has a list named" in again.content.decode()
    missing = client_for(world.bob).post(page_of(world, "list_create"), {"name": "No audience"})
    assert missing.status_code == 200
    assert RecipientList.objects.count() == 1


def test_it_shows_and_searches_the_members_of_a_list(world, client_for, partners):
    on_list = [
        person(world, "anna@acme.example.com", first_name="Anna", last_name="Schmidt"),
        person(world, "bo@acme.example.com", first_name="Bo", last_name="Chan"),
    ]
    person(world, "carl@acme.example.com")  # not on the list
    list_add_members(recipient_list=partners, recipients=on_list, by=world.bob)
    client = client_for(world.vic)
    response = client.get(page_of(world, "list_detail", partners))
    assert shown(response) == ["anna@acme.example.com", "bo@acme.example.com"]
    assert "Remove" not in response.content.decode()  # viewers cannot change the list
    assert shown(client.get(page_of(world, "list_detail", partners), {"q": "CHAN"})) == [
        "bo@acme.example.com"
    ]


def test_an_editor_removes_a_member_by_post_only(world, client_for, partners):
    member = person(world, "ann@partner.org")
    list_add_members(recipient_list=partners, recipients=[member], by=world.bob)
    url = page_of(world, "list_remove_member", partners, member)
    assert client_for(world.bob).get(url).status_code == 405
    assert client_for(world.vic).post(url).status_code == 403
    assert ListMembership.objects.filter(recipient=member).exists()
    response = client_for(world.bob).post(url, follow=True)
    assert "was taken off “Partners”" in response.content.decode()
    assert not ListMembership.objects.filter(recipient=member).exists()
    assert Recipient.objects.filter(pk=member.pk).exists()  # only the membership goes


def test_an_editor_adds_one_recipient_to_a_list(world, client_for, partners):
    response = client_for(world.bob).post(
        page_of(world, "list_add_recipient", partners),
        {
            "email": "  Wong.Tai@Partner.ORG ",
            "first_name": "大文",
            "last_name": "黃",
            "category": "external",
        },
        follow=True,
    )
    added = Recipient.objects.get(unit=world.unit, email="Wong.Tai@partner.org")
    assert (added.first_name, added.last_name, added.category) == ("大文", "黃", "external")
    assert ListMembership.objects.filter(recipient_list=partners, recipient=added).exists()
    assert not ConsentEvent.objects.exists()  # I2: adding to a list grants nothing
    assert "Wong.Tai@partner.org is on the list “Partners”" in response.content.decode()


def test_the_add_form_explains_an_i3_refusal(world, client_for, partners):
    """I3: an address of the institution's own domains cannot join an external list; the form
    says so, and nothing is created."""
    response = client_for(world.bob).post(
        page_of(world, "list_add_recipient", partners),
        {"email": "kim@example.edu", "category": "external"},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "kim@example.edu is an address of the institution&#x27;s own domains" in page
    assert 'role="alert"' in page
    assert not Recipient.objects.exists()
    assert not ListMembership.objects.exists()


def test_the_add_form_refuses_a_category_change_that_would_mix_a_list(
    world, client_for, partners, staff
):
    """I3: a recipient already on an external list cannot become staff by being added to an
    internal list; the whole change is undone."""
    partner = person(world, "lee@partner.org", first_name="Lee")
    list_add_members(recipient_list=partners, recipients=[partner], by=world.bob)
    response = client_for(world.bob).post(
        page_of(world, "list_add_recipient", staff),
        {"email": "lee@partner.org", "category": "staff"},
    )
    assert "is on the external list “Partners”" in response.content.decode()
    partner.refresh_from_db()
    assert partner.category == Category.EXTERNAL
    assert partner.first_name == "Lee"
    assert not ListMembership.objects.filter(recipient_list=staff).exists()


def test_the_add_form_keeps_the_names_already_held(world, client_for, partners):
    known = person(world, "ann@partner.org", first_name="Ann", last_name="Lam", locale="zh-hant")
    client_for(world.bob).post(
        page_of(world, "list_add_recipient", partners),
        {"email": "ann@partner.org", "category": "external"},
    )
    known.refresh_from_db()
    assert (known.first_name, known.last_name, known.locale) == ("Ann", "Lam", "zh-hant")
    assert ListMembership.objects.filter(recipient=known).exists()


def test_the_add_form_offers_only_the_categories_of_the_list(world, client_for, staff, partners):
    internal = client_for(world.bob).get(page_of(world, "list_add_recipient", staff))
    choices = [value for value, _ in internal.context["form"].fields["category"].choices]
    assert choices == ["staff", "student", "alumni"]
    assert client_for(world.vic).get(page_of(world, "list_add_recipient", staff)).status_code == 403


# Search ----------------------------------------------------------------------------------------


@pytest.fixture
def people(world, partners, staff) -> dict[str, Recipient]:
    made = {
        "chan": person(
            world, "t.m.chan@example.edu", Category.STAFF, first_name="大文", last_name="陳"
        ),
        "wong": person(
            world, "mei.wong@example.edu", Category.STUDENT, first_name="Mei", last_name="Wong"
        ),
        "kim": person(world, "kim@partner.org", first_name="Kim", last_name="Chandler"),
        "ola": person(world, "ola@acme.example.com", first_name="Ola", last_name="Nordmann"),
    }
    list_add_members(recipient_list=staff, recipients=[made["chan"], made["wong"]], by=None)
    list_add_members(recipient_list=partners, recipients=[made["kim"]], by=None)
    Recipient.objects.filter(pk=made["ola"].pk).update(status=RecipientStatus.BOUNCED)
    return made


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("CHAN", ["kim@partner.org", "t.m.chan@example.edu"]),  # address or last name, any case
        ("mei WONG", ["mei.wong@example.edu"]),  # every word must match
        ("大文", ["t.m.chan@example.edu"]),
        ("陳大文", ["t.m.chan@example.edu"]),  # family name first, no space
        ("@partner.org", ["kim@partner.org"]),
        ("nobody", []),
    ],
)
def test_it_searches_by_address_or_name_in_any_case(world, client_for, people, q, expected):
    response = client_for(world.vic).get(page_of(world, "recipients"), {"q": q})
    assert response.status_code == 200
    assert shown(response) == expected


def test_it_writes_chinese_names_family_name_first(world, client_for, people):
    page = client_for(world.vic).get(page_of(world, "recipients")).content.decode()
    assert "<small>陳大文</small>" in page
    assert "<small>Mei Wong</small>" in page


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"category": "student"}, ["mei.wong@example.edu"]),
        ({"status": "bounced"}, ["ola@acme.example.com"]),
        ({"list": "Staff"}, ["mei.wong@example.edu", "t.m.chan@example.edu"]),
        ({"list": "Partners", "q": "kim"}, ["kim@partner.org"]),
        ({"list": "Partners", "category": "staff"}, []),
    ],
)
def test_it_filters_by_list_category_and_status(world, client_for, people, filters, expected):
    if "list" in filters:
        filters["list"] = RecipientList.objects.get(name=filters["list"]).code
    response = client_for(world.vic).get(page_of(world, "recipients"), filters)
    assert shown(response) == expected


def test_the_dm_type_filter_is_sendable_over_both_audiences(world, client_for, dm_types):
    """I1: "would receive DM type T" shows exactly the union of `sendable` for both audiences:
    external only with a grant, internal by default unless withdrawn, never the bounced or the
    suppressed."""
    news, events = dm_types["news"], dm_types["events"]
    granted = person(world, "granted@partner.org")
    grant(recipient=granted, dm_types=[news, events], channel=Channel.ADMIN, evidence="Form 7")
    person(world, "never@partner.org")
    by_default = person(world, "staff@example.edu", Category.STAFF)
    withdrawn = person(world, "left@example.edu", Category.STAFF)
    withdraw(recipient=withdrawn, dm_types=None, channel=Channel.ONE_CLICK)
    back = person(world, "back@example.edu", Category.ALUMNI)
    withdraw(recipient=back, dm_types=None, channel=Channel.ONE_CLICK)
    grant(recipient=back, dm_types=[news], channel=Channel.ADMIN, evidence="Asked again")
    bounced = person(world, "bounced@partner.org")
    grant(recipient=bounced, dm_types=[news], channel=Channel.ADMIN, evidence="Form 8")
    Recipient.objects.filter(pk=bounced.pk).update(status=RecipientStatus.BOUNCED)
    suppressed = person(world, "suppressed@example.edu", Category.STUDENT)
    suppress(email=suppressed.email, unit=world.unit, reason=SuppressionReason.MANUAL)
    client = client_for(world.vic)
    for dm_type, expected in (
        (news, ["back@example.edu", "granted@partner.org", "staff@example.edu"]),
        (events, ["granted@partner.org"]),
    ):
        response = client.get(page_of(world, "recipients"), {"dm_type": dm_type.code})
        assert shown(response) == expected
        both = {
            r.email
            for audience in Audience.values
            for r in sendable(unit=world.unit, dm_type=dm_type, audience=audience)
        }
        assert set(expected) == both
    staff_only = client.get(
        page_of(world, "recipients"), {"dm_type": news.code, "category": "staff"}
    )
    assert shown(staff_only) == ["staff@example.edu"]
    assert by_default.email in shown(staff_only)


def test_it_pages_by_address_without_counting(world, client_for):
    Recipient.objects.bulk_create(
        Recipient(
            unit=world.unit,
            email=f"p{i:03d}@partner.org",
            email_hash=address_hash(f"p{i:03d}@partner.org"),
            category=Category.EXTERNAL,
        )
        for i in range(selectors.PAGE_SIZE + 5)
    )
    client = client_for(world.vic)
    first = client.get(page_of(world, "recipients"), {"q": "partner"})
    assert len(shown(first)) == selectors.PAGE_SIZE
    assert first.context["page"].previous_before is None
    after = first.context["page"].next_after
    assert f"q=partner&amp;after={after}" in first.content.decode()
    second = client.get(page_of(world, "recipients"), {"q": "partner", "after": after})
    assert shown(second) == [f"p{i:03d}@partner.org" for i in range(50, 55)]
    assert second.context["page"].next_after is None
    before = second.context["page"].previous_before
    back = client.get(page_of(world, "recipients"), {"q": "partner", "before": before})
    assert shown(back) == shown(first)
    nonsense = client.get(page_of(world, "recipients"), {"after": "not-a-code"})
    assert shown(nonsense) == shown(first)  # a broken cursor starts at the beginning


def test_walking_and_sorting_find_the_same_rows(world, people):
    """The two ways a page is read (index walk, or find all and sort) agree, in both directions."""
    for filters in ({}, {"q": "chan"}, {"category": "staff"}, {"q": "zzz"}):
        for part in selectors.recipient_search(unit=world.unit, **filters):
            for order in ("email", "-email"):
                walked = selectors._walk(part, order, 3)
                assert walked == selectors._sort(part, order, 3)
