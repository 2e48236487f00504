"""Django admin for operations staff: units, memberships, users and the read-only audit log."""

from django.contrib import admin

from mlm.models import AuditEntry, Heartbeat, Membership, OutboxMessage, SenderUnit
from mlm.services import audit_record

admin.site.site_header = "MLM operations"
admin.site.site_title = "MLM operations"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows rows; nobody adds, changes or deletes them here."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(SenderUnit)
class SenderUnitAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "timezone", "default_locale", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            unit=obj,
            actor=request.user,
            verb="unit.change" if change else "unit.create",
            obj=obj,
            data={"fields": form.changed_data} if change else {},
        )

    def save_formset(self, request, form, formset, change) -> None:
        instances = formset.save()
        for membership in instances:
            audit_record(
                unit=membership.unit,
                actor=request.user,
                verb="membership.change",
                obj=membership,
                data={"user": membership.user.get_username(), "role": membership.role},
            )
        for membership in formset.deleted_objects:
            audit_record(
                unit=membership.unit,
                actor=request.user,
                verb="membership.delete",
                data={"user": membership.user.get_username()},
            )


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "unit", "role", "created_at"]
    list_filter = ["role", "unit"]
    search_fields = ["user__username", "user__email", "unit__name"]
    autocomplete_fields = ["user", "unit"]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            unit=obj.unit,
            actor=request.user,
            verb="membership.change" if change else "membership.create",
            obj=obj,
            data={"user": obj.user.get_username(), "role": obj.role},
        )

    def delete_model(self, request, obj) -> None:
        audit_record(
            unit=obj.unit,
            actor=request.user,
            verb="membership.delete",
            data={"user": obj.user.get_username()},
        )
        super().delete_model(request, obj)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "unit", "actor_label", "verb", "object_type", "object_repr"]
    list_filter = ["verb", "unit"]
    search_fields = ["actor_label", "verb", "object_id", "object_repr"]
    date_hierarchy = "created_at"


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "unit", "from_email", "subject"]
    list_filter = ["unit"]
    exclude = ["raw"]


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "seen_at"]
