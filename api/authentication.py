"""`Authorization: Bearer <key>`: the request's key in `request.auth`, its unit the scope."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from api.models import ApiKey
from api.services import api_key_for_secret


class ApiKeyAuthentication(BaseAuthentication):
    """A key of a unit; unknown, revoked and expired keys all get the same 401."""

    def authenticate(self, request: Request) -> tuple[AnonymousUser, ApiKey] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != b"bearer" or len(header) != 2:
            raise AuthenticationFailed(
                "Send the key as `Authorization: Bearer <key>` (one space, no quotes)."
            )
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("The key is not valid.") from None
        key = api_key_for_secret(secret)
        if key is None:
            raise AuthenticationFailed("The key is not valid: unknown, revoked or expired.")
        # No user: a call acts for its key; services get actor None and the key as the label.
        return (AnonymousUser(), key)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
