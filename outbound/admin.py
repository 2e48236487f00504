"""Django admin for operations: endpoints and the outbox, read-only (units manage endpoints on
their own page; secrets are never shown, payloads are, as any stored event is)."""

from __future__ import annotations

from django.contrib import admin

from mlm.admin import ReadOnlyAdmin
from outbound.models import Endpoint, Event


@admin.register(Endpoint)
class EndpointAdmin(ReadOnlyAdmin):
    list_display = ["url", "unit", "is_active", "failing_since", "created_at"]
    list_filter = ["is_active", "unit"]
    fields = [
        "code",
        "unit",
        "url",
        "description",
        "event_types",
        "is_active",
        "paused_reason",
        "failing_since",
        "previous_secret_expires_at",
        "created_at",
    ]
    readonly_fields = fields


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["code", "type", "unit", "status", "attempts", "next_attempt_at", "last_error"]
    list_filter = ["status", "type"]
    search_fields = ["code", "recipient_key"]
    list_select_related = ["unit"]
    show_full_result_count = False
