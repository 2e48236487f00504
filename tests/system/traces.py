"""Where a person's address can remain after erasure (I9), and a search of each place for it in
any case: a plain `pg_dump` of the database, every file under a folder, every Redis key and
value, and log output. Encoded forms the search would otherwise miss are decoded first: bytea
columns (hex in the dump), MIME parts (base64 or quoted-printable), Celery messages (their
body in base64) and sessions (signed and compressed).

Keyed hashes never match: they are hex digests, not text of the address.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import json
import logging
import re
import subprocess
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from django.conf import settings

PG_DUMP_GLOB = "/usr/lib/postgresql/*/bin/pg_dump"
_BYTEA = re.compile(rb"\\\\x((?:[0-9a-f]{2})+)")  # a bytea value in COPY text: \\x4142...
_HEADER = re.compile(rb"^[A-Za-z][A-Za-z0-9-]*: ")  # a mail message starts with a header
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]{16,}$")


@dataclass(frozen=True)
class Trace:
    """One place that still holds the address, with the text around it."""

    where: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.where}: …{self.excerpt}…"


def needles(address: str) -> list[str]:
    """What is searched for: the whole address and its local part (which also finds it
    URL-encoded or split from its domain)."""
    return [address, address.split("@", 1)[0]]


def find(text: str, where: str, address: str) -> list[Trace]:
    """Every place in `text` that holds the address or its local part, in any case."""
    pattern = re.compile("|".join(re.escape(n) for n in needles(address)), re.IGNORECASE)
    return [
        Trace(where, text[max(0, m.start() - 60) : m.end() + 60].replace("\n", " "))
        for m in pattern.finditer(text)
    ]


def readable(data: bytes) -> str:
    """The text of `data` with what it encodes decoded: bytea values of a dump (in place, so
    that they stay in their table), the parts of a MIME message, the body of a Celery
    message."""
    data = _BYTEA.sub(lambda m: readable(binascii.unhexlify(m.group(1))).encode(), data)
    decoded = [data.decode("utf-8", errors="replace")]
    if _HEADER.match(data):
        message = email.message_from_bytes(data, policy=email.policy.default)
        for part in message.walk():
            if not part.is_multipart() and part.get_content_maintype() == "text":
                decoded.append(str(part.get_content()))
    decoded.extend(_celery_bodies(decoded[0]))
    return "\n".join(decoded)


def _celery_bodies(text: str) -> Iterator[str]:
    """The decoded body of a Celery (kombu) message kept in Redis as JSON."""
    try:
        message = json.loads(text)
    except ValueError:
        return
    if isinstance(message, dict) and isinstance(message.get("body"), str):
        body = message["body"]
        if _BASE64.match(body):
            yield base64.b64decode(body).decode("utf-8", errors="replace")


def in_database(address: str) -> list[Trace]:
    """The address in a plain `pg_dump --data-only` of the Django database."""
    binaries = sorted(Path("/").glob(PG_DUMP_GLOB.lstrip("/")))
    assert binaries, f"pg_dump not found ({PG_DUMP_GLOB})"
    db = settings.DATABASES["default"]
    command = [
        str(binaries[-1]),
        "--data-only",
        "--no-owner",
        "--host",
        db.get("HOST") or "127.0.0.1",
        "--port",
        str(db.get("PORT") or 5432),
        "--username",
        db.get("USER") or "postgres",
        db["NAME"],
    ]
    env = {"PGPASSWORD": db.get("PASSWORD") or ""}
    dump = subprocess.run(command, capture_output=True, check=True, env=env, timeout=120).stdout
    assert b"COPY public.recipients_recipient" in dump, "the dump holds no recipients table"
    return in_dump(dump, address) + _in_sessions(address)


def _in_sessions(address: str) -> list[Trace]:
    """Sessions are signed and compressed in their table: the dump cannot show what they say
    (e.g. a message waiting for the next page)."""
    from django.contrib.sessions.models import Session

    return [
        trace
        for session in Session.objects.all()
        for trace in find(str(session.get_decoded()), "database table django_session", address)
    ]


def in_dump(dump: bytes, address: str) -> list[Trace]:
    """The address in a plain SQL dump, each trace named by its table."""
    text = readable(dump)
    traces = []
    for section in re.split(r"(?=^COPY )", text, flags=re.MULTILINE):
        table = section.split(" ", 2)[1] if section.startswith("COPY ") else "dump"
        traces.extend(find(section, f"database table {table}", address))
    return traces


def in_files(folder: Path, address: str) -> list[Trace]:
    """The address in the path or the content of any file under `folder` (UTF-16 files and
    XLSX parts included); the local part finds a name that storage cleaned of its "@"."""
    traces = []
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        traces.extend(find(relative, f"path {relative}", address))
        if not path.is_file():
            continue
        data = path.read_bytes()
        texts = [readable(data)]
        for encoding in ("utf-16-le", "utf-16-be"):
            texts.append(data.decode(encoding, errors="ignore"))
        if data[:4] == b"PK\x03\x04":
            texts.extend(_zip_texts(path))
        for text in texts:
            traces.extend(find(text, f"file {path.relative_to(folder)}", address))
    return traces


def _zip_texts(path: Path) -> Iterator[str]:
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            yield archive.read(member).decode("utf-8", errors="replace")


def in_redis(url: str, address: str) -> list[Trace]:
    """The address in any key or value of the Redis database at `url`, of every type."""
    store = redis.Redis.from_url(url)
    traces = []
    for key in store.scan_iter(count=1000):
        name = key.decode("utf-8", errors="replace")
        traces.extend(find(name, f"redis key {name}", address))
        for value in _values(store, key):
            traces.extend(find(readable(value), f"redis value of {name}", address))
    return traces


def _values(store: redis.Redis, key: bytes) -> Iterable[bytes]:
    kind = store.type(key).decode()
    if kind == "string":
        return [store.get(key) or b""]
    if kind == "list":
        return store.lrange(key, 0, -1)
    if kind == "set":
        return list(store.smembers(key))
    if kind == "zset":
        return store.zrange(key, 0, -1)
    if kind == "hash":
        return [part for pair in store.hgetall(key).items() for part in pair]
    if kind == "stream":
        return [part for _, fields in store.xrange(key) for pair in fields.items() for part in pair]
    return [store.dump(key) or b""]


def in_log(text: str, where: str, address: str) -> list[Trace]:
    """The address in captured log output."""
    return find(text, where, address)


class LogCapture(logging.Handler):
    """Every record of every logger, at DEBUG, formatted with its traceback: attached to the
    root logger and to each logger that does not propagate (the project's own). Loggers named
    in `ignore` (and their children) belong to something outside the app, e.g. a test server."""

    def __init__(self, ignore: tuple[str, ...] = ()) -> None:
        super().__init__(logging.DEBUG)
        self.ignore = ignore
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []
        self._changed: list[tuple[logging.Logger, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if any(record.name == name or record.name.startswith(f"{name}.") for name in self.ignore):
            return
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)

    def start(self) -> LogCapture:
        loggers = [logging.getLogger()] + [
            logger
            for logger in logging.root.manager.loggerDict.values()
            if isinstance(logger, logging.Logger) and not logger.propagate
        ]
        for logger in loggers:
            self._changed.append((logger, logger.level))
            logger.setLevel(logging.DEBUG)
            logger.addHandler(self)
        return self

    def stop(self) -> None:
        for logger, level in self._changed:
            logger.removeHandler(self)
            logger.setLevel(level)
        self._changed.clear()
