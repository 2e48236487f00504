"""The erasure search (tests/system/traces.py) is not blind: it finds an address in any case,
inside the encodings a database dump, a mail, a file or a Celery message hides it in."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from email.message import EmailMessage

import redis
from django.conf import settings

from tests.system import traces

ADDRESS = "Erin.Subject@Example.ORG"


def test_it_finds_the_address_and_its_local_part_in_any_case():
    text = "to ERIN.SUBJECT@example.org, then https://x.test/?who=erin.subject%40example.org"
    found = traces.find(text, "text", ADDRESS)
    assert [t.where for t in found] == ["text", "text"]
    assert traces.find("a keyed hash: 5f2c0a9e41b7d3", "text", ADDRESS) == []


def test_it_reads_a_bytea_value_of_a_dump_in_its_table():
    raw = b"To: someone@example.com\r\n\r\nDear erin.subject@example.org\r\n"
    dump = (
        b"COPY public.recipients_recipient (id, email) FROM stdin;\n1\tann@example.com\n\\.\n"
        b"COPY public.mlm_outboxmessage (id, raw) FROM stdin;\n1\t\\\\x"
        + raw.hex().encode()
        + b"\n"
    )
    found = traces.in_dump(dump, ADDRESS)
    assert {t.where for t in found} == {"database table public.mlm_outboxmessage"}


def test_it_decodes_mime_parts_and_celery_bodies():
    mail = EmailMessage()
    mail["To"] = "editor@staff.example.edu"
    mail["Subject"] = "[TEST] 春季通訊"
    mail.set_content("親愛的 Erin, this mail was sent to ERIN.SUBJECT@EXAMPLE.ORG.", cte="base64")
    assert b"ERIN" not in mail.as_bytes()
    assert traces.find(traces.readable(mail.as_bytes()), "mail", ADDRESS)
    body = base64.b64encode(json.dumps([["erin.subject@example.org"], {}]).encode()).decode()
    message = json.dumps({"body": body, "properties": {"body_encoding": "base64"}})
    assert traces.find(traces.readable(message.encode()), "queue", ADDRESS)


def test_it_searches_paths_and_utf16_and_xlsx_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "erin.subjectexample.org.csv").write_bytes(b"nothing")
    (tmp_path / "a" / "list.txt").write_bytes("ERIN.SUBJECT@example.org".encode("utf-16-le"))
    found = traces.in_files(tmp_path, ADDRESS)
    assert sorted(t.where for t in found) == [
        "file a/list.txt",
        "path a/erin.subjectexample.org.csv",
    ]


def test_it_reads_every_redis_type():
    store = redis.Redis.from_url(settings.REDIS_URL)
    prefix = f"traces-test:{uuid.uuid4().hex}:"
    try:
        store.rpush(prefix + "list", "erin.subject@example.org")
        store.hset(prefix + "hash", "who", "ERIN.SUBJECT@example.org")
        store.zadd(prefix + "zset", {"Erin.Subject@Example.ORG": 1})
        store.set(prefix + "erin.subject", "a key naming them")
        found = {t.where.rsplit(":", 1)[1] for t in traces.in_redis(settings.REDIS_URL, ADDRESS)}
        assert {"list", "hash", "zset", "erin.subject"} <= found
    finally:
        store.delete(*store.keys(prefix + "*"))


def test_it_captures_loggers_that_do_not_propagate():
    capture = traces.LogCapture(ignore=("mail.log",)).start()
    try:
        logging.getLogger("recipients.services").debug("erased %s", "erin.subject@example.org")
        logging.getLogger("mail.log").info("rcpt TO:<erin.subject@example.org>")
    finally:
        capture.stop()
    assert capture.lines == ["DEBUG recipients.services erased erin.subject@example.org"]
