"""The unit's API keys page: list, create (the secret shown once) and revoke. Admins only."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from api import services
from api.key_forms import ApiKeyCreateForm
from api.models import ApiKey
from mlm.forms import bound, submit
from mlm.models import Role
from mlm.scoping import UnitRequest, unit_view


@unit_view(Role.ADMIN)
def api_key_list(request: UnitRequest) -> HttpResponse:
    form = bound(ApiKeyCreateForm, request)
    made = submit(
        form, lambda data: services.api_key_create(unit=request.unit, by=request.user, **data)
    )
    context = {"form": form, "now": timezone.now()}
    if made is not None:
        key, secret = made
        # Rendered, not redirected: the secret is in this one response and nowhere else.
        context["new_key"], context["secret"] = key, secret
        form = ApiKeyCreateForm()
        context["form"] = form
    context["keys"] = ApiKey.objects.for_unit(request.unit).select_related("created_by")
    response = render(request, "api/key_list.html", context)
    response["Cache-Control"] = "no-store"
    return response


@unit_view(Role.ADMIN)
@require_POST
def api_key_revoke(request: UnitRequest, api_key_code: UUID) -> HttpResponse:
    key = get_object_or_404(ApiKey.objects.for_unit(request.unit), code=api_key_code)
    if services.api_key_revoke(key=key, by=request.user):
        messages.success(request, f"Key {key.prefix}… revoked: it no longer works.")
    else:
        messages.info(request, f"Key {key.prefix}… was already revoked.")
    return redirect("api_keys", request.unit.slug)
