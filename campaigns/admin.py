"""Django admin for operations staff: sender identities, and read-only views of campaigns."""

from django.contrib import admin

from campaigns.models import Campaign, Delivery, Layout, SenderIdentity, UnitCampaignSettings
from mlm.admin import ReadOnlyAdmin
from mlm.services import audit_record


@admin.register(SenderIdentity)
class SenderIdentityAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "unit", "reply_to", "created_at"]
    list_filter = ["unit"]
    search_fields = ["name", "email", "unit__name"]
    autocomplete_fields = ["unit"]

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
