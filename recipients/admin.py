"""Django admin for operations: recipients and lists, to look at only (units manage them)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet

from mlm.admin import ReadOnlyAdmin
from recipients.models import Recipient, RecipientList


@admin.register(Recipient)
class RecipientAdmin(ReadOnlyAdmin):
    list_display = ["email", "code", "unit", "category", "status", "created_at"]
    list_filter = ["status", "category", "unit"]
    search_fields = ["email", "=code", "first_name", "last_name"]
    list_select_related = ["unit"]
    show_full_result_count = False


@admin.register(RecipientList)
class RecipientListAdmin(ReadOnlyAdmin):
    list_display = ["name", "unit", "audience", "members", "created_at"]
    list_filter = ["audience", "unit"]
    search_fields = ["name", "=code"]
    list_select_related = ["unit"]

    def get_queryset(self, request) -> QuerySet[RecipientList]:
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="members", ordering="member_count")
    def members(self, obj: RecipientList) -> int:
        return obj.member_count
