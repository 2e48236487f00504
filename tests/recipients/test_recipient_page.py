"""One recipient's page: profile, lists and consent, a grant by hand and a withdrawal, and the
person's rights (export, erase), each for the role it needs; and the demo's recipients."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from consent.models import Action, Channel, ConsentEvent, DMType
from consent.selectors import sendable
from consent.services import dm_type_archive, dm_type_update, grant, withdraw
from mlm.demo import demo_setup
from recipients.models import (
    Audience,
    Category,
    ListMembership,
    Recipient,
    RecipientList,
    RecipientStatus,
)
from recipients.services import list_add_members
from tests.recipients.conftest import page_of, person

# One recipient ---------------------------------------------------------------------------------


def test_it_shows_profile_lists_consent_and_history(world, client_for, dm_types, partners):
    kim = person(world, "kim@partner.org", first_name="Kim", last_name="Lee")
    list_add_members(recipient_list=partners, recipients=[kim], by=None)
    grant(
        recipient=kim,
        dm_types=[dm_types["events"]],
        channel=Channel.IMPORT,
        evidence="Industry Day form",
        actor=world.bob,
        ip_address="198.51.100.7",
    )
    grant(recipient=kim, dm_types=[dm_types["seminars"]], channel=Channel.ADMIN, evidence="Call")
    withdraw(recipient=kim, dm_types=[dm_types["seminars"]], channel=Channel.ONE_CLICK)
    response = client_for(world.vic).get(page_of(world, "recipient_detail", kim))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Kim Lee" in page and "Partners" in page
    states = {s.dm_type.key: s for s in response.context["states"]}
    assert states["events"].subscribed and not states["seminars"].subscribed
    assert 'state-granted">Subscribed' in page
    assert 'state-withdrawn">Withdrawn' in page
    assert 'state-never">Never' in page  # the newsletter: external, no grant
    history = page[page.index("Consent history") :]
    assert history.index("Withdrew Research seminars") < history.index("Granted Event invitat")
    assert "Industry Day form" in history and "198.51.100.7" in history and "by bob" in history
    assert "Record the grant" not in page  # a viewer reads only
    assert "Export data" not in page


def test_it_shows_the_notice_version_a_grant_agreed_to(world, client_for, dm_types):
    kim = person(world, "kim@partner.org")
    events = dm_types["events"]
    grant(recipient=kim, dm_types=[events], channel=Channel.ADMIN, evidence="Form")
    dm_type_update(
        dm_type=events,
        name=events.name,
        notice_text="A broader wording, version 2.",
        internal_default=False,
        by=world.alice,
    )
    page = client_for(world.vic).get(page_of(world, "recipient_detail", kim)).content.decode()
    assert "Notice version 1" in page
    assert "Event invitations: notice version 1." in page
    assert "A broader wording, version 2." not in page


def test_an_internal_recipient_receives_a_default_dm_type_by_default(world, client_for, dm_types):
    staff_member = person(world, "sam@example.edu", Category.STAFF)
    page = client_for(world.vic).get(page_of(world, "recipient_detail", staff_member))
    assert 'state-default">By default' in page.content.decode()


def test_an_admin_records_a_grant_by_hand_with_its_proof(world, client_for, dm_types):
    """I2: a grant made in the browser records channel, evidence, actor, address and browser."""
    kim = person(world, "kim@partner.org")
    response = client_for(world.alice).post(
        page_of(world, "recipient_grant", kim),
        {"dm_types": [dm_types["events"].code], "evidence": "Signed form, open day 2025"},
        REMOTE_ADDR="203.0.113.9",
        HTTP_USER_AGENT="Firefox/140",
        follow=True,
    )
    assert "Consent recorded: Event invitations." in response.content.decode()
    event = ConsentEvent.objects.get(recipient=kim)
    assert (event.action, event.channel, event.dm_type) == (
        Action.GRANT,
        Channel.ADMIN,
        dm_types["events"],
    )
    assert event.evidence == "Signed form, open day 2025"
    assert (event.actor, event.actor_label) == (world.alice, "alice")
    assert (event.ip_address, event.user_agent) == ("203.0.113.9", "Firefox/140")
    assert event.notice == dm_types["events"].current_notice


@pytest.mark.parametrize("evidence", ["", "   "])
def test_a_grant_without_evidence_is_refused_and_nothing_recorded(
    world, client_for, dm_types, evidence
):
    """I2: no grant without evidence; the form says what is missing."""
    kim = person(world, "kim@partner.org")
    response = client_for(world.alice).post(
        page_of(world, "recipient_grant", kim),
        {"dm_types": [dm_types["events"].code], "evidence": evidence},
    )
    assert response.status_code == 200
    assert "Evidence is required" in response.content.decode()
    assert not ConsentEvent.objects.exists()


def test_a_grant_names_its_dm_types_and_never_an_archived_one(world, client_for, dm_types):
    """I2: "all DM types" is never implied, and an archived DM type cannot be granted."""
    kim = person(world, "kim@partner.org")
    client = client_for(world.alice)
    nothing = client.post(page_of(world, "recipient_grant", kim), {"evidence": "Form"})
    assert "Choose the DM types the person agreed to." in nothing.content.decode()
    dm_type_archive(dm_type=dm_types["seminars"], by=world.alice)
    archived = client.post(
        page_of(world, "recipient_grant", kim),
        {"dm_types": [dm_types["seminars"].code], "evidence": "Form"},
    )
    assert archived.status_code == 200
    assert "is not one of the available choices" in archived.content.decode()
    assert not ConsentEvent.objects.exists()


def test_an_admin_withdraws_one_dm_type_or_all(world, client_for, dm_types):
    """I6: a withdrawal by hand takes effect at once; "all" covers every DM type of the unit."""
    kim = person(world, "kim@partner.org")
    grant(
        recipient=kim,
        dm_types=[dm_types["events"], dm_types["seminars"]],
        channel=Channel.ADMIN,
        evidence="Form",
    )
    client = client_for(world.alice)
    url = page_of(world, "recipient_withdraw", kim)
    empty = client.post(url, {})
    assert "Choose the DM types to withdraw, or every DM type." in empty.content.decode()
    client.post(url, {"dm_types": [dm_types["events"].code], "evidence": "Phone call"})
    reach = {
        key: sendable(unit=world.unit, dm_type=t, audience=Audience.EXTERNAL).contains(kim)
        for key, t in dm_types.items()
    }
    assert reach == {"news": False, "events": False, "seminars": True}
    client.post(url, {"everything": "on"}, REMOTE_ADDR="203.0.113.9")
    last = ConsentEvent.objects.filter(recipient=kim).latest("id")
    assert (last.action, last.dm_type, last.channel) == (Action.WITHDRAW, None, Channel.ADMIN)
    assert last.actor == world.alice and last.ip_address == "203.0.113.9"
    assert not sendable(
        unit=world.unit, dm_type=dm_types["seminars"], audience=Audience.EXTERNAL
    ).exists()


@pytest.mark.parametrize("persona", ["bob", "vic", "amy"])
def test_only_admins_change_consent_or_use_the_rights_of_the_person(
    world, client_for, dm_types, persona
):
    kim = person(world, "kim@partner.org")
    client = client_for(getattr(world, persona))
    form = {"dm_types": [dm_types["events"].code], "evidence": "Form", "confirm": "on"}
    for name in ("recipient_grant", "recipient_withdraw", "recipient_export", "recipient_erase"):
        assert client.post(page_of(world, name, kim), form).status_code == 403, name
    assert not ConsentEvent.objects.exists()
    kim.refresh_from_db()
    assert kim.status == RecipientStatus.ACTIVE


def test_the_export_is_a_json_download_by_post(world, client_for, dm_types):
    """I9: everything held about a person, consent history included, as a JSON file."""
    kim = person(world, "kim@partner.org", first_name="Kim")
    grant(recipient=kim, dm_types=[dm_types["events"]], channel=Channel.ADMIN, evidence="Form")
    client = client_for(world.alice)
    url = page_of(world, "recipient_export", kim)
    assert client.get(url).status_code == 405
    response = client.post(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="recipient-{kim.code}.json"'
    data = json.loads(response.content)
    assert data["recipient"]["email"] == "kim@partner.org"
    assert [e["evidence"] for e in data["consent_events"]] == ["Form"]


def test_erasure_needs_a_confirmed_post(world, client_for, dm_types, partners):
    """I9: erasure asks first, acts only on a confirmed POST, and leaves no personal data."""
    kim = person(world, "kim@partner.org", first_name="Kim")
    list_add_members(recipient_list=partners, recipients=[kim], by=None)
    client = client_for(world.alice)
    url = page_of(world, "recipient_erase", kim)
    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "Erase kim@partner.org?" in confirm.content.decode()
    unconfirmed = client.post(url, {})
    assert "Tick the box to confirm the erasure." in unconfirmed.content.decode()
    kim.refresh_from_db()
    assert kim.status == RecipientStatus.ACTIVE  # neither the GET nor the unticked POST acted
    response = client.post(url, {"confirm": "on"}, follow=True)
    assert response.redirect_chain[-1][0] == page_of(world, "recipient_detail", kim)
    page = response.content.decode()
    assert "The person&#x27;s data was erased" in page
    assert "kim@partner.org" not in page and "Kim" not in page
    kim.refresh_from_db()
    assert kim.status == RecipientStatus.ERASED
    assert not ListMembership.objects.filter(recipient=kim).exists()
    assert "Already erased" in client.get(url).content.decode()


def test_a_member_of_another_unit_gets_404(world, client_for, partners):
    """I8: the recipients and lists of a unit are not found from another unit."""
    kim = person(world, "kim@partner.org")
    client = client_for(world.charlie)
    assert client.get(page_of(world, "recipient_detail", kim)).status_code == 404
    assert client.post(page_of(world, "recipient_export", kim)).status_code == 404
    assert client.get(page_of(world, "list_detail", partners)).status_code == 404
    in_own_unit = reverse("recipient_detail", args=[world.other_unit.slug, kim.code])
    assert client.get(in_own_unit).status_code == 404


# Demo data -------------------------------------------------------------------------------------


def test_the_demo_has_dm_types_lists_and_recipients_once(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    demo_setup()
    events = ConsentEvent.objects.count()
    demo_setup()  # idempotent: nothing is added twice
    unit = DMType.objects.get(key="newsletter").unit
    assert unit.slug == "engineering"
    assert DMType.objects.for_unit(unit).count() == 4
    assert set(RecipientList.objects.for_unit(unit).values_list("name", "audience")) == {
        ("All staff", Audience.INTERNAL),
        ("Industry partners", Audience.EXTERNAL),
    }
    assert Recipient.objects.for_unit(unit).count() == 30
    assert Recipient.objects.filter(last_name="陳").exists()
    assert ConsentEvent.objects.count() == events
    assert ConsentEvent.objects.filter(action=Action.WITHDRAW).exists()
    assert all(
        e.startswith("Demo data: ")
        for e in ConsentEvent.objects.filter(action=Action.GRANT).values_list("evidence", flat=True)
    )
