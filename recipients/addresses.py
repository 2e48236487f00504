"""Mail addresses: one normal form, one identity, and a keyed hash of that identity.

The normal form is what we show and send to: the local part as written, the domain IDNA-encoded
and lower-cased. The identity is the normal form in lower case, local part included: mailbox
providers treat the local part without regard to case, so every refusal (suppression, erasure,
withdrawal) and every "already a recipient" check covers all case variants of an address.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from email_validator import EmailNotValidError, validate_email


class InvalidAddress(ValueError):
    """The text is not a mail address we can send to; the message says why."""


def normalise_address(raw: str) -> str:
    """Unicode domains IDNA-encoded, domain lower-cased, local part kept as written."""
    text = (raw or "").strip()
    if not text:
        raise InvalidAddress("The address is empty.")
    try:
        # No DNS lookups: imports must not depend on the network, and tests run offline.
        result = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as error:
        raise InvalidAddress(f"{text!r} is not a valid address: {error}") from None
    domain = (result.ascii_domain or result.domain).lower()
    return f"{result.local_part}@{domain}"


def address_key(normalised: str) -> str:
    """The identity of a normalised address: all of it in lower case (see the module's text)."""
    return normalised.lower()


class AddressHasher:
    """The keyed SHA-256 (HMAC) of addresses' identities, with the key's states computed once.

    hmac.digest sets the key up on every call; an import hashes a million addresses, so the
    inner and outer SHA-256 states are prepared once and copied (RFC 2104, same result).
    """

    def __init__(self) -> None:
        key = settings.MLM_ADDRESS_HASH_KEY.encode()
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def __call__(self, normalised: str) -> str:
        """The hash of the address's identity: every case variant gets the same."""
        return self.digest(address_key(normalised))

    def digest(self, text: str) -> str:
        inner = self._inner.copy()
        inner.update(text.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def address_hash(normalised: str) -> str:
    """Keyed SHA-256 of an address's identity: matches every case variant without keeping it."""
    return AddressHasher()(normalised)


def case_sensitive_hash(normalised: str) -> str:
    """The hash as it was made before addresses matched in any case (the local part as written).

    Only for suppressions kept as a hash alone from before then (Suppression.case_sensitive):
    their address is gone, so they cannot be re-hashed, and they are matched by this too.
    """
    return AddressHasher().digest(normalised)


def domain_of(normalised: str) -> str:
    return normalised.rsplit("@", 1)[1]


def is_internal_address(normalised: str) -> bool:
    """True for addresses of MLM_INTERNAL_DOMAINS or their subdomains."""
    domain = domain_of(normalised)
    return any(domain == d or domain.endswith("." + d) for d in settings.MLM_INTERNAL_DOMAINS)
