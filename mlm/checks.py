"""System checks: every view under /units/<slug>/ goes through `unit_view` (I8)."""

from __future__ import annotations

from django.core import checks
from django.urls import URLPattern, URLResolver, get_resolver


def unit_url_patterns() -> list[tuple[str, URLPattern]]:
    """Every URL pattern below units/<unit_slug>/, with its full route."""
    found: list[tuple[str, URLPattern]] = []

    def walk(patterns, prefix: str, under_unit: bool) -> None:
        for p in patterns:
            route = prefix + str(p.pattern)
            inside = under_unit or "<slug:unit_slug>" in str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route, inside)
            elif inside:
                found.append((route, p))

    walk(get_resolver().url_patterns, "", False)
    return found


@checks.register(checks.Tags.security)
def check_unit_views_are_scoped(app_configs, **kwargs):
    errors = []
    for route, pattern in unit_url_patterns():
        if not hasattr(pattern.callback, "mlm_unit_role"):
            errors.append(
                checks.Error(
                    f"The view of /{route} is not decorated with mlm.scoping.unit_view.",
                    hint="Every page of a unit resolves the unit and the role in one place.",
                    id="mlm.E001",
                )
            )
    return errors


@checks.register(checks.Tags.security, deploy=True)
def check_site_url_is_https(app_configs, **kwargs):
    from django.conf import settings

    if not settings.SITE_URL.startswith("https://"):
        return [
            checks.Warning(
                f"SITE_URL is {settings.SITE_URL!r}: links in mails must use https in production.",
                id="mlm.W001",
            )
        ]
    return []
