"""Segment pages of a unit: the list, the builder with its live count, deletion."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from mlm.forms import bound, submit
from mlm.models import Role
from mlm.scoping import UnitRequest, unit_view
from recipients import segment_services as services
from recipients import selectors
from recipients.models import Segment
from recipients.segment_forms import (
    FIELD_CHOICES,
    MATCH_CHOICES,
    OPERATOR_CHOICES,
    SegmentForm,
    builder_rows,
    conditions_from_post,
)
from recipients.segments import EMPTY, describe, validate_conditions


def _segment(request: UnitRequest, code: UUID) -> Segment:
    return get_object_or_404(Segment.objects.for_unit(request.unit), code=code)


@unit_view(Role.VIEWER)
def segment_list(request: UnitRequest) -> HttpResponse:
    segments = Segment.objects.for_unit(request.unit).prefetch_related("lists")
    rows = [(segment, describe(segment.conditions)) for segment in segments]
    return render(request, "recipients/segment_list.html", {"rows": rows})


def _save(request: UnitRequest, segment: Segment | None, data: dict, conditions: dict) -> Segment:
    fields = {"name": data["name"], "lists": data["lists"], "conditions": conditions}
    if segment is None:
        return services.segment_create(unit=request.unit, by=request.user, **fields)
    return services.segment_update(segment=segment, by=request.user, **fields)


def _builder(request: UnitRequest, segment: Segment | None) -> HttpResponse:
    """Draw the builder; save on a plain POST, apply an add/remove button's change otherwise."""
    initial = SegmentForm.initial_for(segment) if segment else {}
    form = bound(SegmentForm, request, initial=initial, unit=request.unit)
    conditions = segment.conditions if segment else dict(EMPTY)
    if request.method == "POST":
        conditions = conditions_from_post(request.POST)
        if not request.POST.get("action"):
            saved = submit(form, lambda data: _save(request, segment, data, conditions))
            if saved is not None:
                messages.success(request, f"Segment “{saved.name}” saved.")
                return redirect("segment_edit", request.unit.slug, saved.code)
    context: dict[str, Any] = {
        "segment": segment,
        "form": form,
        "groups": builder_rows(conditions),
        "match": conditions.get("match", "all"),
        "match_choices": MATCH_CHOICES,
        "field_choices": FIELD_CHOICES,
        "operator_choices": OPERATOR_CHOICES,
        "attributes": selectors.attribute_keys(request.unit),
    }
    return render(request, "recipients/segment_form.html", context)


@unit_view(Role.EDITOR)
def segment_create(request: UnitRequest) -> HttpResponse:
    return _builder(request, None)


@unit_view(Role.EDITOR)
def segment_edit(request: UnitRequest, segment_code: UUID) -> HttpResponse:
    return _builder(request, _segment(request, segment_code))


@unit_view(Role.EDITOR)
@require_POST
def segment_count(request: UnitRequest) -> HttpResponse:
    """The builder's live count: members of the unsaved segment, and who would receive a mail
    of the chosen DM type; or what is wrong with the conditions."""
    form = SegmentForm(request.POST, unit=request.unit)
    form.is_valid()
    data = getattr(form, "cleaned_data", {})
    context: dict[str, Any] = {"problem": "", "count": None}
    try:
        lists = list(data.get("lists") or [])
        audience = services.segment_audience(unit=request.unit, lists=lists)
        conditions = validate_conditions(conditions_from_post(request.POST))
    except ValidationError as error:
        context["problem"] = " ".join(error.messages)
    else:
        context["count"] = selectors.segment_count(
            unit=request.unit,
            audience=audience,
            lists=lists,
            conditions=conditions,
            dm_type=data.get("dm_type"),
        )
        context["description"] = describe(conditions)
    return render(request, "recipients/_segment_count.html", context)


@unit_view(Role.EDITOR)
@require_POST
def segment_delete(request: UnitRequest, segment_code: UUID) -> HttpResponse:
    segment = _segment(request, segment_code)
    try:
        services.segment_delete(segment=segment, by=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("segment_edit", request.unit.slug, segment.code)
    messages.success(request, f"Segment “{segment.name}” deleted.")
    return redirect("segments", request.unit.slug)
