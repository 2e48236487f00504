"""Routes of the two protocols, under /sso/; each answers 404 while its protocol is off.

djangosaml2's views are imported at the first SAML request: pysaml2 parses its XML schemas when
imported, which would slow the start of every process that never sees a SAML login.
"""

from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

from mlm.sso import views
from mlm.sso.views import when_enabled


def saml(name: str, *, posted_by_the_provider: bool = False):
    """djangosaml2's view `name`, only while SAML is set up."""

    @when_enabled("saml")
    def view(request, *args, **kwargs):
        from djangosaml2 import views as saml_views

        return getattr(saml_views, name).as_view()(request, *args, **kwargs)

    view.__name__ = f"saml_{name}"
    # The provider's own page posts its answer here: no CSRF token; the signature stands for it.
    return csrf_exempt(view) if posted_by_the_provider else view


oidc = when_enabled("oidc")

urlpatterns = [
    path("saml2/login/", saml("LoginView"), name="saml2_login"),
    path(
        "saml2/acs/",
        saml("AssertionConsumerServiceView", posted_by_the_provider=True),
        name="saml2_acs",
    ),
    path("saml2/ls/", saml("LogoutView", posted_by_the_provider=True), name="saml2_ls"),
    path("saml2/metadata/", saml("MetadataView"), name="saml2_metadata"),
    path(
        "oidc/authenticate/",
        oidc(OIDCAuthenticationRequestView.as_view()),
        name="oidc_authentication_init",
    ),
    path(
        "oidc/callback/",
        oidc(views.OidcCallbackView.as_view()),
        name="oidc_authentication_callback",
    ),
]
