"""Django admin for operations: API keys shown read-only (units make and revoke them on their
API keys page), with a revoke action that goes through the service (audited)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from api.models import ApiKey
from api.services import api_key_revoke
from mlm.admin import ReadOnlyAdmin


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "prefix", "unit", "role", "created_at", "last_used_at", "expires_at"]
    list_filter = ["unit", "role"]
    search_fields = ["name", "=prefix"]
    fields = [
        "name",
        "prefix",
        "unit",
        "role",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    readonly_fields = fields
    actions = ["revoke"]

    @admin.action(description="Revoke the selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(api_key_revoke(key=key, by=request.user) for key in queryset)
        messages.success(request, f"{revoked} API key(s) revoked.")

    def has_change_permission(self, request, obj=None) -> bool:
        # The revoke action needs it; every field stays read-only.
        return request.user.is_superuser
