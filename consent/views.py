"""DM type pages of a unit: list, create, read with notice history, edit, archive."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.db.models import F, Max
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from consent import services
from consent.forms import DMTypeCreateForm, DMTypeEditForm
from consent.models import DMType
from mlm.forms import bound, submit
from mlm.models import Role
from mlm.scoping import UnitRequest, unit_view


def _dm_type(request: UnitRequest, code: UUID) -> DMType:
    return get_object_or_404(DMType.objects.for_unit(request.unit), code=code)


@unit_view(Role.VIEWER)
def dm_type_list(request: UnitRequest) -> HttpResponse:
    dm_types = (
        DMType.objects.for_unit(request.unit)
        .annotate(notice_version=Max("notices__version"))
        .order_by(F("archived_at").asc(nulls_first=True), "name")
    )
    return render(request, "consent/dm_type_list.html", {"dm_types": dm_types})


@unit_view(Role.ADMIN)
def dm_type_create(request: UnitRequest) -> HttpResponse:
    form = bound(DMTypeCreateForm, request)
    dm_type = submit(
        form, lambda data: services.dm_type_create(unit=request.unit, by=request.user, **data)
    )
    if dm_type is not None:
        messages.success(request, f"DM type “{dm_type.name}” created with notice version 1.")
        return redirect("dm_type_detail", request.unit.slug, dm_type.code)
    return render(request, "consent/dm_type_form.html", {"form": form})


@unit_view(Role.VIEWER)
def dm_type_detail(request: UnitRequest, dm_type_code: UUID) -> HttpResponse:
    dm_type = _dm_type(request, dm_type_code)
    notices = dm_type.notices.select_related("created_by").order_by("-version")
    return render(request, "consent/dm_type_detail.html", {"dm_type": dm_type, "notices": notices})


@unit_view(Role.ADMIN)
def dm_type_edit(request: UnitRequest, dm_type_code: UUID) -> HttpResponse:
    dm_type = _dm_type(request, dm_type_code)
    notice = dm_type.current_notice
    initial = {
        "name": dm_type.name,
        "name_zh_hant": dm_type.name_zh_hant,
        "name_zh_hans": dm_type.name_zh_hans,
        "internal_default": dm_type.internal_default,
        "notice_text": notice.text if notice else "",
        "notice_text_zh_hant": notice.text_zh_hant if notice else "",
        "notice_text_zh_hans": notice.text_zh_hans if notice else "",
    }
    form = bound(DMTypeEditForm, request, initial=initial)
    if submit(form, lambda data: services.dm_type_update(dm_type=dm_type, by=request.user, **data)):
        messages.success(request, f"DM type “{form.cleaned_data['name']}” saved.")
        return redirect("dm_type_detail", request.unit.slug, dm_type.code)
    return render(request, "consent/dm_type_form.html", {"form": form, "dm_type": dm_type})


@unit_view(Role.ADMIN)
def dm_type_archive(request: UnitRequest, dm_type_code: UUID) -> HttpResponse:
    dm_type = _dm_type(request, dm_type_code)
    if request.method != "POST":
        return render(request, "consent/dm_type_archive.html", {"dm_type": dm_type})
    if services.dm_type_archive(dm_type=dm_type, by=request.user):
        messages.success(request, f"DM type “{dm_type.name}” archived. Its consent history stays.")
    else:
        messages.info(request, f"DM type “{dm_type.name}” was already archived.")
    return redirect("dm_type_detail", request.unit.slug, dm_type.code)
