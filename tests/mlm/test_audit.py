"""The audit log: written by services, append-only, read-only in admin."""

import pytest
from django.urls import reverse

from campaigns.models import Layout
from campaigns.starter import STARTER_LAYOUT_NAME
from mlm.models import AuditEntry


def test_services_write_audit_entries(world):
    verbs = set(AuditEntry.objects.for_unit(world.unit).values_list("verb", flat=True))
    assert {"unit.create", "membership.create"} <= verbs


def test_an_entry_cannot_be_changed_or_deleted(world):
    entry = AuditEntry.objects.for_unit(world.unit).first()
    entry.verb = "rewritten"
    with pytest.raises(ValueError, match="append-only"):
        entry.save()
    with pytest.raises(ValueError, match="append-only"):
        entry.delete()


def test_admin_shows_the_log_read_only(world, admin_client):
    entry = AuditEntry.objects.first()
    assert admin_client.get(reverse("admin:mlm_auditentry_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:mlm_auditentry_add")).status_code == 403
    change = admin_client.post(
        reverse("admin:mlm_auditentry_change", args=[entry.pk]), {"verb": "x"}
    )
    assert change.status_code == 403
    assert (
        admin_client.post(reverse("admin:mlm_auditentry_delete", args=[entry.pk])).status_code
        == 403
    )


def test_operations_create_units_and_memberships_in_admin(world, admin_client):
    response = admin_client.post(
        reverse("admin:mlm_senderunit_add"),
        {
            "name": "School of Design",
            "slug": "design",
            "postal_address": "School of Design, Hong Kong",
            "timezone": "Asia/Hong_Kong",
            "default_locale": "en",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-user": world.bob.pk,
            "memberships-0-role": "editor",
        },
    )
    assert response.status_code == 302, response.content[:3000]
    assert world.bob.memberships.filter(unit__slug="design", role="editor").exists()
    assert AuditEntry.objects.filter(unit__slug="design", verb="unit.create").exists()
    assert AuditEntry.objects.filter(unit__slug="design", verb="membership.change").exists()
    assert Layout.objects.filter(unit__slug="design", name=STARTER_LAYOUT_NAME).exists()


def test_a_bad_time_zone_is_refused_with_a_clear_message(world, admin_client):
    response = admin_client.post(
        reverse("admin:mlm_senderunit_add"),
        {
            "name": "X",
            "slug": "x",
            "postal_address": "x",
            "timezone": "Mars/Olympus",
            "default_locale": "en",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert b"is not a known time zone" in response.content
