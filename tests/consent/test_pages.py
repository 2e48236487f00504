"""The DM type pages: viewers read, administrators create, edit (a new notice version) and
archive, only by POST."""

from __future__ import annotations

import pytest
from django.urls import reverse

from consent.models import DMType, DMTypeNotice
from consent.services import dm_type_create, dm_type_update
from mlm.models import AuditEntry


@pytest.fixture
def events(world) -> DMType:
    return dm_type_create(
        unit=world.unit,
        key="events",
        name="Event invitations",
        notice_text="Invitations to open days and lectures.",
        by=world.alice,
    )


def url(world, name: str, dm_type: DMType | None = None) -> str:
    args = [world.unit.slug] + ([dm_type.code] if dm_type else [])
    return reverse(name, args=args)


def test_it_lists_the_dm_types_for_a_viewer(world, client_for, events):
    dm_type_update(
        dm_type=events,
        name=events.name,
        notice_text="Invitations to open days, lectures and dinners.",
        internal_default=False,
        by=world.alice,
    )
    response = client_for(world.vic).get(url(world, "dm_types"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Event invitations" in page
    assert "<code>events</code>" in page
    assert "version 2" in page
    assert "Only with a grant" in page
    assert "New DM type" not in page  # viewers see no administrator's button


def test_it_shows_a_dm_type_with_its_notice_history_to_a_viewer(world, client_for, events):
    dm_type_update(
        dm_type=events,
        name=events.name,
        notice_text="Second wording.",
        internal_default=False,
        by=world.alice,
    )
    response = client_for(world.vic).get(url(world, "dm_type_detail", events))
    page = response.content.decode()
    assert response.status_code == 200
    assert page.index("Version 2") < page.index("Version 1")  # newest first
    assert "Second wording." in page
    assert "Invitations to open days and lectures." in page
    assert ">Edit<" not in page


@pytest.mark.parametrize("persona", ["bob", "vic", "amy"])
def test_it_refuses_dm_type_changes_below_the_admin_role(world, client_for, events, persona):
    client = client_for(getattr(world, persona))
    assert client.get(url(world, "dm_type_create")).status_code == 403
    form = {"key": "x", "name": "X", "notice_text": "Changed.", "internal_default": "on"}
    assert client.post(url(world, "dm_type_create"), form).status_code == 403
    assert client.post(url(world, "dm_type_edit", events), form).status_code == 403
    assert client.post(url(world, "dm_type_archive", events), {}).status_code == 403
    events.refresh_from_db()
    assert events.notices.count() == 1
    assert events.archived_at is None
    assert DMType.objects.count() == 1


def test_it_creates_a_dm_type_with_notice_version_one(world, client_for):
    response = client_for(world.alice).post(
        url(world, "dm_type_create"),
        {
            "key": "newsletter",
            "name": "Newsletter",
            "notice_text": "Our monthly news.",
            "internal_default": "on",
        },
        follow=True,
    )
    dm_type = DMType.objects.get(unit=world.unit, key="newsletter")
    assert dm_type.internal_default
    assert dm_type.current_notice.version == 1
    assert dm_type.current_notice.created_by == world.alice
    assert response.redirect_chain[-1][0] == url(world, "dm_type_detail", dm_type)
    assert "created with notice version 1" in response.content.decode()
    assert AuditEntry.objects.filter(verb="dm_type.create", actor=world.alice).exists()


def test_it_says_why_a_dm_type_is_refused(world, client_for, events):
    client = client_for(world.alice)
    taken = client.post(
        url(world, "dm_type_create"),
        {"key": "events", "name": "Again", "notice_text": "Some text."},
    )
    assert taken.status_code == 200
    assert "The key &#x27;events&#x27; is already used" in taken.content.decode()
    no_notice = client.post(
        url(world, "dm_type_create"), {"key": "other", "name": "Other", "notice_text": ""}
    )
    assert no_notice.status_code == 200
    assert 'aria-invalid="true"' in no_notice.content.decode()
    bad_key = client.post(
        url(world, "dm_type_create"), {"key": "not a slug", "name": "X", "notice_text": "T."}
    )
    assert "letters, numbers, underscores or hyphens" in bad_key.content.decode()
    assert DMType.objects.count() == 1


def test_editing_the_notice_makes_a_new_version_and_keeps_the_old(world, client_for, events):
    client = client_for(world.alice)
    form = client.get(url(world, "dm_type_edit", events)).content.decode()
    assert "Invitations to open days and lectures." in form  # the current text to edit
    response = client.post(
        url(world, "dm_type_edit", events),
        {"name": "Events", "notice_text": "Invitations to everything we organise."},
        follow=True,
    )
    assert response.status_code == 200
    versions = list(DMTypeNotice.objects.filter(dm_type=events).values_list("version", "text"))
    assert versions == [
        (2, "Invitations to everything we organise."),
        (1, "Invitations to open days and lectures."),
    ]
    events.refresh_from_db()
    assert events.name == "Events"
    page = response.content.decode()
    assert "Version 2</strong> (current)" in page
    assert "Invitations to open days and lectures." in page


def test_saving_the_same_notice_keeps_the_version(world, client_for, events):
    client_for(world.alice).post(
        url(world, "dm_type_edit", events),
        {"name": "Event invitations", "notice_text": "Invitations to open days and lectures."},
    )
    assert events.notices.count() == 1


def test_it_archives_only_after_confirming_by_post(world, client_for, events):
    client = client_for(world.alice)
    confirm = client.get(url(world, "dm_type_archive", events))
    assert confirm.status_code == 200
    assert "Archive “Event invitations”?" in confirm.content.decode()
    events.refresh_from_db()
    assert events.archived_at is None  # a GET never acts
    response = client.post(url(world, "dm_type_archive", events), follow=True)
    events.refresh_from_db()
    assert events.archived_at is not None
    assert "archived. Its consent history stays." in response.content.decode()
    again = client.post(url(world, "dm_type_archive", events), follow=True)
    assert "was already archived" in again.content.decode()
    listing = client.get(url(world, "dm_types")).content.decode()
    assert "Archived" in listing


def test_a_member_of_another_unit_gets_404(world, client_for, events):
    """I8: the DM types of a unit are not found from another unit."""
    client = client_for(world.charlie)
    assert client.get(url(world, "dm_type_detail", events)).status_code == 404
    assert client.post(url(world, "dm_type_archive", events)).status_code == 404
    foreign = reverse("dm_type_detail", args=[world.other_unit.slug, events.code])
    assert client.get(foreign).status_code == 404  # charlie's own unit does not have it


def test_the_form_takes_the_chinese_names_and_notices(world, client_for, events):
    client = client_for(world.alice)
    response = client.post(
        url(world, "dm_type_edit", events),
        {
            "name": "Event invitations",
            "name_zh_hant": "活動邀請",
            "name_zh_hans": "活动邀请",
            "notice_text": "Invitations to open days and lectures.",
            "notice_text_zh_hant": "開放日及講座的邀請。",
            "notice_text_zh_hans": "开放日及讲座的邀请。",
        },
        follow=True,
    )
    assert response.status_code == 200
    events.refresh_from_db()
    assert (events.name_zh_hant, events.name_zh_hans) == ("活動邀請", "活动邀请")
    notice = events.current_notice
    assert notice.version == 2  # the same English text, new Chinese ones: a new version
    assert (notice.text, notice.text_zh_hant, notice.text_zh_hans) == (
        "Invitations to open days and lectures.",
        "開放日及講座的邀請。",
        "开放日及讲座的邀请。",
    )
    page = response.content.decode()
    assert "活動邀請" in page and "開放日及講座的邀請。" in page
    form = client.get(url(world, "dm_type_edit", events)).content.decode()
    assert "开放日及讲座的邀请。" in form  # the current texts to edit


def test_a_new_notice_version_carries_all_three_texts(world, events):
    """I4: a grant points at one notice version, so each version keeps every language."""
    dm_type_update(
        dm_type=events,
        name=events.name,
        notice_text="Invitations to open days and lectures.",
        notice_text_zh_hant="開放日及講座的邀請。",
        internal_default=False,
        by=world.alice,
    )
    dm_type_update(
        dm_type=events,
        name=events.name,
        notice_text="Invitations to open days and lectures.",
        notice_text_zh_hant="開放日及講座的邀請。",
        notice_text_zh_hans="开放日及讲座的邀请。",
        internal_default=False,
        by=world.alice,
    )
    versions = list(
        DMTypeNotice.objects.filter(dm_type=events).values_list(
            "version", "text", "text_zh_hant", "text_zh_hans"
        )
    )
    english = "Invitations to open days and lectures."
    assert versions == [
        (3, english, "開放日及講座的邀請。", "开放日及讲座的邀请。"),
        (2, english, "開放日及講座的邀請。", ""),
        (1, english, "", ""),
    ]
