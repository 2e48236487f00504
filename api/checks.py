"""System check: every view under /api/v1/ resolves its unit through api.scoping (I8)."""

from __future__ import annotations

from django.core import checks
from django.urls import URLPattern, URLResolver, get_resolver

API_PREFIX = "api/v1/"


def api_url_patterns() -> list[tuple[str, URLPattern]]:
    """Every URL pattern of the versioned API, with its full route."""
    found: list[tuple[str, URLPattern]] = []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            route = prefix + str(p.pattern).lstrip("^")
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif route.startswith(API_PREFIX):
                found.append((route, p))

    walk(get_resolver().url_patterns, "")
    return found


@checks.register(checks.Tags.security)
def check_api_views_are_scoped(app_configs, **kwargs):
    from api.scoping import UnitScopedMixin

    errors = []
    for route, pattern in api_url_patterns():
        view_class = getattr(pattern.callback, "cls", None)
        if view_class is None or not issubclass(view_class, UnitScopedMixin):
            errors.append(
                checks.Error(
                    f"The view of /{route} does not derive from api.scoping.UnitScopedMixin.",
                    hint="Every API view takes its unit from the key, in one place.",
                    id="api.E001",
                )
            )
    return errors
