"""The one place where a unit page resolves its unit and checks membership and role (I8)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone

from mlm.models import Membership, Role, SenderUnit
from mlm.two_factor import needs_second_factor


def require_role(unit: SenderUnit, user: AbstractBaseUser | None, role: Role) -> None:
    """Raise PermissionDenied unless `user` holds at least `role` in `unit`.

    `user` None is the system (beat, dispatch), which may do anything a service allows.
    """
    if user is None:
        return
    membership = Membership.objects.filter(unit=unit, user=user).first()
    if membership is None or not membership.allows(role):
        raise PermissionDenied(f"This needs the {Role(role).label.lower()} role in {unit.name}.")


class UnitRequest(HttpRequest):
    """An HttpRequest on a unit page: `unit` and `membership` are set by `unit_view`."""

    unit: SenderUnit
    membership: Membership


def unit_view(role: Role = Role.VIEWER) -> Callable:
    """Decorate a view under /units/<slug>/: non-members get 404, members below `role` get 403.

    The decorated view receives the request with `request.unit` and `request.membership` set and
    no `unit_slug` argument; it renders in the unit's time zone.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, unit_slug: str, *args, **kwargs) -> HttpResponse:
            membership = (
                Membership.objects.select_related("unit")
                .filter(unit__slug=unit_slug, user=request.user)
                .first()
            )
            if membership is None:
                raise Http404("No such unit.")
            if not membership.allows(role):
                raise PermissionDenied(
                    f"This needs the {Role(role).label.lower()} role in {membership.unit.name}."
                )
            if needs_second_factor(request):
                return redirect_to_login(request.get_full_path(), reverse("two_factor"))
            request.unit = membership.unit
            request.membership = membership
            with timezone.override(membership.unit.tzinfo):
                return view(request, *args, **kwargs)

        guarded = login_required(wrapper)
        guarded.mlm_unit_role = Role(
            role
        )  # read by the system check that every unit URL is guarded
        return guarded

    return decorator
