"""Operations' admin for the consent app: the ledger read-only (I4), global suppressions added
and lifted through the audited services."""

from __future__ import annotations

import pytest
from django.urls import reverse

from consent.models import Channel, ConsentEvent, Subscription, Suppression, SuppressionReason
from consent.services import dm_type_create, grant, suppress
from mlm.models import AuditEntry
from recipients.addresses import address_hash
from recipients.models import Category
from recipients.services import recipient_upsert


@pytest.fixture
def granted(world):
    events = dm_type_create(
        unit=world.unit, key="events", name="Events", notice_text="Invitations.", by=None
    )
    recipient, _ = recipient_upsert(
        unit=world.unit, email="ana@partner.org", category=Category.EXTERNAL, by=None
    )
    grant(recipient=recipient, dm_types=[events], channel=Channel.IMPORT, evidence="Form v1")
    return recipient, events


def test_it_shows_the_ledger_read_only(granted, admin_client):
    """I4: consent events and subscriptions are listed and searchable by recipient code, and
    cannot be changed or deleted in the admin."""
    recipient, _ = granted
    for model in (ConsentEvent, Subscription):
        name = model._meta.model_name
        row = model.objects.get()
        found = admin_client.get(
            reverse(f"admin:consent_{name}_changelist"), {"q": str(recipient.code)}
        )
        assert found.status_code == 200
        assert str(recipient.code) in found.content.decode()
        assert (
            admin_client.get(reverse(f"admin:consent_{name}_change", args=[row.pk])).status_code
            == 200
        )
        changed = admin_client.post(reverse(f"admin:consent_{name}_change", args=[row.pk]), {})
        assert changed.status_code == 403
        deleted = admin_client.post(
            reverse(f"admin:consent_{name}_delete", args=[row.pk]), {"post": "yes"}
        )
        assert deleted.status_code == 403
        assert model.objects.filter(pk=row.pk).exists()


def test_it_shows_dm_types_with_their_notices(granted, admin_client):
    """DM types and their notice versions are shown, not edited, in the admin."""
    _, events = granted
    page = admin_client.get(reverse("admin:consent_dmtype_change", args=[events.pk]))
    assert page.status_code == 200
    assert "Invitations." in page.content.decode()
    assert admin_client.get(reverse("admin:consent_dmtype_add")).status_code == 403


def test_it_adds_a_global_suppression_through_the_service(world, admin_client, admin_user):
    """I1: a global suppression added in the admin is written by `suppress` and audited."""
    answer = admin_client.post(
        reverse("admin:consent_suppression_add"),
        {"email": "Bounce@PARTNER.org", "reason": SuppressionReason.HARD_BOUNCE, "note": "ESP"},
    )
    assert answer.status_code == 302, answer.content[:2000]
    made = Suppression.objects.get()
    assert (made.unit, made.email, made.reason, made.created_by) == (
        None,
        "Bounce@partner.org",
        SuppressionReason.HARD_BOUNCE,
        admin_user,
    )
    assert made.email_hash == address_hash("Bounce@partner.org")
    entry = AuditEntry.objects.get(verb="suppression.create")
    assert (entry.unit, entry.actor, entry.data["scope"]) == (None, admin_user, "global")


def test_it_refuses_a_bad_or_repeated_address_and_erasure_by_hand(world, admin_client):
    """Admin add: invalid addresses, an address already suppressed everywhere and the erasure
    reason are refused with a message."""
    suppress(email="dup@partner.org", unit=None, reason=SuppressionReason.MANUAL)
    url = reverse("admin:consent_suppression_add")
    for data, message in (
        ({"email": "not an address", "reason": "manual"}, "is not a valid address"),
        ({"email": "dup@partner.org", "reason": "manual"}, "already suppressed in every unit"),
        ({"email": "new@partner.org", "reason": "erasure"}, "Select a valid choice"),
    ):
        answer = admin_client.post(url, data)
        assert answer.status_code == 200
        assert message in answer.content.decode()
    assert Suppression.objects.count() == 1


def test_it_lifts_a_global_suppression_through_the_service(world, admin_client, admin_user):
    """Admin delete of a global suppression goes through `unsuppress`, audited; unit ones are
    only shown."""
    lifted = suppress(email="gone@partner.org", unit=None, reason=SuppressionReason.MANUAL)
    unit_one = suppress(email="kept@partner.org", unit=world.unit, reason=SuppressionReason.MANUAL)

    answer = admin_client.post(
        reverse("admin:consent_suppression_delete", args=[lifted.pk]), {"post": "yes"}
    )
    assert answer.status_code == 302
    assert not Suppression.objects.filter(pk=lifted.pk).exists()
    entry = AuditEntry.objects.get(verb="suppression.delete")
    assert entry.actor == admin_user
    refused = admin_client.post(
        reverse("admin:consent_suppression_delete", args=[unit_one.pk]), {"post": "yes"}
    )
    assert refused.status_code == 403


def test_it_finds_a_suppression_by_the_address_even_after_erasure(world, admin_client):
    """I9: an erased address is held only as a hash; typing the address still finds it."""
    suppress(
        email_hash=address_hash("gone@partner.org"),
        unit=None,
        reason=SuppressionReason.ERASURE,
        keep_address=False,
    )
    page = admin_client.get(
        reverse("admin:consent_suppression_changelist"), {"q": "gone@partner.org"}
    )
    assert page.status_code == 200
    assert page.context["cl"].result_count == 1
    assert "hash only" in page.content.decode()


def test_it_shows_recipients_and_lists_to_operations_only_to_look(granted, admin_client):
    """Recipients and lists are searchable in the admin and never changed there."""
    recipient, _ = granted
    found = admin_client.get(reverse("admin:recipients_recipient_changelist"), {"q": "ana@"})
    assert found.status_code == 200
    assert "ana@partner.org" in found.content.decode()
    by_code = admin_client.get(
        reverse("admin:recipients_recipient_changelist"), {"q": str(recipient.code)}
    )
    assert "ana@partner.org" in by_code.content.decode()
    assert admin_client.get(reverse("admin:recipients_recipientlist_changelist")).status_code == 200
    change = reverse("admin:recipients_recipient_change", args=[recipient.pk])
    assert admin_client.post(change, {"email": "x@partner.org"}).status_code == 403
    assert admin_client.get(reverse("admin:recipients_recipient_add")).status_code == 403
