"""Django admin for the group mapping rules and the links between users and their identities."""

from django.contrib import admin

from mlm.services import audit_record
from mlm.sso.models import Identity, IdentityGroupRule


@admin.register(IdentityGroupRule)
class IdentityGroupRuleAdmin(admin.ModelAdmin):
    """Rules take effect at each person's next login."""

    list_display = ["group", "provider", "unit", "role", "created_at"]
    list_filter = ["provider", "role", "unit"]
    search_fields = ["group", "unit__name"]
    autocomplete_fields = ["unit"]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            unit=obj.unit,
            actor=request.user,
            verb="sso_rule.change" if change else "sso_rule.create",
            obj=obj,
            data={"provider": obj.provider, "group": obj.group, "role": obj.role},
        )

    def delete_model(self, request, obj) -> None:
        audit_record(
            unit=obj.unit,
            actor=request.user,
            verb="sso_rule.delete",
            data={"provider": obj.provider, "group": obj.group, "role": obj.role},
        )
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        for rule in queryset:
            self.delete_model(request, rule)


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    """Link an existing account to its identity provider subject before its first login."""

    list_display = ["subject", "provider", "user", "created_at", "last_login_at"]
    list_filter = ["provider"]
    search_fields = ["subject", "user__username"]
    autocomplete_fields = ["user"]
    readonly_fields = ["last_login_at"]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            unit=None,
            actor=request.user,
            verb="sso_identity.change" if change else "sso_identity.create",
            obj=obj,
            data={"provider": obj.provider, "user": obj.user.get_username()},
        )
