"""System checks: every view under /units/<slug>/ goes through `unit_view` (I8); the mail
backends load."""

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


@checks.register()
def check_mail_backends_import(app_configs, **kwargs):
    """Every backend a unit may choose can be loaded: a missing ESP library shows at deploy, not
    as deferred mail."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    errors = []
    backends = {"EMAIL_BACKEND": settings.EMAIL_BACKEND, **settings.MLM_MAIL_BACKENDS}
    for name, path in backends.items():
        try:
            import_string(path)
        except ImportError as error:
            errors.append(
                checks.Error(
                    f"The mail backend {name} ({path}) cannot be loaded: {error}",
                    hint="Install what it needs (e.g. `pip install django-anymail[amazon-ses]` "
                    "for amazon_ses) or remove it from MLM_MAIL_BACKENDS.",
                    id="mlm.E002",
                )
            )
    return errors


# What each ESP's tracking webhook needs before it accepts a call (campaigns.webhooks).
_WEBHOOK_KEYS = {
    "amazon_ses": ("ANYMAIL_WEBHOOK_SECRET", "ANYMAIL_WEBHOOK_SECRET"),
    "sendgrid": ("ANYMAIL_WEBHOOK_SECRET", "ANYMAIL_WEBHOOK_SECRET"),
    "postmark": ("ANYMAIL_WEBHOOK_SECRET", "ANYMAIL_WEBHOOK_SECRET"),
    "mailgun": ("ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY", "MAILGUN_WEBHOOK_SIGNING_KEY"),
}


@checks.register()
def check_enabled_providers_can_report_back(app_configs, **kwargs):
    """An ESP we send through without its webhook key would refuse every bounce and complaint
    it reports: say so at deploy, not when a complaint is lost."""
    from django.conf import settings

    backends = [settings.EMAIL_BACKEND, *settings.MLM_MAIL_BACKENDS.values()]
    warnings = []
    for esp, (setting, variable) in _WEBHOOK_KEYS.items():
        if any(f"anymail.backends.{esp}." in path for path in backends) and not getattr(
            settings, setting, None
        ):
            warnings.append(
                checks.Warning(
                    f"Mail is sent through {esp}, but its tracking webhook has no key: every "
                    "bounce and complaint it reports would be refused (403).",
                    hint=f"Set {variable} (see the README's configuration table).",
                    id="mlm.W003",
                )
            )
    return warnings
