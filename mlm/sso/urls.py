"""Routes of the two protocols, under /sso/; each answers 404 while its protocol is off."""

from django.urls import path
from djangosaml2 import views as saml_views
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

from mlm.sso import views
from mlm.sso.views import when_enabled

saml = when_enabled("saml")
oidc = when_enabled("oidc")

urlpatterns = [
    path("saml2/login/", saml(saml_views.LoginView.as_view()), name="saml2_login"),
    path("saml2/acs/", saml(saml_views.AssertionConsumerServiceView.as_view()), name="saml2_acs"),
    path("saml2/ls/", saml(saml_views.LogoutView.as_view()), name="saml2_ls"),
    path("saml2/metadata/", saml(saml_views.MetadataView.as_view()), name="saml2_metadata"),
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
