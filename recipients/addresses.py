"""Mail addresses: one normal form (I1 matching, uniqueness) and a keyed hash (suppression, I9)."""

from __future__ import annotations

import hashlib
import hmac

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


def address_hash(normalised: str) -> str:
    """Keyed SHA-256 of a normalised address: matches without keeping the address."""
    key = settings.MLM_ADDRESS_HASH_KEY.encode()
    return hmac.new(key, normalised.encode(), hashlib.sha256).hexdigest()


def domain_of(normalised: str) -> str:
    return normalised.rsplit("@", 1)[1]


def is_internal_address(normalised: str) -> bool:
    """True for addresses of MLM_INTERNAL_DOMAINS or their subdomains."""
    domain = domain_of(normalised)
    return any(domain == d or domain.endswith("." + d) for d in settings.MLM_INTERNAL_DOMAINS)
