"""Context for the shell: the user's units (for the switcher), the current unit and its menu."""

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from mlm.models import Membership, Role
from mlm.navigation import UNIT_NAV


def shell(request: HttpRequest) -> dict:
    context = {"institution_name": settings.MLM_INSTITUTION_NAME}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        context["my_memberships"] = Membership.objects.filter(user=user).select_related("unit")
    membership = getattr(request, "membership", None)
    if membership is not None:
        unit = membership.unit
        nav = []
        for item in UNIT_NAV:
            if membership.allows(item.role):
                url = reverse(item.url_name, kwargs={"unit_slug": unit.slug})
                nav.append(
                    {"label": item.label, "url": url, "current": request.path.startswith(url)}
                )
        context.update(
            current_unit=unit,
            unit_nav=nav,
            is_unit_admin=membership.allows(Role.ADMIN),
            is_unit_editor=membership.allows(Role.EDITOR),
        )
    return context
