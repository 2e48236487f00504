"""The endpoints page of a unit (administrators): add, rotate a secret, pause, resume, delete,
and what was delivered. A secret is shown once, in the answer to the POST that made it."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from mlm.forms import bound, submit
from mlm.models import Role
from mlm.scoping import UnitRequest, unit_view
from outbound import selectors, services
from outbound.forms import EndpointForm
from outbound.models import Endpoint


def _page(request: UnitRequest, form: EndpointForm, **extra):
    context = {
        "form": form,
        "endpoints": Endpoint.objects.for_unit(request.unit),
        "failed": selectors.failed_events(request.unit),
        "recent": selectors.recent_events(request.unit),
        **extra,
    }
    return render(request, "outbound/endpoints.html", context)


def _endpoint(request: UnitRequest, endpoint_code: UUID) -> Endpoint:
    return get_object_or_404(Endpoint.objects.for_unit(request.unit), code=endpoint_code)


@unit_view(Role.ADMIN)
def endpoint_list(request: UnitRequest):
    form = bound(EndpointForm, request)
    made = submit(
        form,
        lambda data: services.endpoint_create(unit=request.unit, by=request.user, **data),
    )
    if made is not None:
        endpoint, secret = made
        return _page(request, EndpointForm(), secret=secret, secret_for=endpoint)
    return _page(request, form)


@unit_view(Role.ADMIN)
@require_POST
def endpoint_rotate(request: UnitRequest, endpoint_code: UUID):
    endpoint = _endpoint(request, endpoint_code)
    secret = services.endpoint_rotate_secret(endpoint=endpoint, by=request.user)
    return _page(request, EndpointForm(), secret=secret, secret_for=endpoint, rotated=True)


@unit_view(Role.ADMIN)
@require_POST
def endpoint_pause(request: UnitRequest, endpoint_code: UUID):
    endpoint = _endpoint(request, endpoint_code)
    services.endpoint_pause(endpoint=endpoint, reason="Paused by hand.", by=request.user)
    messages.success(request, f"Paused {endpoint.url}: its events wait until you resume it.")
    return redirect("endpoints", request.unit.slug)


@unit_view(Role.ADMIN)
@require_POST
def endpoint_resume(request: UnitRequest, endpoint_code: UUID):
    endpoint = _endpoint(request, endpoint_code)
    services.endpoint_resume(endpoint=endpoint, by=request.user)
    messages.success(request, f"Resumed {endpoint.url}: its waiting events go now.")
    return redirect("endpoints", request.unit.slug)


@unit_view(Role.ADMIN)
@require_POST
def endpoint_delete(request: UnitRequest, endpoint_code: UUID):
    endpoint = _endpoint(request, endpoint_code)
    services.endpoint_delete(endpoint=endpoint, by=request.user)
    messages.success(request, f"Deleted {endpoint.url} and the events it was owed.")
    return redirect("endpoints", request.unit.slug)
