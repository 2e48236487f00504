"""DKIM on our own SMTP path: keys encrypted at rest, the DNS record, our signer that writes byte
for byte what dkimpy writes, and signatures that verify against the published record."""

from __future__ import annotations

import base64
import re
from unittest import mock

import dkim
import pytest
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import serialization
from django.db import IntegrityError
from django.test import override_settings
from django.urls import reverse
from dkim import canonicalization
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mlm.mail.build import MessageBuilder
from mlm.mail.dkim import (
    DKIMSigner,
    decrypt_private_key,
    generate_key_pair,
    public_key_base64,
    relaxed_body,
    relaxed_headers,
    signer_for,
    signer_for_domain,
    zone_file_line,
)
from mlm.models import AuditEntry, SendingDomain
from mlm.services import (
    sending_domain_activate,
    sending_domain_create,
    sending_domain_dns_record,
    sending_domains_reencrypt,
)
from tests.mlm.test_settings import production_env, run

MESSAGE = (
    b'From: "Faculty of Engineering" <news@eng.example.edu>\r\n'
    b"To: reader@example.org\r\n"
    b"Subject: =?utf-8?b?6ZaL5pS+5pelIE9wZW4gZGF5?=\r\n"
    b"Date: Mon, 02 Jun 2025 09:00:00 +0800\r\n"
    b"Message-ID: <d-1@eng.example.edu>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"List-Unsubscribe: <https://mlm.example.edu/u/one-click/abc>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"List-Id: Newsletter <newsletter.eng.example.edu>\r\n"
    b"Feedback-ID: 7:eng:newsletter:mlm\r\n"
    b"X-Not-Signed: yes\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Dear reader,  \r\n\r\nthe open day is on Saturday.\r\n\r\n\r\n"
)


def dns_for(sending_domain: SendingDomain):
    """A resolver stub answering only the published TXT record (DNS is the outside world)."""
    name, value = sending_domain_dns_record(sending_domain)

    def get_txt(query: bytes, timeout: float = 5) -> bytes | None:
        return value.encode() if query == f"{name}.".encode() else None

    return get_txt


def signed_headers(signed: bytes) -> list[str]:
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    h = re.search(r"\bh=([^;]+);", re.sub(r"\r\n\s+", " ", header)).group(1)
    return [name.strip() for name in h.split(":")]


@pytest.fixture(scope="module")
def key_pair() -> tuple[bytes, str]:
    return generate_key_pair()


def built_message() -> bytes:
    builder = MessageBuilder(
        from_addr="news@eng.example.edu",
        from_name="工程學院",
        subject="開放日 Open Day",
        message_id_domain="eng.example.edu",
    )
    return builder.build(
        to_addr="reader@example.org",
        text="Dear reader,\n\nthe open day 開放日 is on Saturday.\n" * 20,
        html="<p>Dear reader,</p>\n<p>the open day 開放日 is on Saturday.</p>\n" * 20,
        unsubscribe_url="https://mlm.example.edu/r/one-click/abc",
    ).raw


def dkimpy_signature(signer: DKIMSigner, message: bytes, pem: bytes) -> tuple[bytes, int]:
    """dkimpy's own signature of `message` with the signer's domain, selector and headers, and
    the signing time (t=) it wrote, for ours to sign at the same second."""
    include = signer.include_headers(name for name, _ in dkim.rfc822_parse(message)[0])
    signed = dkim.sign(
        message,
        signer.selector,
        signer.domain,
        pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=include,
    )
    return signed, int(re.search(rb"; t=(\d+);", signed)[1])


@pytest.mark.parametrize("message", [MESSAGE, built_message()], ids=["plain", "built"])
def test_it_signs_byte_for_byte_what_dkimpy_alone_signs(key_pair, message):
    pem, _ = key_pair
    signer = DKIMSigner(domain="eng.example.edu", selector="mlm1", private_key_pem=pem)
    expected, now = dkimpy_signature(signer, message, pem)
    # dkimpy's pure-Python RSA is not called on our path: OpenSSL does that step.
    with mock.patch("dkim.crypto.rsa_decrypt", side_effect=AssertionError("pure RSA")):
        ours = signer.signature(message, now=now)
    # Both messages have CRLF line endings only: vouching for it changes nothing.
    assert signer.signature(message, crlf_only=True, now=now) == expected
    assert ours == expected
    assert ours.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert ours.endswith(b"\r\n")


def test_it_signs_messages_with_bare_line_feeds_as_dkimpy_does(key_pair):
    pem, _ = key_pair
    message = MESSAGE.replace(b"\r\n", b"\n")
    signer = DKIMSigner(domain="eng.example.edu", selector="mlm1", private_key_pem=pem)
    expected, now = dkimpy_signature(signer, message, pem)
    assert signer.signature(message, now=now) == expected


@pytest.fixture(scope="module")
def small_key() -> bytes:
    # 1024 bits: dkimpy's pure-Python RSA signs it fast enough for many examples.
    return generate_key_pair(bits=1024)[0]


_FIELD_NAMES = st.sampled_from(
    [b"From", b"from", b"To", b"Subject", b"SUBJECT", b"Date", b"Message-ID", b"List-Id",
     b"List-Unsubscribe", b"List-Unsubscribe-Post", b"Reply-To", b"X-Other", b"Content-Type"]
)  # fmt: skip
_FIELD_VALUES = st.text(" \ta=:;<>@.é陳", max_size=30).map(lambda v: v.encode())
_LINES = st.text(" \tab=\r\n.", max_size=80).map(str.encode)


@hypothesis_settings(max_examples=150, deadline=None)
@given(
    fields=st.lists(st.tuples(_FIELD_NAMES, _FIELD_VALUES, st.booleans()), min_size=1, max_size=8),
    body=_LINES,
    domain=st.sampled_from(["eng.example.edu", "a.b.example.org"]),
    selector=st.sampled_from(["mlm1", "s-2026"]),
)
def test_it_signs_any_message_as_dkimpy_does(small_key, fields, body, domain, selector):
    """Field names in any case, repeated or folded, values with runs of blanks, bodies with
    blank lines, bare line feeds or none: our signature is dkimpy's."""
    head = b"".join(
        name + b":" + (value[:10] + b"\r\n\t" + value[10:] if fold else value) + b"\r\n"
        for name, value, fold in fields
    )
    message = head + b"\r\n" + body
    signer = DKIMSigner(domain=domain, selector=selector, private_key_pem=small_key)
    expected, now = dkimpy_signature(signer, message, small_key)
    assert signer.signature(message, now=now) == expected


@hypothesis_settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200) | st.text(" \t\r\na=", max_size=60).map(str.encode))
def test_the_relaxed_body_shortcut_agrees_with_dkimpy(body):
    assert relaxed_body(body) == canonicalization.Relaxed.canonicalize_body(body)


_HEADER_BYTES = st.binary(max_size=60) | st.text(" \t\r\na=:", max_size=40).map(str.encode)


@hypothesis_settings(max_examples=300, deadline=None)
@given(headers=st.lists(st.tuples(_HEADER_BYTES, _HEADER_BYTES), max_size=4))
def test_the_relaxed_header_shortcut_agrees_with_dkimpy(headers):
    assert relaxed_headers(headers) == canonicalization.Relaxed.canonicalize_headers(headers)


def test_it_verifies_against_the_published_record_and_covers_the_list_headers(db):
    """I5: the signature verifies with the TXT record operations publish, and its h= covers
    From, Subject, Date, Message-ID, To, List-Unsubscribe and List-Unsubscribe-Post."""
    sending_domain = sending_domain_create(domain="eng.example.edu", selector="mlm1", by=None)
    signed = signer_for(sending_domain).sign(MESSAGE)
    assert dkim.verify(signed, dnsfunc=dns_for(sending_domain))
    h = signed_headers(signed)
    for name in (
        "from",
        "subject",
        "date",
        "message-id",
        "to",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "list-id",
        "feedback-id",
        "mime-version",
        "content-type",
    ):
        assert name in h
    assert "x-not-signed" not in h


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.replace(b"Saturday", b"Sunday"),
        lambda m: m.replace(b"/u/one-click/abc", b"/u/one-click/xyz"),
        # A second List-Unsubscribe or Subject added in transit: they are oversigned.
        lambda m: b"List-Unsubscribe: <https://evil.example/>\r\n" + m,
        lambda m: m.replace(b"\r\n\r\n", b"\r\nSubject: You won\r\n\r\n", 1),
        lambda m: m.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b""),
    ],
)
def test_it_fails_verification_when_a_signed_part_changes(db, tamper):
    """I5: the one-click headers cannot be changed, removed or added to without detection."""
    sending_domain = sending_domain_create(domain="eng.example.edu", selector="mlm1", by=None)
    signed = signer_for(sending_domain).sign(MESSAGE)
    header, rest = signed.split(b"\r\n", 1)
    signature = header + b"\r\n"
    while rest[:1] in (b" ", b"\t"):
        line, rest = rest.split(b"\r\n", 1)
        signature += line + b"\r\n"
    assert not dkim.verify(signature + tamper(rest), dnsfunc=dns_for(sending_domain))


def test_it_signs_a_message_without_list_headers_as_their_absence(db):
    """I5: h= names the list headers even when absent, so adding them later breaks the seal."""
    sending_domain = sending_domain_create(domain="eng.example.edu", selector="mlm1", by=None)
    plain = re.sub(rb"List-Unsubscribe[^\r]*\r\n", b"", MESSAGE)
    signed = signer_for(sending_domain).sign(plain)
    assert dkim.verify(signed, dnsfunc=dns_for(sending_domain))
    assert {"list-unsubscribe", "list-unsubscribe-post"} <= set(signed_headers(signed))
    added = signed.replace(b"\r\n\r\n", b"\r\nList-Unsubscribe: <https://x.example/>\r\n\r\n", 1)
    assert not dkim.verify(added, dnsfunc=dns_for(sending_domain))


def test_it_keeps_the_private_key_encrypted_at_rest(db):
    sending_domain = sending_domain_create(domain="eng.example.edu", selector="mlm1", by=None)
    stored = SendingDomain.objects.values_list("private_key_encrypted", flat=True).get()
    assert "PRIVATE KEY" not in stored
    pem = decrypt_private_key(stored)
    key = serialization.load_pem_private_key(pem, password=None)
    assert key.key_size == 2048
    assert public_key_base64(key.public_key()) == sending_domain.public_key
    with (
        override_settings(MLM_DKIM_ENCRYPTION_KEYS=[Fernet.generate_key().decode()]),
        pytest.raises(InvalidToken),
    ):
        decrypt_private_key(stored)


def test_it_reencrypts_every_key_after_a_rotation_of_the_encryption_key(db, settings):
    sending_domain_create(domain="eng.example.edu", selector="mlm1", by=None)
    old = list(settings.MLM_DKIM_ENCRYPTION_KEYS)
    new = Fernet.generate_key().decode()
    settings.MLM_DKIM_ENCRYPTION_KEYS = [new, *old]
    assert sending_domains_reencrypt(by=None) == 1
    settings.MLM_DKIM_ENCRYPTION_KEYS = [new]
    sending_domain = SendingDomain.objects.get()
    assert b"PRIVATE KEY" in decrypt_private_key(sending_domain.private_key_encrypted)
    assert AuditEntry.objects.filter(verb="sending_domain.reencrypt").exists()


def test_it_gives_the_txt_record_to_publish(db):
    sending_domain = sending_domain_create(domain="Eng.Example.EDU.", selector="mlm1", by=None)
    name, value = sending_domain_dns_record(sending_domain)
    assert name == "mlm1._domainkey.eng.example.edu"
    assert value == f"v=DKIM1; k=rsa; p={sending_domain.public_key}"
    der = base64.b64decode(sending_domain.public_key)
    assert serialization.load_der_public_key(der).key_size == 2048
    line = zone_file_line(name, value)
    strings = re.findall(r'"([^"]*)"', line)
    assert "".join(strings) == value and all(len(s) <= 255 for s in strings)
    assert line.startswith("mlm1._domainkey.eng.example.edu. IN TXT (")


def test_it_signs_with_one_active_key_per_domain(db):
    first = sending_domain_create(domain="eng.example.edu", selector="mlm1", by=None)
    second = sending_domain_create(domain="eng.example.edu", selector="mlm2", by=None)
    assert first.active and not second.active  # published first, switched on later
    assert signer_for_domain("ENG.example.edu").selector == b"mlm1"
    sending_domain_activate(sending_domain=second, by=None)
    first.refresh_from_db()
    assert not first.active
    assert signer_for_domain("eng.example.edu").selector == b"mlm2"
    assert signer_for_domain("other.example.edu") is None
    with pytest.raises(IntegrityError):
        SendingDomain.objects.filter(pk=first.pk).update(active=True)


def test_it_refuses_a_bad_domain_or_selector(db):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        sending_domain_create(domain="not a domain", selector="mlm1", by=None)
    with pytest.raises(ValidationError):
        sending_domain_create(domain="eng.example.edu", selector="bad_selector!", by=None)


def test_operations_add_a_key_in_admin_and_see_the_record_never_the_private_key(admin_client):
    response = admin_client.post(
        reverse("admin:mlm_sendingdomain_add"),
        {"domain": "Eng.Example.edu", "selector": "mlm1"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    sending_domain = SendingDomain.objects.get()
    assert sending_domain.domain == "eng.example.edu" and sending_domain.active
    page = admin_client.get(
        reverse("admin:mlm_sendingdomain_change", args=[sending_domain.pk])
    ).content.decode()
    name, value = sending_domain_dns_record(sending_domain)
    assert name in page and value in page
    assert "PRIVATE KEY" not in page
    assert sending_domain.private_key_encrypted[:40] not in page
    pem_body = decrypt_private_key(sending_domain.private_key_encrypted).splitlines()[1].decode()
    assert pem_body not in page
    assert AuditEntry.objects.filter(verb="sending_domain.create", actor_label="admin").exists()


def test_operations_add_a_second_key_inactive_and_then_activate_it(admin_client):
    url = reverse("admin:mlm_sendingdomain_add")
    admin_client.post(url, {"domain": "eng.example.edu", "selector": "mlm1"})
    response = admin_client.post(url, {"domain": "eng.example.edu", "selector": "mlm2"})
    assert response.status_code == 302
    second = SendingDomain.objects.get(selector="mlm2")
    assert not second.active
    admin_client.post(
        reverse("admin:mlm_sendingdomain_changelist"),
        {"action": "activate", "_selected_action": [second.pk]},
    )
    assert SendingDomain.objects.active_for("eng.example.edu") == second
    duplicate = admin_client.post(url, {"domain": "eng.example.edu", "selector": "mlm2"})
    assert duplicate.status_code == 200  # the form says the selector is taken
    assert SendingDomain.objects.count() == 2


def test_without_debug_it_refuses_to_start_without_a_dkim_encryption_key(tmp_path):
    env = production_env(tmp_path)
    del env["MLM_DKIM_ENCRYPTION_KEY"]
    result = run(["manage.py", "check"], env)
    assert result.returncode != 0
    assert "MLM_DKIM_ENCRYPTION_KEY is not set" in result.stderr


def test_it_refuses_a_dkim_encryption_key_that_is_not_a_fernet_key(tmp_path):
    result = run(["manage.py", "check"], production_env(tmp_path, MLM_DKIM_ENCRYPTION_KEY="x"))
    assert result.returncode != 0
    assert "MLM_DKIM_ENCRYPTION_KEY must be Fernet keys" in result.stderr


def test_with_debug_it_makes_and_keeps_a_local_dkim_encryption_key(tmp_path):
    env = production_env(tmp_path, DEBUG="1")
    del env["MLM_DKIM_ENCRYPTION_KEY"]
    code = (
        "import django; from django.conf import settings; django.setup(); "
        "print(settings.MLM_DKIM_ENCRYPTION_KEYS[0])"
    )
    first = run(["-c", code], env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == run(["-c", code], env).stdout
    Fernet(first.stdout.strip().encode())  # a valid key
    assert (tmp_path / "var" / "dkim_encryption_key").stat().st_mode & 0o077 == 0
