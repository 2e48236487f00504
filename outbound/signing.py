"""Endpoint secrets (made, kept encrypted, rotated) and the Standard Webhooks signature.

The signature is the `standardwebhooks` package's: `v1,<base64 HMAC-SHA256 of
id.timestamp.body>` under a `whsec_<base64>` secret. While a rotated-out secret is still valid,
both sign and the header carries two signatures separated by a space, as the scheme allows.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks.webhooks import Webhook

from mlm.mail import dkim

SECRET_PREFIX = "whsec_"  # noqa: S105 (the scheme's prefix, not a secret)


def new_secret() -> str:
    """A fresh endpoint secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def encrypt_secret(secret: str) -> str:
    """The secret encrypted at rest, with the keys that encrypt the DKIM private keys."""
    return dkim.encrypt_private_key(secret.encode("ascii"))


def decrypt_secret(token: str) -> str:
    """A stored secret in clear."""
    return dkim.decrypt_private_key(token).decode("ascii")


def signature_header(*, secrets_: list[str], event_id: str, at: datetime, body: bytes) -> str:
    """The webhook-signature header: one `v1,…` signature per valid secret."""
    return " ".join(Webhook(s).sign(event_id, at, body) for s in secrets_)


def headers(*, secrets_: list[str], event_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, and the content type."""
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature_header(
            secrets_=secrets_, event_id=event_id, at=at, body=body
        ),
    }
