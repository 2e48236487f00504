"""DKIM on our own SMTP path: key pairs, their encryption at rest, the DNS record, and signing.

dkimpy parses, canonicalises, hashes and folds the signature; only its RSA step is swapped for
OpenSSL (through `cryptography`). dkimpy's RSA is pure Python, about 11 ms a signature for a
2048-bit key, against well under 1 ms in OpenSSL; PKCS#1 v1.5 signatures are deterministic, so
the result is byte for byte what dkimpy alone writes (tests/mlm/test_dkim.py holds us to it).

dkimpy has no pluggable signer. `DKIM.sign()` calls two names of the `dkim` module,
`parse_pem_private_key` and `RSASSA_PKCS1_v1_5_sign`, and hands the parsed key from one to the
other untouched. We wrap both, once, with functions that take a different path only for our own
key object, `OpenSSLKey`: everything else (PEM bytes, dkimpy's key dicts, verification, ARC)
still goes to dkimpy's originals. That is the narrowest hook there is: no copy of dkimpy's
signing code to keep in step with upgrades, and no patching per call.

Once RSA is fast, dkimpy's relaxed body canonicalisation is the next cost (two regular
expressions that try a match at every byte: over 2 ms on a 25 kB indented HTML mail here).
`relaxed_body` computes the same bytes with `bytes.replace` and takes its place for every
caller; a property test checks it against dkimpy's on arbitrary bodies.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import dkim
from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from django.conf import settings
from dkim import canonicalization

if TYPE_CHECKING:
    from mlm.models import SendingDomain

KEY_BITS = 2048

# Always in h=, present or not: signing an absent List-Unsubscribe means nobody can add one later
# without breaking the signature (RFC 8058 §4 wants both list headers covered).
REQUIRED_HEADERS = (
    "from",
    "subject",
    "date",
    "message-id",
    "to",
    "list-unsubscribe",
    "list-unsubscribe-post",
)
# In h= when the message has them.
OPTIONAL_HEADERS = (
    "reply-to",
    "cc",
    "sender",
    "list-id",
    "feedback-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "in-reply-to",
    "references",
    "precedence",
    "auto-submitted",
)
# Listed once more than they occur: a second From, Subject or List-Unsubscribe added in transit
# (the classic replay trick) breaks the signature.
OVERSIGNED_HEADERS = ("from", "subject", "list-unsubscribe", "list-unsubscribe-post")

_QUIET = logging.getLogger("mlm.dkim.dkimpy")


# --- keys at rest -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def _box() -> MultiFernet:
    return _fernet(tuple(settings.MLM_DKIM_ENCRYPTION_KEYS))


def encrypt_private_key(pem: bytes) -> str:
    """Encrypt a PEM private key with the first MLM_DKIM_ENCRYPTION_KEY."""
    return _box().encrypt(pem).decode("ascii")


def decrypt_private_key(token: str) -> bytes:
    """Decrypt a stored private key with any of the MLM_DKIM_ENCRYPTION_KEYs."""
    return _box().decrypt(token.encode("ascii"))


def reencrypt_private_key(token: str) -> str:
    """The same key, encrypted again with the first (newest) MLM_DKIM_ENCRYPTION_KEY."""
    return _box().rotate(token.encode("ascii")).decode("ascii")


def generate_key_pair(bits: int = KEY_BITS) -> tuple[bytes, str]:
    """A new RSA key pair: the private key as PKCS#8 PEM, the public key as the p= of DNS."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, public_key_base64(key.public_key())


def public_key_base64(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def dns_record(*, domain: str, selector: str, public_key: str) -> tuple[str, str]:
    """The TXT record to publish: its name and its value (RFC 6376 §3.6.1)."""
    return f"{selector}._domainkey.{domain}", f"v=DKIM1; k=rsa; p={public_key}"


def zone_file_line(name: str, value: str) -> str:
    """The record as a zone file line, the value split into strings of at most 255 characters.

    A 2048-bit key does not fit one TXT string; resolvers join the strings back together.
    """
    strings = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
    return f"{name}. IN TXT ( {strings} )"


# --- signing ------------------------------------------------------------------------------------


class OpenSSLKey:
    """A private key that dkimpy hands, unparsed, to our OpenSSL RSA step."""

    __slots__ = ("key",)

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.key = key


_HASHES = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}  # noqa: S303 (rsa-sha1 is dkimpy's)


def _install_openssl_rsa() -> None:
    if getattr(dkim.RSASSA_PKCS1_v1_5_sign, "mlm_openssl", False):
        return
    pure_parse = dkim.parse_pem_private_key
    pure_sign = dkim.RSASSA_PKCS1_v1_5_sign

    def parse_pem_private_key(data):
        return data if isinstance(data, OpenSSLKey) else pure_parse(data)

    def rsassa_pkcs1_v1_5_sign(hash, private_key):
        if not isinstance(private_key, OpenSSLKey):
            return pure_sign(hash, private_key)
        digest = Prehashed(_HASHES[hash.name.lower()])
        return private_key.key.sign(hash.digest(), padding.PKCS1v15(), digest)

    rsassa_pkcs1_v1_5_sign.mlm_openssl = True
    dkim.parse_pem_private_key = parse_pem_private_key
    dkim.RSASSA_PKCS1_v1_5_sign = rsassa_pkcs1_v1_5_sign


pure_relaxed_body = canonicalization.Relaxed.canonicalize_body
pure_relaxed_headers = canonicalization.Relaxed.canonicalize_headers
_RUNS = re.compile(rb"  +")


def _compress(value: bytes) -> bytes:
    """Each run of spaces and tabs becomes one space (dkimpy's compress_whitespace)."""
    if b"\t" in value:
        value = value.replace(b"\t", b" ")
    if b"  " in value:
        value = _RUNS.sub(b" ", value)
    return value


def relaxed_body(body: bytes) -> bytes:
    """dkimpy's relaxed body canonicalisation (RFC 6376 §3.4.4), cheaper: its two regular
    expressions over the whole body start a match at every space and tab, and on an indented
    HTML part cost more than the RSA signature; here tabs become spaces by `bytes.replace`, one
    regular expression takes only runs of two spaces or more, and the space left before each
    line break goes by `bytes.replace`. Then the empty lines at the end go, as in dkimpy. The
    same result (tests/mlm/test_dkim.py checks it on arbitrary bodies)."""
    body = _compress(body)
    if b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")
    return canonicalization.correct_empty_body(canonicalization.strip_trailing_lines(body))


def relaxed_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """dkimpy's relaxed header canonicalisation (RFC 6376 §3.4.2) without its two `re.sub`
    calls a header (about 30 a message): unfold (drop CRLF and bare LF), compress whitespace,
    strip; names lower case. The same result (tests/mlm/test_dkim.py checks it)."""
    return [
        (
            name.lower().rstrip(),
            _compress(value.replace(b"\r\n", b"").replace(b"\n", b"")).strip() + b"\r\n",
        )
        for name, value in headers
    ]


_install_openssl_rsa()
if canonicalization.Relaxed.canonicalize_body is pure_relaxed_body:
    canonicalization.Relaxed.canonicalize_body = staticmethod(relaxed_body)
if canonicalization.Relaxed.canonicalize_headers is pure_relaxed_headers:
    canonicalization.Relaxed.canonicalize_headers = staticmethod(relaxed_headers)


def _split(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """What `dkim.rfc822_parse` gives, without splitting the body into lines and joining them
    again when the message already has CRLF line endings only (ours always do)."""
    head, blank, body = message.partition(b"\r\n\r\n")
    if not blank or message.count(b"\n") != message.count(b"\r\n"):
        return dkim.rfc822_parse(message)
    return dkim.rfc822_parse(head + b"\r\n")[0], body


class DKIMSigner:
    """Signs messages for one (domain, selector, key); build it once, sign many messages.

    relaxed/relaxed, rsa-sha256, i=@domain, no l= (a length tag lets anyone append to the body).
    """

    def __init__(
        self,
        *,
        domain: str,
        selector: str,
        private_key_pem: bytes,
        required_headers: Iterable[str] = REQUIRED_HEADERS,
        optional_headers: Iterable[str] = OPTIONAL_HEADERS,
        oversigned_headers: Iterable[str] = OVERSIGNED_HEADERS,
    ) -> None:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("DKIM keys here are RSA keys.")
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        self.key = OpenSSLKey(key)
        self.required = [h.lower().encode("ascii") for h in required_headers]
        self.optional = [h.lower().encode("ascii") for h in optional_headers]
        self.oversigned = [h.lower().encode("ascii") for h in oversigned_headers]
        if b"from" not in self.required:
            raise ValueError("The From header must be signed (RFC 6376 §5.4).")

    def include_headers(self, headers: Iterable[bytes]) -> list[bytes]:
        """The h= list for a message with these header names."""
        present = {name.lower() for name in headers}
        return (
            self.required
            + [name for name in self.optional if name in present]
            + [name for name in self.oversigned if name in present]
        )

    def signature(self, message: bytes) -> bytes:
        """The DKIM-Signature header field for `message` (CRLF line endings), ending in CRLF."""
        signer = dkim.DKIM(None, logger=_QUIET, linesep=b"\r\n")
        signer.headers, signer.body = _split(message)
        return signer.sign(
            self.selector,
            self.domain,
            self.key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=self.include_headers(name for name, _ in signer.headers),
        )

    def sign(self, message: bytes) -> bytes:
        """`message` with its DKIM-Signature header prepended."""
        return self.signature(message) + message


@functools.lru_cache(maxsize=64)
def _cached_signer(domain: str, selector: str, private_key_encrypted: str) -> DKIMSigner:
    return DKIMSigner(
        domain=domain,
        selector=selector,
        private_key_pem=decrypt_private_key(private_key_encrypted),
    )


def signer_for(sending_domain: SendingDomain) -> DKIMSigner:
    """The signer of a sending domain's key, decrypted and loaded once per process."""
    return _cached_signer(
        sending_domain.domain, sending_domain.selector, sending_domain.private_key_encrypted
    )


def signer_for_domain(domain: str) -> DKIMSigner | None:
    """The signer for mail From `domain`, or None when operations gave it no active key."""
    from mlm.models import SendingDomain

    sending_domain = SendingDomain.objects.active_for(domain)
    return None if sending_domain is None else signer_for(sending_domain)
