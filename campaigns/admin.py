"""Django admin for operations staff: sender identities (approving requested ones), and
read-only views of campaigns."""

from django.contrib import admin

from campaigns.models import Campaign, Delivery, Layout, SenderIdentity, UnitCampaignSettings
from campaigns.services.authoring import identity_approve
from mlm.admin import ReadOnlyAdmin
from mlm.services import audit_record


@admin.register(SenderIdentity)
class SenderIdentityAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "unit", "reply_to", "status", "created_at"]
    list_filter = ["status", "unit"]
    search_fields = ["name", "email", "unit__name"]
    autocomplete_fields = ["unit"]
    readonly_fields = ["status", "pending_reason"]
    actions = ["approve"]

    @admin.action(description="Approve the selected pending From addresses")
    def approve(self, request, queryset) -> None:
        approved = sum(identity_approve(identity=i, by=request.user) for i in queryset)
        self.message_user(request, f"{approved} From address(es) approved; units can use them now.")

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            unit=obj.unit,
            actor=request.user,
            verb="identity.change" if change else "identity.create",
            obj=obj,
        )


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdmin):
    list_display = ["name", "unit", "status", "dm_type", "audience", "scheduled_at", "created_at"]
    list_filter = ["status", "unit"]
    search_fields = ["name", "code"]


@admin.register(Layout)
class LayoutAdmin(ReadOnlyAdmin):
    list_display = ["name", "unit", "updated_at"]
    list_filter = ["unit"]


@admin.register(UnitCampaignSettings)
class UnitCampaignSettingsAdmin(ReadOnlyAdmin):
    list_display = ["unit", "allow_self_approval", "frequency_cap_mails", "frequency_cap_days"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["campaign", "recipient", "status", "reason", "sent_at"]
    list_filter = ["status", "reason"]
