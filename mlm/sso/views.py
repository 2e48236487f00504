"""The pages around the protocols' own views: the login page with its single sign-on buttons,
refusals, and a logout that also ends the identity provider's session."""

from __future__ import annotations

import logging
from functools import wraps
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCLogoutView

from mlm.login_routes import logged_in_through
from mlm.logins import LoginForm
from mlm.sso.backends import REFUSAL_ATTRIBUTE

logger = logging.getLogger(__name__)

PROTOCOL_NAMES = {"saml": "SAML 2.0", "oidc": "OpenID Connect"}
FAILED = (
    "Single sign-on did not log you in: the identity provider's answer could not be verified, "
    "or came too late. Try again; if it keeps happening, tell the identity provider's "
    "administrators."
)


def when_enabled(protocol: str):
    """The view answers only while its protocol is set up (404 otherwise)."""
    setting = {"saml": "MLM_SAML_ENABLED", "oidc": "MLM_OIDC_ENABLED"}[protocol]

    def decorate(view):
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not getattr(settings, setting):
                raise Http404(f"Single sign-on through {PROTOCOL_NAMES[protocol]} is not set up.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def saml_view(name: str, *, posted_by_the_provider: bool = False):
    """djangosaml2's view `name`, while SAML is set up; an identity provider whose metadata
    cannot be read is a 503 that says so.

    djangosaml2's views are imported at the first SAML request: pysaml2 parses its XML schemas
    when imported, which would slow the start of every process that never sees a SAML login.
    """

    @when_enabled("saml")
    def view(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        from djangosaml2 import views as saml_views
        from saml2.httpbase import ConnectionError as HTTPConnectionError
        from saml2.mdstore import SourceNotFound

        try:
            return getattr(saml_views, name).as_view()(request, *args, **kwargs)
        except (SourceNotFound, HTTPConnectionError, requests.RequestException):
            logger.warning("SAML identity provider's metadata unreachable", exc_info=True)
            reason = (
                "The identity provider could not be reached (its metadata could not be read). "
                "Try again in a moment; operations staff can still log in with a password."
            )
            return render(request, "sso/failure.html", {"reason": reason}, status=503)

    view.__name__ = f"saml_{name}"
    # The provider's own page posts its answer here: no CSRF token; the signature stands for it.
    return csrf_exempt(view) if posted_by_the_provider else view


class LoginView(auth_views.LoginView):
    """The staff login page: single sign-on first where it is set up, then the password form
    (for everyone, or for operations staff only with MLM_LOCAL_LOGIN_STAFF_ONLY)."""

    authentication_form = LoginForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(
            sso_saml=settings.MLM_SAML_ENABLED,
            sso_oidc=settings.MLM_OIDC_ENABLED,
            local_login_staff_only=settings.MLM_LOCAL_LOGIN_STAFF_ONLY,
        )
        return context


def saml_failure(
    request: HttpRequest, exception: Exception | None = None, status: int = 403, **kwargs
) -> HttpResponse:
    """djangosaml2's answer to an assertion it refused (bad signature, unsolicited, expired) or
    to a person MLM refused: a page that says which, never a 500."""
    reason = getattr(request, REFUSAL_ATTRIBUTE, None) or FAILED
    return render(request, "sso/failure.html", {"reason": reason}, status=status)


class OidcCallbackView(OIDCAuthenticationCallbackView):
    """The OpenID Connect callback, whose failures say why on the login page."""

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            return super().get(request)
        except requests.RequestException:
            logger.warning("OpenID Connect provider unreachable", exc_info=True)
            messages.error(
                request,
                "The identity provider could not be reached to finish your login. Try again in "
                "a moment.",
            )
            return HttpResponseRedirect(reverse("login"))

    def login_failure(self) -> HttpResponse:
        reason = getattr(self.request, REFUSAL_ATTRIBUTE, None)
        if reason is None and self.request.GET.get("error"):
            reason = "The identity provider did not log you in ({}).".format(
                self.request.GET.get("error_description") or self.request.GET["error"]
            )
        messages.error(self.request, reason or FAILED)
        return HttpResponseRedirect(reverse("login"))


def oidc_logout_url(request: HttpRequest) -> str:
    """Where an OpenID Connect session ends: the provider's end-session endpoint (RP-initiated
    logout), which sends the browser back to the login page; without one, the login page."""
    back = request.build_absolute_uri(reverse(settings.LOGOUT_REDIRECT_URL))
    endpoint = settings.OIDC_OP_LOGOUT_ENDPOINT
    if not endpoint:
        return back
    params = {"client_id": settings.OIDC_RP_CLIENT_ID, "post_logout_redirect_uri": back}
    if id_token := request.session.get("oidc_id_token"):
        params["id_token_hint"] = id_token
    return f"{endpoint}?{urlencode(params)}"


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    """Log out; a session an identity provider opened is ended there too (single logout)."""
    through = logged_in_through(request)
    if through == "saml" and settings.MLM_SAML_ENABLED:
        from djangosaml2.views import LogoutInitView  # see mlm.sso.urls: a slow import

        view = LogoutInitView()
        view.setup(request)
        return _leave_for_the_provider(request, view.get(request))
    if through == "oidc" and settings.MLM_OIDC_ENABLED:
        return _leave_for_the_provider(request, OIDCLogoutView.as_view()(request))
    return auth_views.LogoutView.as_view()(request)


def _leave_for_the_provider(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """A redirect to the identity provider, as a page that goes there. Our CSP's form-action
    'self' would stop the logout form's redirect to another site; a page that navigates is not
    a form."""
    if not isinstance(response, HttpResponseRedirect) or response.url.startswith("/"):
        return response
    return render(request, "sso/leaving.html", {"url": response.url})
