"""Signed tokens in recipients' links: unsubscribe, one-click (RFC 8058), preference centre,
the double opt-in confirmation (I5), and a mail's web version.

A recipient token names the recipient and, for a link in a campaign's mail, the DM type of that
mail and the campaign. It is the URL-safe base64 (no padding) of

    version byte | recipient code (16) | [DM type code (16)] | [campaign code (16)] | MAC (16)

where the version byte's low bits say which optional codes follow and the MAC is the first 16
bytes of HMAC-SHA256 under a key derived from SECRET_KEY with this module's own salt
(`django.utils.crypto.salted_hmac`). Hence:

- it reveals no address (only random UUID codes) and cannot be forged or enumerated (128-bit
  MAC over random 128-bit codes);
- it never expires: links in mails must work for years (UEMO, CAN-SPAM ask for 30 days at
  least). After a rotation of SECRET_KEY, keys in SECRET_KEY_FALLBACKS still verify;
- it carries the DM type's own code, so a link still names what to withdraw after the campaign
  is deleted;
- it is short: 44 characters for a recipient alone, 87 with DM type and campaign, so that
  List-Unsubscribe headers stay small.

A web version token has the same form under its own salt: version byte | recipient code |
campaign code | MAC (66 characters), naming one delivery and nothing else.

We sign a compact binary payload rather than `django.core.signing.dumps` (JSON and a 43-character
signature: twice as long) but keep Django's key derivation, salt and key-fallback machinery.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from uuid import UUID

from django.conf import settings
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac

RECIPIENT_SALT = "mlm.consent.tokens.recipient"
SUBSCRIPTION_SALT = "mlm.consent.tokens.subscription-request"
WEB_VERSION_SALT = "mlm.consent.tokens.web-version"

_VERSION = 0x10
_HAS_DM_TYPE = 0x01
_HAS_CAMPAIGN = 0x02
_MAC_BYTES = 16
_UUID_BYTES = 16
_ALPHABET = re.compile(r"[A-Za-z0-9_-]{20,120}")


@dataclass(frozen=True)
class TokenData:
    """What a recipient token names; codes only, never an address."""

    recipient_code: UUID
    dm_type_code: UUID | None = None
    campaign_code: UUID | None = None


def _keys() -> list[str]:
    return [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]


def _mac(salt: str, payload: bytes, key: str) -> bytes:
    return salted_hmac(salt, payload, secret=key, algorithm="sha256").digest()[:_MAC_BYTES]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str) -> bytes | None:
    if not isinstance(token, str) or not _ALPHABET.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    # Refuse non-canonical spellings (other unused low bits in the last character): exactly one
    # text per token, so a changed character is always a different, invalid token.
    return raw if _encode(raw) == token else None


def _sign(salt: str, payload: bytes) -> str:
    return _encode(payload + _mac(salt, payload, settings.SECRET_KEY))


def _verified_payload(salt: str, token: str) -> bytes | None:
    raw = _decode(token)
    if raw is None or len(raw) <= _MAC_BYTES:
        return None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    for key in _keys():
        if constant_time_compare(_mac(salt, payload, key), mac):
            return payload
    return None


def _code(value: object) -> UUID:
    """A UUID from a UUID or from an object with a `code` (recipient, DM type, campaign)."""
    code = value if isinstance(value, UUID) else getattr(value, "code", value)
    return code if isinstance(code, UUID) else UUID(str(code))


def make_recipient_token(
    *, recipient: object, dm_type: object | None = None, campaign_code: object | None = None
) -> str:
    """A token for `recipient` (a Recipient or its code), optionally naming a DM type and a
    campaign (objects with a `code`, or UUIDs)."""
    flags = _VERSION
    payload = _code(recipient).bytes
    if dm_type is not None:
        flags |= _HAS_DM_TYPE
        payload += _code(dm_type).bytes
    if campaign_code is not None:
        flags |= _HAS_CAMPAIGN
        payload += _code(campaign_code).bytes
    return _sign(RECIPIENT_SALT, bytes([flags]) + payload)


def read_recipient_token(token: str) -> TokenData | None:
    """What a genuine token names, or None for anything we did not sign (never raises)."""
    payload = _verified_payload(RECIPIENT_SALT, token)
    if not payload or payload[0] & 0xF0 != _VERSION:
        return None
    flags = payload[0]
    expected = 1 + _UUID_BYTES * (1 + bool(flags & _HAS_DM_TYPE) + bool(flags & _HAS_CAMPAIGN))
    if len(payload) != expected or flags & ~(_VERSION | _HAS_DM_TYPE | _HAS_CAMPAIGN):
        return None
    codes = [UUID(bytes=payload[i : i + _UUID_BYTES]) for i in range(1, len(payload), _UUID_BYTES)]
    recipient_code = codes.pop(0)
    dm_type_code = codes.pop(0) if flags & _HAS_DM_TYPE else None
    campaign_code = codes.pop(0) if flags & _HAS_CAMPAIGN else None
    return TokenData(recipient_code, dm_type_code, campaign_code)


def make_subscription_token(*, request_code: UUID) -> str:
    """The token of a double opt-in confirmation link (its own salt: not a recipient token)."""
    return _sign(SUBSCRIPTION_SALT, bytes([_VERSION]) + request_code.bytes)


def read_subscription_token(token: str) -> UUID | None:
    """The subscription request's code named by a genuine confirmation token, else None."""
    payload = _verified_payload(SUBSCRIPTION_SALT, token)
    if payload is None or len(payload) != 1 + _UUID_BYTES or payload[0] != _VERSION:
        return None
    return UUID(bytes=payload[1:])


@dataclass(frozen=True)
class WebVersionData:
    """What a web version token names: one delivery, by its recipient's and campaign's codes
    (a campaign has one delivery per recipient, I7)."""

    recipient_code: UUID
    campaign_code: UUID


def make_web_version_token(*, recipient: object, campaign_code: object) -> str:
    """The token of a mail's "view in your browser" link (its own salt: it opens no consent
    page, and a recipient token opens no web version)."""
    payload = bytes([_VERSION]) + _code(recipient).bytes + _code(campaign_code).bytes
    return _sign(WEB_VERSION_SALT, payload)


def read_web_version_token(token: str) -> WebVersionData | None:
    """The delivery a genuine web version token names, else None (never raises)."""
    payload = _verified_payload(WEB_VERSION_SALT, token)
    if payload is None or len(payload) != 1 + 2 * _UUID_BYTES or payload[0] != _VERSION:
        return None
    return WebVersionData(
        UUID(bytes=payload[1 : 1 + _UUID_BYTES]), UUID(bytes=payload[1 + _UUID_BYTES :])
    )


def public_link(name: str, token: str) -> str:
    """The absolute link to the public page `name` for `token`: the one place recipients' links
    are made (campaigns.mail.LinkMaker resolves each page once per campaign through it)."""
    return settings.SITE_URL + reverse(name, kwargs={"token": token})


def subscription_confirm_url(*, request_code: UUID) -> str:
    """The absolute confirmation link of a double opt-in request."""
    return public_link(
        "public_subscribe_confirm", make_subscription_token(request_code=request_code)
    )
