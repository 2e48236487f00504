"""The unit's campaign setup pages: layouts, the campaign settings and From addresses. HTTP
only: the services decide."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from campaigns import selectors
from campaigns.forms import IdentityRequestForm, LayoutForm, UnitSettingsForm
from campaigns.models import Layout, SenderIdentity
from campaigns.services import authoring
from campaigns.services.settings import unit_settings_update
from mlm.forms import bound, submit
from mlm.models import Role
from mlm.scoping import UnitRequest, unit_view


def _layout(request: UnitRequest, code: UUID) -> Layout:
    return get_object_or_404(Layout.objects.for_unit(request.unit), code=code)


# Layouts ---------------------------------------------------------------------------------------


@unit_view(Role.VIEWER)
def layout_list(request: UnitRequest) -> HttpResponse:
    layouts = Layout.objects.for_unit(request.unit)
    return render(request, "campaigns/layout_list.html", {"layouts": layouts})


@unit_view(Role.EDITOR)
def layout_create(request: UnitRequest) -> HttpResponse:
    form = bound(LayoutForm, request)
    created = submit(
        form, lambda data: authoring.layout_create(unit=request.unit, by=request.user, **data)
    )
    if created is not None:
        messages.success(request, f"Layout “{created.name}” saved.")
        return redirect("layouts", request.unit.slug)
    return render(request, "campaigns/layout_form.html", {"form": form, "layout": None})


@unit_view(Role.EDITOR)
def layout_edit(request: UnitRequest, layout_code: UUID) -> HttpResponse:
    layout = _layout(request, layout_code)
    form = bound(LayoutForm, request, initial={"name": layout.name, "html": layout.html})
    updated = submit(
        form, lambda data: authoring.layout_update(layout=layout, by=request.user, **data)
    )
    if updated is not None:
        messages.success(request, f"Layout “{updated.name}” saved.")
        return redirect("layouts", request.unit.slug)
    return render(request, "campaigns/layout_form.html", {"form": form, "layout": layout})


# Settings --------------------------------------------------------------------------------------


@unit_view(Role.ADMIN)
def unit_settings(request: UnitRequest) -> HttpResponse:
    current = selectors.unit_settings(request.unit)
    initial = {
        "allow_self_approval": current.allow_self_approval,
        "tracking_enabled": current.tracking_enabled,
        "web_version_enabled": current.web_version_enabled,
        "frequency_cap_mails": current.frequency_cap_mails,
        "frequency_cap_days": current.frequency_cap_days,
        "banned_words": current.banned_words,
        "mail_backend": current.mail_backend,
        "complaint_rate_limit": current.complaint_rate_limit,
        "hard_bounce_rate_limit": current.hard_bounce_rate_limit,
    }
    form = bound(UnitSettingsForm, request, initial=initial)
    saved = submit(
        form,
        lambda data: unit_settings_update(unit=request.unit, by=request.user, **data),
    )
    if saved is not None:
        messages.success(request, "Campaign settings saved.")
        return redirect("campaign_settings", request.unit.slug)
    caps = selectors.frequency_caps(request.unit)
    context = {
        "form": form,
        "institution_cap": [c for c in caps if c.scope == "institution"],
        "identities": SenderIdentity.objects.for_unit(request.unit),
    }
    return render(request, "campaigns/settings.html", context)


@unit_view(Role.ADMIN)
def identity_request(request: UnitRequest) -> HttpResponse:
    form = bound(IdentityRequestForm, request)
    identity = submit(
        form, lambda data: authoring.identity_request(unit=request.unit, by=request.user, **data)
    )
    if identity is not None:
        if identity.pending_reason:
            messages.warning(
                request,
                f"{identity.email} waits for operations to approve it: {identity.pending_reason}",
            )
        else:
            messages.success(request, f"{identity.email} is ready: campaigns can use it now.")
        return redirect("campaign_settings", request.unit.slug)
    return render(request, "campaigns/identity_form.html", {"form": form})
