"""The campaign message builder: bytes that parse back, defect-free, into exactly what went in
(Chinese subjects and names included), with no way to inject a header, and that travel through
Django's mail backends and anymail unchanged."""

from __future__ import annotations

import io
import re
from email import policy
from email.header import decode_header
from email.parser import BytesParser
from email.policy import compat32

import dkim
import pytest
from django.core import mail
from django.core.mail import get_connection
from hypothesis import given, settings
from hypothesis import strategies as st

from mlm.mail.build import MessageBuilder, encode_body, quoted_printable
from mlm.mail.dkim import DKIMSigner, dns_record, generate_key_pair
from mlm.mail.headers import HeaderInjection
from mlm.mail.outbox import OutboxBackend
from mlm.models import OutboxMessage
from tests.system.smtp_sink import SMTPSink

UNSUBSCRIBE = "https://mlm.example.edu/r/one-click/AbCdEf0123456789_-xyz"
SUBJECT = "開放日 Open Day 2025：歡迎蒞臨香港大學工程學院參觀，了解我們的課程與研究成果"  # noqa: RUF001
TEXT = "親愛的陳大文：\n\n開放日將於星期六舉行。\n\n退訂：https://mlm.example.edu/p/x\n"  # noqa: RUF001
HTML = (
    '<html><body><p style="color:#333">親愛的<b>陳大文</b>：</p>'  # noqa: RUF001
    "<p>開放日 = 星期六</p></body></html>"
)


def make_builder(**overrides) -> MessageBuilder:
    options = dict(
        from_addr="news@eng.example.edu",
        from_name="工程學院 Faculty of Engineering",
        subject=SUBJECT,
        reply_to=[("Engineering Office, HKU", "office@eng.example.edu")],
        list_id=("工程學院 Newsletter", "newsletter.eng.lists.example.edu"),
        feedback_id="c42:engineering:newsletter:mlm",
        message_id_domain="eng.example.edu",
        extra_headers=[("Precedence", "bulk")],
    )
    options.update(overrides)
    return MessageBuilder(**options)


def build(builder: MessageBuilder | None = None, **overrides):
    options = dict(
        to_addr="chan.taiman@example.org",
        to_name="陳大文",
        text=TEXT,
        html=HTML,
        unsubscribe_url=UNSUBSCRIBE,
    )
    options.update(overrides)
    return (builder or make_builder()).build(**options)


def parse(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


def defects(message) -> list:
    """Every defect the parser noted: of the message, of each part, of each header."""
    found = []
    for part in message.walk():
        found += part.defects
        for _, value in part.items():
            found += value.defects
    return found


def display_name(raw: bytes, header: str) -> str:
    """The display name in `header`, decoded as RFC 2047 §6.2 says: whitespace between two
    adjacent encoded-words is not part of the text. Python's parser before 3.14 keeps it in
    address headers (CPython gh-128110), for its own generator's output too, and it turns a run
    of blanks inside an encoded-word into one space, so an encoded name is decoded here with
    `email.header`, which follows the RFC. (The builder encodes every name holding "=?".)"""
    value = BytesParser(policy=compat32).parsebytes(raw)[header]
    phrase = re.sub(r"\s+", " ", value).rsplit("<", 1)[0].strip()
    if "=?utf-8?b?" not in phrase:
        return parse(raw)[header].addresses[0].display_name
    return "".join(part.decode(charset) for part, charset in decode_header(phrase))


def lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def content(message, subtype: str) -> str:
    return lf(message.get_body((subtype,)).get_content())


def test_it_builds_a_message_that_parses_back_to_exactly_what_went_in():
    """I5: the list headers are there, with the one-click URL as given."""
    built = build()
    message = parse(built.raw)
    assert defects(message) == []
    assert message["Subject"] == SUBJECT
    [sender] = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        "工程學院 Faculty of Engineering",
        "news@eng.example.edu",
    )
    [recipient] = message["To"].addresses
    assert (recipient.display_name, recipient.addr_spec) == ("陳大文", "chan.taiman@example.org")
    [reply_to] = message["Reply-To"].addresses
    assert reply_to.display_name == "Engineering Office, HKU"
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "工程學院 Newsletter <newsletter.eng.lists.example.edu>"
    assert message["Feedback-ID"] == "c42:engineering:newsletter:mlm"
    assert message["Precedence"] == "bulk"
    assert message["Message-ID"] == built.message_id
    assert built.message_id.endswith("@eng.example.edu>")
    assert message["Date"].datetime is not None
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert content(message, "plain") == TEXT
    assert content(message, "html") == HTML


def test_its_bytes_are_seven_bit_crlf_and_within_line_limits():
    raw = build().raw
    raw.decode("ascii")  # 7-bit clean: nothing to downgrade, nothing to break a signature
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    header = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_it_prepares_the_invariant_parts_once_and_fills_in_each_recipient():
    builder = make_builder()
    first = build(builder, to_addr="a@example.org", to_name="Alice Wong")
    second = build(
        builder,
        to_addr="b@example.org",
        to_name='Bob "the builder" Lee',
        message_id=builder.make_message_id("delivery-7"),
        unsubscribe_url=UNSUBSCRIBE + "2",
        subject="Bob, 你的邀請",
    )
    one, two = parse(first.raw), parse(second.raw)
    assert one["From"] == two["From"]
    assert one.get_boundary() == two.get_boundary() == builder.boundary
    assert one["To"].addresses[0].display_name == "Alice Wong"
    assert two["To"].addresses[0].display_name == 'Bob "the builder" Lee'
    assert two["Message-ID"] == "<delivery-7@eng.example.edu>"
    assert two["List-Unsubscribe"] == f"<{UNSUBSCRIBE}2>"
    assert (one["Subject"], two["Subject"]) == (SUBJECT, "Bob, 你的邀請")
    assert one["Message-ID"] != two["Message-ID"]


def test_it_writes_a_mailto_unsubscribe_beside_the_https_one():
    built = build(unsubscribe_mailto="mailto:unsubscribe@eng.example.edu?subject=c42")
    assert parse(built.raw)["List-Unsubscribe"] == (
        f"<{UNSUBSCRIBE}>, <mailto:unsubscribe@eng.example.edu?subject=c42>"
    )


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Dear Alice,\n\nThe open day is on Saturday.\n", "7bit"),
        ("x" * 2000 + "\n", "quoted-printable"),  # a line too long for 7bit
        ("Chère Amélie, à bientôt à l'université.\n" * 5, "quoted-printable"),
        ("親愛的校友：開放日將於星期六舉行，歡迎蒞臨。\n" * 5, "base64"),  # noqa: RUF001
        ("Dear 陳大文, the open day is on Saturday.\n", "quoted-printable"),
        ("nul \0 inside\n", "quoted-printable"),
    ],
)
def test_it_chooses_the_transfer_encoding_per_part(text, encoding):
    message = parse(build(text=text).raw)
    part = message.get_body(("plain",))
    assert part["Content-Transfer-Encoding"] == encoding
    assert content(message, "plain") == lf(text)
    assert defects(message) == []


def test_a_body_line_that_looks_like_the_boundary_is_encoded():
    builder = make_builder()
    text = f"before\n--{builder.boundary}\nafter\n--{builder.boundary}--\n"
    message = parse(build(builder, text=text, html=text).raw)
    assert len(list(message.iter_parts())) == 2
    assert content(message, "plain") == text
    assert defects(message) == []


def test_quoted_printable_keeps_crlf_soft_breaks_without_line_breaks_in_the_input():
    encoded = quoted_printable(("é" * 100).encode())
    assert b"\n" not in encoded.replace(b"\r\n", b"")
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "Hello\r\nBcc: victim@example.org"},
        {"subject": "Hello\nBcc: victim@example.org"},
        {"subject": "開放日\rBcc: victim@example.org"},
        {"to_name": "Chan\r\nBcc: victim@example.org"},
        {"to_name": "陳\n大文"},
        {"to_addr": "a@example.org\r\nBcc: victim@example.org"},
        {"unsubscribe_url": UNSUBSCRIBE + "\r\nBcc: victim@example.org"},
        {"message_id": "<x@eng.example.edu>\r\nBcc: victim@example.org"},
        {"subject": "null\0byte"},
    ],
)
def test_it_refuses_header_injection_per_recipient(change):
    with pytest.raises(HeaderInjection):
        build(**change)


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "Open day\r\nBcc: victim@example.org"},
        {"from_name": "Engineering\nBcc: victim@example.org"},
        {"reply_to": [("Office\r\nBcc: victim@example.org", "office@eng.example.edu")]},
        {"list_id": ("News\nBcc: victim@example.org", "news.eng.example.edu")},
        {"extra_headers": [("Precedence", "bulk\r\nBcc: victim@example.org")]},
        {"feedback_id": "a:b\r\nBcc: victim@example.org"},
    ],
)
def test_it_refuses_header_injection_in_the_campaign_headers(change):
    with pytest.raises(HeaderInjection):
        make_builder(**change)


@pytest.mark.parametrize(
    "change",
    [
        {"to_addr": "Chan <chan@example.org>"},
        {"to_addr": "two@example.org, three@example.org"},
        {"to_addr": "no-at-sign"},
        {"to_addr": "陳@example.org"},  # needs SMTPUTF8: not written here
        {"unsubscribe_url": "https://x.example/a b"},
        {"unsubscribe_url": "https://x.example/<a>"},
        {"unsubscribe_url": "javascript:alert(1)"},
        {"message_id": "no-brackets@x"},
    ],
)
def test_it_refuses_addresses_urls_and_ids_it_cannot_write_safely(change):
    with pytest.raises(ValueError):
        build(**change)


def test_it_refuses_to_set_an_invariant_header_as_an_extra_one():
    for name in ("Bcc", "From", "list-unsubscribe", "Content-Type", "Bad Name"):
        with pytest.raises(ValueError):
            make_builder(extra_headers=[(name, "x")])


def test_it_writes_an_internationalised_domain_in_its_ascii_form():
    message = parse(build(to_addr="alumni@香港大學.hk").raw)
    assert message["To"].addresses[0].domain == "xn--pssu7cv61af44b.hk"
    message = parse(build(to_addr="info@straße.de").raw)  # IDNA 2008, not 2003's "strasse"
    assert message["To"].addresses[0].domain == "xn--strae-oqa.de"


def test_it_writes_an_empty_subject_and_a_name_with_a_tab():
    message = parse(build(subject="", to_name="Chan\tTai Man").raw)
    assert message["Subject"] == ""
    assert message["To"].addresses[0].display_name == "Chan Tai Man"
    assert defects(message) == []


def test_an_ascii_subject_that_looks_like_an_encoded_word_stays_literal():
    subject = "=?utf-8?b?SGFja2Vk?= totally normal"
    assert parse(build(subject=subject).raw)["Subject"] == subject


_CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
# Anything but surrogates and the ASCII controls a header refuses (tab and C1 controls allowed).
_NO_CONTROLS = st.characters(blacklist_categories=("Cs",)).filter(
    lambda c: c == "\t" or not (c < " " or c == "\x7f")
)
_CJK_PUNCTUATION = " ,.:;!?\"'()<>@\\\uff0c\u3002\uff1a\u300c\u300d"
_header_text = st.one_of(
    st.text(_NO_CONTROLS, min_size=1, max_size=120),
    st.text(st.one_of(_CJK, st.sampled_from(_CJK_PUNCTUATION)), min_size=1, max_size=90),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=200),
)
HEADER_NAMES = {
    "from",
    "reply-to",
    "to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-id",
    "feedback-id",
    "precedence",
    "mime-version",
    "content-type",
}


@settings(max_examples=100, deadline=None)
@given(subject=_header_text, name=_header_text, sender=_header_text)
def test_any_subject_and_names_parse_back_exactly_with_no_defects(subject, name, sender):
    """Header injection is impossible: whatever a subject or name holds, the message has the
    same headers and they decode to exactly what went in."""
    builder = make_builder(from_name=sender)
    message = parse(build(builder, subject=subject, to_name=name).raw)
    assert defects(message) == []
    assert {key.lower() for key in message} == HEADER_NAMES
    assert message["Subject"] == subject
    raw = build(builder, subject=subject, to_name=name).raw
    assert raw.count(b"\n") == raw.count(b"\r") == raw.count(b"\r\n")
    assert display_name(raw, "To") == name.replace("\t", " ").strip()
    assert message["To"].addresses[0].addr_spec == "chan.taiman@example.org"
    assert display_name(raw, "From") == sender.replace("\t", " ").strip()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


@settings(max_examples=50, deadline=None)
@given(
    before=st.text(max_size=20),
    line_break=st.sampled_from(["\r\n", "\n", "\r", "\0", "\x0b", "\x1b", "\x7f"]),
    after=st.text(max_size=20),
)
def test_any_line_break_in_a_subject_or_name_is_refused(before, line_break, after):
    value = before + line_break + after
    with pytest.raises(HeaderInjection):
        build(subject=value)
    with pytest.raises(HeaderInjection):
        build(to_name=value)


_body = st.text(st.characters(blacklist_categories=("Cs",)), max_size=3000) | st.text(
    "ab 開\r\n\t", max_size=300
)


@settings(max_examples=80, deadline=None)
@given(text=_body, html=_body)
def test_any_bodies_parse_back_exactly_with_no_defects(text, html):
    raw = build(text=text, html=html).raw
    # CRLF line endings only, whatever line breaks the bodies hold: mlm.mail.dkim's signer is told
    # so by dispatch, and skips checking.
    assert raw.count(b"\n") == raw.count(b"\r") == raw.count(b"\r\n")
    message = parse(raw)
    assert defects(message) == []
    assert content(message, "plain") == lf(text)
    assert content(message, "html") == lf(html)


@settings(max_examples=100, deadline=None)
@given(text=_body)
def test_every_encoded_body_line_stays_within_the_limits(text):
    encoding, body = encode_body(text, b"=_mlm_boundary")
    limit = 998 if encoding == b"7bit" else 76
    assert all(len(line) <= limit for line in body.split(b"\r\n"))
    body.decode("ascii")


def test_a_signed_built_message_verifies_and_covers_the_list_headers():
    """I5: List-Unsubscribe and List-Unsubscribe-Post are under the DKIM signature."""
    pem, public_key = generate_key_pair()
    signer = DKIMSigner(domain="eng.example.edu", selector="mlm1", private_key_pem=pem)
    signed = signer.sign(build().raw)
    _, value = dns_record(domain="eng.example.edu", selector="mlm1", public_key=public_key)
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: value.encode())
    h = re.search(rb"h=([^;]+);", re.sub(rb"\r\n\s+", b" ", signed)).group(1).decode()
    names = {name.strip() for name in h.split(":")}
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject", "to"} <= names
    assert defects(parse(signed)) == []


def test_prebuilt_bytes_go_through_djangos_smtp_backend_unchanged(tmp_path):
    """The signed bytes we built are the bytes the relay receives (I5: the signature holds)."""
    pem, _ = generate_key_pair()
    signer = DKIMSigner(domain="eng.example.edu", selector="mlm1", private_key_pem=pem)
    builder = make_builder()
    built = build(builder)
    built.raw = signer.sign(built.raw)
    with SMTPSink(directory=tmp_path) as sink:
        connection = get_connection(
            "django.core.mail.backends.smtp.EmailBackend",
            host=sink.host,
            port=sink.port,
            use_tls=False,
            timeout=5,
        )
        assert connection.send_messages([builder.django_message(built)]) == 1
        [received] = sink.wait_for(1)
    assert received.raw == built.raw
    assert received.mail_from == "news@eng.example.edu"
    assert received.rcpt_tos == ["chan.taiman@example.org"]


def test_prebuilt_bytes_are_kept_by_the_outbox_unchanged(db):
    builder = make_builder()
    built = build(builder)
    OutboxBackend().send_messages([builder.django_message(built)])
    kept = OutboxMessage.objects.get()
    assert bytes(kept.raw) == built.raw
    assert kept.recipients == "chan.taiman@example.org"
    assert kept.subject == SUBJECT


def test_anymail_gets_the_parts_and_the_metadata():
    builder = make_builder()
    built = build(builder)
    message = builder.django_message(built, metadata={"campaign": 42, "delivery": 7})
    connection = get_connection("anymail.backends.test.EmailBackend")
    mail.outbox = []
    assert connection.send_messages([message]) == 1
    params = mail.outbox[0].anymail_test_params
    assert params["subject"] == SUBJECT
    assert params["text_body"] == TEXT
    assert params["html_body"] == HTML
    assert params["from"].display_name == "工程學院 Faculty of Engineering"
    assert params["from"].addr_spec == "news@eng.example.edu"
    assert [(a.display_name, a.addr_spec) for a in params["to"]] == [
        ("陳大文", "chan.taiman@example.org")
    ]
    assert params["reply_to"][0].display_name == "Engineering Office, HKU"
    headers = params["extra_headers"]
    assert headers["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["Message-ID"] == built.message_id
    assert params["metadata"] == {"campaign": 42, "delivery": 7}


def test_backends_that_edit_the_mime_tree_get_a_parsed_copy():
    """anymail's Amazon SES backend walks the parts and adds headers; the console backend asks
    for the charset: both get a real email.message.Message parsed from our bytes."""
    builder = make_builder()
    built = build(builder)
    mime = builder.django_message(built).message()
    assert [part.get_content_type() for part in mime.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    mime["X-Metadata"] = '{"delivery": 7}'
    message = parse(mime.as_bytes(linesep="\r\n"))
    assert message["X-Metadata"] == '{"delivery": 7}'
    assert message["Subject"] == SUBJECT
    assert content(message, "html") == HTML
    stream = io.StringIO()
    get_connection("django.core.mail.backends.console.EmailBackend", stream=stream).send_messages(
        [builder.django_message(built)]
    )
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in stream.getvalue()
