"""Django admin for operations: the ledger and DM types read-only, global suppressions added and
lifted through the services (audited)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from consent.models import (
    ConsentEvent,
    DMType,
    DMTypeNotice,
    Subscription,
    Suppression,
    SuppressionReason,
)
from consent.services import suppress, unsuppress
from mlm.admin import ReadOnlyAdmin
from recipients.addresses import InvalidAddress, address_hash, normalise_address


class DMTypeNoticeInline(admin.TabularInline):
    model = DMTypeNotice
    fields = ["version", "text", "text_zh_hant", "text_zh_hans", "created_by", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DMType)
class DMTypeAdmin(ReadOnlyAdmin):
    """Units manage their DM types in the browser; here operations only look."""

    list_display = ["name", "key", "unit", "internal_default", "archived_at", "created_at"]
    list_filter = ["unit", "internal_default"]
    search_fields = ["name", "name_zh_hant", "name_zh_hans", "key", "=code"]
    inlines = [DMTypeNoticeInline]


def _scope(obj: ConsentEvent | Subscription) -> str:
    return obj.dm_type.name if obj.dm_type_id else "all DM types"


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdmin):
    """The ledger (I4): never changed here."""

    list_display = [
        "id",
        "created_at",
        "unit",
        "recipient_code",
        "scope",
        "action",
        "channel",
        "actor_label",
    ]
    list_filter = ["action", "channel", "unit"]
    search_fields = ["recipient__code"]
    list_select_related = ["unit", "dm_type", "recipient"]
    show_full_result_count = False

    @admin.display(description="recipient")
    def recipient_code(self, obj: ConsentEvent) -> str:
        return str(obj.recipient.code)

    @admin.display(description="DM type")
    def scope(self, obj: ConsentEvent) -> str:
        return _scope(obj)


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """The fold of the ledger; `manage.py verify_consent` checks it (I4)."""

    list_display = ["recipient_code", "scope", "state", "event_id", "unit", "updated_at"]
    list_filter = ["state", "unit"]
    search_fields = ["recipient__code"]
    list_select_related = ["unit", "dm_type", "recipient"]
    show_full_result_count = False

    @admin.display(description="recipient")
    def recipient_code(self, obj: Subscription) -> str:
        return str(obj.recipient.code)

    @admin.display(description="DM type")
    def scope(self, obj: Subscription) -> str:
        return _scope(obj)


class GlobalSuppressionForm(forms.ModelForm):
    """Operations stop mail to an address from every unit, with a reason."""

    email = forms.CharField(label="Address", max_length=320)
    reason = forms.ChoiceField(
        choices=[(r.value, r.label) for r in SuppressionReason if r != SuppressionReason.ERASURE],
        help_text="Erasure is done from the recipient's page, never here.",
    )

    class Meta:
        model = Suppression
        fields = ["email", "reason", "note"]

    def clean_email(self) -> str:
        try:
            normalised = normalise_address(self.cleaned_data["email"])
        except InvalidAddress as error:
            raise forms.ValidationError(str(error)) from None
        existing = Suppression.objects.filter(
            unit__isnull=True, email_hash=address_hash(normalised)
        ).first()
        if existing is not None:
            raise forms.ValidationError(
                f"This address is already suppressed in every unit "
                f"({existing.get_reason_display().lower()})."
            )
        return normalised


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """Global suppressions are added through `suppress` and lifted through `unsuppress`, both
    audited; unit suppressions and erasure ones are only shown here."""

    form = GlobalSuppressionForm
    list_display = ["shown_address", "reason", "scope", "created_at", "created_by"]
    list_filter = ["reason", ("unit", admin.EmptyFieldListFilter)]
    search_fields = ["email", "=email_hash", "=code"]
    list_select_related = ["unit", "created_by"]

    def get_fields(self, request: HttpRequest, obj: Suppression | None = None) -> list[str]:
        if obj is None:
            return ["email", "reason", "note"]
        return ["code", "email", "email_hash", "reason", "unit", "note", "created_by", "created_at"]

    @admin.display(description="address")
    def shown_address(self, obj: Suppression) -> str:
        return obj.email or f"(hash only) {obj.email_hash[:12]}…"

    @admin.display(description="scope")
    def scope(self, obj: Suppression) -> str:
        return obj.unit.name if obj.unit_id else "every unit"

    def get_search_results(self, request, queryset, search_term):
        results, duplicates = super().get_search_results(request, queryset, search_term)
        # An address typed in finds its suppressions by hash, erased ones included.
        try:
            digest = address_hash(normalise_address(search_term))
        except InvalidAddress:
            return results, duplicates
        return results | queryset.filter(email_hash=digest), duplicates

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj: Suppression | None = None) -> bool:
        if obj is not None and (obj.unit_id is not None or obj.reason == SuppressionReason.ERASURE):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, each through unsuppress
        return actions

    def save_model(self, request, obj: Suppression, form, change: bool) -> None:
        made = suppress(
            email=form.cleaned_data["email"],
            unit=None,
            reason=SuppressionReason(form.cleaned_data["reason"]),
            note=form.cleaned_data.get("note", ""),
            by=request.user,
        )
        # The admin goes on with `obj` (log entry, redirect): make it the row just written.
        for field in Suppression._meta.concrete_fields:
            setattr(obj, field.attname, getattr(made, field.attname))
        obj._state.adding = False
        obj._state.db = made._state.db

    def delete_model(self, request, obj: Suppression) -> None:
        unsuppress(suppression=obj, by=request.user)

    def delete_queryset(self, request, queryset: QuerySet[Suppression]) -> None:
        for suppression in queryset:
            self.delete_model(request, suppression)
