"""Which way a session logged in: through an identity provider (mlm.sso), or with a password.
The login and second-factor pages ask it, below single sign-on."""

from __future__ import annotations

from django.contrib.auth import BACKEND_SESSION_KEY
from django.http import HttpRequest

BACKENDS = {"mlm.sso.backends.SamlBackend": "saml", "mlm.sso.backends.OidcBackend": "oidc"}


def logged_in_through(request: HttpRequest) -> str | None:
    """ "saml" or "oidc" for a session an identity provider opened, else None."""
    session = getattr(request, "session", None)
    if session is None:
        return None
    return BACKENDS.get(session.get(BACKEND_SESSION_KEY, ""))
