"""Django admin for operations staff: units, memberships, users, the read-only audit log and
the sending domains' DKIM keys, with their DNS checks."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from mlm.logins import AdminLoginForm
from mlm.mail import dkim, sender_checks
from mlm.models import (
    AuditEntry,
    Heartbeat,
    Membership,
    MembershipSource,
    OutboxMessage,
    SenderUnit,
    SendingDomain,
)
from mlm.services import (
    audit_record,
    sending_domain_activate,
    sending_domain_create,
    sending_domain_deactivate,
    sending_domain_dns_record,
)
from mlm.two_factor import needs_second_factor

admin.site.site_header = "MLM operations"
admin.site.site_title = "MLM operations"
# The staff login's lockout, with its message (mlm.logins).
admin.site.login_form = AdminLoginForm
_admin_permission = admin.site.has_permission
# Staff that MLM_REQUIRE_2FA_FOR names reach admin only after their second factor.
admin.site.has_permission = lambda request: (
    _admin_permission(request) and not (needs_second_factor(request))
)


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
    fields = ["user", "role", "source"]
    readonly_fields = ["source"]


@admin.register(SenderUnit)
class SenderUnitAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "timezone", "default_locale", "created_at"]
    search_fields = ["name", "name_zh_hant", "name_zh_hans", "slug"]
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
        if not change:
            # As campaigns.units.unit_create does: a unit made here starts with the starter layout.
            from campaigns.services.authoring import starter_layout_create

            starter_layout_create(unit=obj, by=request.user)

    def save_formset(self, request, form, formset, change) -> None:
        for membership_form in formset.forms:
            if membership_form.has_changed():
                # An operator's hand: single sign-on leaves this membership alone from now on.
                membership_form.instance.source = MembershipSource.MANUAL
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
    list_display = ["user", "unit", "role", "source", "created_at"]
    list_filter = ["role", "source", "unit"]
    search_fields = ["user__username", "user__email", "unit__name"]
    autocomplete_fields = ["user", "unit"]
    readonly_fields = ["source"]

    def save_model(self, request, obj, form, change) -> None:
        obj.source = MembershipSource.MANUAL
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


class SendingDomainAddForm(forms.ModelForm):
    """Domain and selector only: the key pair is generated, never typed in or shown."""

    class Meta:
        model = SendingDomain
        fields = ["domain", "selector"]

    def clean_domain(self) -> str:
        return self.cleaned_data["domain"].strip().lower().rstrip(".")

    def clean_selector(self) -> str:
        return self.cleaned_data["selector"].strip().lower()

    def _post_clean(self) -> None:
        # Whether the new key signs at once is the service's decision, not a constraint error.
        self.instance.active = False
        super()._post_clean()


@admin.register(SendingDomain)
class SendingDomainAdmin(admin.ModelAdmin):
    """Operations add a key (generated here), publish the TXT record shown, then activate it."""

    list_display = ["domain", "selector", "active", "created_at", "dns_record_name"]
    list_filter = ["active"]
    search_fields = ["domain", "selector"]
    actions = ["activate", "deactivate", "check_dns"]
    shown = [
        "domain",
        "selector",
        "active",
        "created_at",
        "dns_record_name",
        "dns_record_value",
        "zone_file",
        "dns_checks",
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = SendingDomainAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None) -> list[str]:
        return ["domain", "selector"] if obj is None else self.shown

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [] if obj is None else self.shown

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a key that signed mail stays on record; deactivate it instead

    def save_model(self, request, obj, form, change) -> None:
        if change:
            return  # nothing here is edited by hand
        created = sending_domain_create(domain=obj.domain, selector=obj.selector, by=request.user)
        for field in SendingDomain._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
        if not created.active:
            self.message_user(
                request,
                f"{created.domain} already has an active key. Publish the record of "
                f"{created} in DNS, then activate it.",
                messages.WARNING,
            )

    @admin.display(description="DNS name (TXT)")
    def dns_record_name(self, obj: SendingDomain) -> str:
        return sending_domain_dns_record(obj)[0]

    @admin.display(description="DNS value (TXT)")
    def dns_record_value(self, obj: SendingDomain) -> str:
        return format_html(
            '<textarea readonly rows="4" cols="90">{}</textarea>', sending_domain_dns_record(obj)[1]
        )

    @admin.display(description="Zone file line")
    def zone_file(self, obj: SendingDomain) -> str:
        return format_html(
            '<textarea readonly rows="5" cols="90">{}</textarea>',
            dkim.zone_file_line(*sending_domain_dns_record(obj)),
        )

    @admin.display(description="DNS checks")
    def dns_checks(self, obj: SendingDomain) -> str:
        url = reverse("admin:mlm_sendingdomain_check_dns", args=[obj.pk])
        return format_html(
            '<a class="button" href="{}">Check DNS</a> SPF, DKIM, DMARC and return path, '
            "with the records to publish",
            url,
        )

    def get_urls(self):
        check = self.admin_site.admin_view(self.check_dns_view)
        return [
            path("<int:object_id>/check-dns/", check, name="mlm_sendingdomain_check_dns"),
            *super().get_urls(),
        ]

    def check_dns_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        sending_domain = get_object_or_404(SendingDomain, pk=object_id)
        return self._dns_report(request, [sending_domain])

    def _dns_report(self, request: HttpRequest, sending_domains) -> HttpResponse:
        reports = [sender_checks.sending_domain_checks(d) for d in sending_domains]
        context = {
            **self.admin_site.each_context(request),
            "title": "DNS checks",
            "opts": self.model._meta,
            "reports": reports,
        }
        return TemplateResponse(request, "admin/mlm/sendingdomain/dns_checks.html", context)

    @admin.action(description="Check DNS of the selected domains (SPF, DKIM, DMARC, return path)")
    def check_dns(self, request, queryset) -> HttpResponse:
        return self._dns_report(request, list(queryset))

    @admin.action(description="Sign with the selected key (publish its record first)")
    def activate(self, request, queryset) -> None:
        for sending_domain in queryset:
            sending_domain_activate(sending_domain=sending_domain, by=request.user)
        self.message_user(request, f"{queryset.count()} key(s) now sign their domain's mail.")

    @admin.action(description="Stop signing with the selected keys")
    def deactivate(self, request, queryset) -> None:
        for sending_domain in queryset:
            sending_domain_deactivate(sending_domain=sending_domain, by=request.user)
        self.message_user(request, f"{queryset.count()} key(s) no longer sign.")
