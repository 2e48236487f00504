"""Routes of the two protocols, under /sso/; each answers 404 while its protocol is off."""

from django.urls import path
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

from mlm.sso import views
from mlm.sso.views import saml_view as saml
from mlm.sso.views import when_enabled

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
