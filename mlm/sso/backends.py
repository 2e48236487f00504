"""Authentication backends of the two protocols. Each turns what its identity provider said
into a `Person` and hands it to `sso_login`; the protocol libraries check the signatures."""

from __future__ import annotations

import jwt
import requests
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.http import HttpRequest
from djangosaml2.backends import Saml2Backend
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from mlm.sso.models import Provider
from mlm.sso.services import LoginRefused, Person, sso_login

REFUSAL_ATTRIBUTE = "mlm_sso_refusal"


def _login(request: HttpRequest, person: Person) -> AbstractBaseUser:
    try:
        return sso_login(person=person)
    except LoginRefused as refusal:
        # The views that end the protocol's flow show it (mlm.sso.views).
        setattr(request, REFUSAL_ATTRIBUTE, str(refusal))
        raise PermissionDenied(str(refusal)) from None


def _text(value: object) -> str:
    """One value of an attribute or claim, which may come as a list of values."""
    if isinstance(value, list | tuple):
        value = value[0] if value else ""
    return "" if value is None else str(value).strip()


def _values(value: object) -> frozenset[str]:
    if value is None or value == "":
        return frozenset()
    if isinstance(value, str):
        value = [value]
    return frozenset(str(item) for item in value)


class SamlBackend(Saml2Backend):
    """A login through SAML 2.0, once djangosaml2 has checked the assertion's signature."""

    def authenticate(
        self,
        request: HttpRequest | None,
        session_info: dict | None = None,
        attribute_mapping=None,
        create_unknown_user: bool = True,
        assertion_info=None,
        **kwargs,
    ) -> AbstractBaseUser | None:
        if request is None or not session_info or "ava" not in session_info:
            return None
        attributes = session_info["ava"]
        if settings.MLM_SAML_USERNAME_ATTRIBUTE:
            username = _text(attributes.get(settings.MLM_SAML_USERNAME_ATTRIBUTE))
        else:
            name_id = session_info.get("name_id")
            username = name_id.text.strip() if name_id is not None and name_id.text else ""
        person = Person(
            provider=Provider.SAML,
            subject=username,
            username=username,
            email=_text(attributes.get(settings.MLM_SAML_EMAIL_ATTRIBUTE)),
            first_name=_text(attributes.get("givenName")),
            last_name=_text(attributes.get("sn")),
            groups=_values(attributes.get(settings.MLM_SAML_GROUPS_ATTRIBUTE)),
        )
        return _login(request, person)


class OidcBackend(OIDCAuthenticationBackend):
    """A login through OpenID Connect, once mozilla-django-oidc has checked the ID token."""

    def retrieve_matching_jwk(self, token: str):
        """The provider's key that signed the ID token. A provider with a single signing key
        may leave out the key id (`kid` is optional, RFC 7515 4.1.4); then that key it is."""
        if "kid" in jwt.get_unverified_header(token):
            return super().retrieve_matching_jwk(token)
        response = requests.get(
            self.OIDC_OP_JWKS_ENDPOINT,
            verify=self.get_settings("OIDC_VERIFY_SSL", True),
            timeout=self.get_settings("OIDC_TIMEOUT", None),
        )
        response.raise_for_status()
        keys = response.json().get("keys", [])
        if len(keys) != 1:
            raise SuspiciousOperation("The ID token names no key and the provider has several.")
        return jwt.PyJWK(keys[0])

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict):
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload.get("sub"):
            # OpenID Connect Core 5.3.2: the UserInfo response must be about the same subject.
            raise SuspiciousOperation("The UserInfo subject is not the ID token's.")
        claims = {**payload, **userinfo}
        username = _text(claims.get(settings.MLM_OIDC_USERNAME_CLAIM)) or _text(claims.get("email"))
        person = Person(
            provider=Provider.OIDC,
            subject=_text(claims.get("sub")),
            username=username,
            email=_text(claims.get("email")),
            first_name=_text(claims.get("given_name")),
            last_name=_text(claims.get("family_name")),
            groups=_values(claims.get(settings.MLM_OIDC_GROUPS_CLAIM)),
        )
        return _login(self.request, person)
