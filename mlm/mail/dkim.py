"""DKIM on our own SMTP path: key pairs, their encryption at rest, the DNS record, and signing.

Signing is ours (`DKIMSigner`), byte for byte what dkimpy writes, at the cost of the RSA step in
OpenSSL (through `cryptography`) and little besides; dkimpy is the reference our tests hold the
signatures to, the verifier, and lends its header folding. Its relaxed canonicalisation is
rewritten here with `bytes` methods (`relaxed_body`, `relaxed_headers`), checked against its own
on arbitrary input.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import dkim
from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
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
    calls a header: unfold (drop CRLF and bare LF), compress whitespace, strip; names lower
    case. The same result (tests/mlm/test_dkim.py checks it)."""
    return [
        (
            name.lower().rstrip(),
            _compress(value.replace(b"\r\n", b"").replace(b"\n", b"")).strip() + b"\r\n",
        )
        for name, value in headers
    ]


_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")


def _split(message: bytes, crlf_only: bool) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Header fields (name, value with its CRLFs) and body, as `dkim.rfc822_parse` gives them.

    Our messages have CRLF line endings only and plain header names: those are split here with
    `bytes` methods; anything else goes to dkimpy's parser. `crlf_only`: the caller vouches for
    the line endings, and the two scans of the message that would check them are skipped.
    """
    head, blank, body = message.partition(b"\r\n\r\n")
    if not blank or (not crlf_only and message.count(b"\n") != message.count(b"\r\n")):
        return _parsed(message)
    headers: list[list[bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1][1] += line + b"\r\n"
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _NAME.fullmatch(name):
            return _parsed(message)
        headers.append([name, value + b"\r\n"])
    return [(name, value) for name, value in headers], body


def _parsed(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    headers, body = dkim.rfc822_parse(message)
    return [(name, value) for name, value in headers], body


_B_PLACEHOLDER = b"0" * 60
_SIGNATURE_NAME = b"DKIM-Signature"


class DKIMSigner:
    """Signs messages for one (domain, selector, key); build it once, sign many messages.

    relaxed/relaxed, rsa-sha256, i=@domain, no l= (a length tag lets anyone append to the body).

    The signature is byte for byte what `dkim.DKIM.sign` writes (tests/mlm/test_dkim.py holds us
    to it, on our messages and on arbitrary ones); dkimpy remains the verifier. We compute it
    ourselves because dkimpy's signing path costs more than the signature's own arithmetic: its
    RSA is pure Python (about 11 ms for a 2048-bit key, against about 1 ms in OpenSSL through
    `cryptography`), and around it, once per message, it canonicalises every header field, runs
    regular expressions over the body and the header and parses the message line by line
    (0.5 ms a message, bench/dkim_sign.py). Here only the signed fields are canonicalised, the
    tags that do not change are joined once, and the body takes two `bytes.replace` passes.
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
        self.key = key
        self.required = [h.lower().encode("ascii") for h in required_headers]
        self.optional = [h.lower().encode("ascii") for h in optional_headers]
        self.oversigned = [h.lower().encode("ascii") for h in oversigned_headers]
        if b"from" not in self.required:
            raise ValueError("The From header must be signed (RFC 6376 §5.4).")
        # The tags before t=, in dkimpy's order.
        self._head = b"v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; i=@%s; q=dns/txt; s=%s" % (
            self.domain,
            self.domain,
            self.selector,
        )

    def include_headers(self, headers: Iterable[bytes]) -> list[bytes]:
        """The h= list for a message with these header names."""
        present = {name.lower() for name in headers}
        return (
            self.required
            + [name for name in self.optional if name in present]
            + [name for name in self.oversigned if name in present]
        )

    def signature(
        self, message: bytes, *, crlf_only: bool = False, now: int | None = None
    ) -> bytes:
        """The DKIM-Signature header field for `message`, ending in CRLF. `crlf_only`: the
        caller vouches that every line ends in CRLF, as in mlm.mail.build's messages. `now`: the
        signing time (t=) in Unix seconds, if not the current one."""
        headers, body = _split(message, crlf_only)
        include = self.include_headers(name for name, _ in headers)
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())
        tags = b"%s; t=%d; h=%s; bh=%s; b=" % (
            self._head,
            int(time.time()) if now is None else now,
            b" : ".join(include),
            body_hash,
        )
        # dkimpy folds with a 60-character placeholder for b=, so that b= starts a line of its
        # own, then signs the field with b= empty.
        unsigned = dkim.fold(tags + _B_PLACEHOLDER, namelen=len(_SIGNATURE_NAME))
        if not unsigned.endswith(b"b=" + _B_PLACEHOLDER):  # pragma: no cover (dkimpy's fold)
            raise ValueError("unexpected DKIM-Signature folding")
        unsigned = unsigned[: -len(_B_PLACEHOLDER)]
        signed = relaxed_headers(dkim.select_headers(headers, include))
        own = relaxed_headers([(_SIGNATURE_NAME, b" " + unsigned)])[0][1].rstrip()
        data = b"".join(name + b":" + value for name, value in signed) + b"dkim-signature:" + own
        b = base64.b64encode(self.key.sign(data, padding.PKCS1v15(), hashes.SHA256()))
        value = dkim.fold(tags + b + b"\r\n", namelen=len(_SIGNATURE_NAME))
        return _SIGNATURE_NAME + b": " + value

    def sign(self, message: bytes, *, crlf_only: bool = False) -> bytes:
        """`message` with its DKIM-Signature header prepended (`crlf_only`: see `signature`)."""
        return self.signature(message, crlf_only=crlf_only) + message


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
