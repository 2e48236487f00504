"""Bounce messages: delivery status notifications (RFC 3464) read from a Maildir or an IMAP
folder, turned into `Feedback` and handed to `campaigns.feedback.feedback_record`.

A DSN is a `multipart/report; report-type=delivery-status` message: a human-readable part, a
`message/delivery-status` part (per-message fields, then one block of fields per recipient:
Final-Recipient, Action, Status, Diagnostic-Code…) and the original message or its headers
(`message/rfc822`, `text/rfc822-headers`), whose Message-ID names our delivery. Each recipient
whose Action is `failed` or `delayed` becomes one bounce: hard when its Status is 5.x.x, soft
when 4.x.x (and always soft when only delayed). The standard library's `email` package does the
parsing: it splits `message/delivery-status` into its blocks of fields already.

Reading is at least once, recording exactly once: a message is marked processed only after its
events are stored, and an event stored before (the same DSN read twice) is a duplicate with no
effect (the event key is a digest of the DSN's Message-ID and the recipient). Anything that is
not a DSN (an auto-reply, a complaint report, a person's answer) is left where it is, unread,
with a warning: a person looks at it.
"""

from __future__ import annotations

import hashlib
import imaplib
import logging
import mailbox
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Protocol

from django.utils import timezone

from campaigns.feedback import Feedback, feedback_record
from campaigns.models import BounceKind, EventKind

log = logging.getLogger(__name__)

SOURCE = "dsn"
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_REPLY_CODE = re.compile(r"^\s*([245])\d\d\b")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_DELIVERY_STATUS = {"message/delivery-status", "message/global-delivery-status"}
_ORIGINAL = {"message/rfc822", "message/global"}
_ORIGINAL_HEADERS = {"text/rfc822-headers", "message/global-headers"}


class NotADeliveryReport(ValueError):
    """The message is not a delivery status notification we can read."""


# --- parsing ------------------------------------------------------------------------------------


def _value(fields: Message, name: str) -> str:
    """A field's value on one line (folded lines joined), or ""."""
    found = fields.get(name)
    return " ".join(str(found).split()) if found is not None else ""


def _typed(value: str) -> str:
    """The value of a typed field (`rfc822; a@b.example`, `smtp; 550 …`) without its type."""
    kind, sep, rest = value.partition(";")
    return rest.strip() if sep and re.fullmatch(r"[A-Za-z0-9-]+", kind.strip()) else value


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        found = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return found if timezone.is_aware(found) else timezone.make_aware(found, timezone.utc)


def _status_blocks(part: Message) -> list[Message]:
    """The blocks of fields of a delivery-status part: per message first, then per recipient."""
    payload = part.get_payload()
    if isinstance(payload, list):  # message/delivery-status: the email package split it
        return payload
    # message/global-delivery-status (RFC 6533) arrives as UTF-8 text: split it ourselves.
    text = part.get_payload(decode=True) or b""
    blocks = re.split(r"\r?\n\s*\r?\n", text.decode("utf-8", "replace").strip())
    return [HeaderParser(policy=policy.default).parsestr(block) for block in blocks if block]


def _original_message_id(report: Message) -> str:
    """The Message-ID of the message that bounced, from the returned message or its headers."""
    for part in report.iter_parts():
        kind = part.get_content_type()
        headers = None
        if kind in _ORIGINAL:
            payload = part.get_payload()
            headers = payload[0] if isinstance(payload, list) and payload else None
        elif kind in _ORIGINAL_HEADERS:
            text = part.get_payload(decode=True) or b""
            headers = HeaderParser(policy=policy.compat32).parsestr(text.decode("utf-8", "replace"))
        if headers is not None:
            found = headers.get("Message-ID")
            if found:
                match = _MESSAGE_ID.search(str(found))
                return match.group(0) if match else " ".join(str(found).split())
    return ""


def _bounce_kind(action: str, status: str, diagnostic: str) -> BounceKind:
    """5.x.x → hard, 4.x.x → soft; a delay is always soft. Without a status, the diagnostic's
    code decides; without either, soft: an address is suppressed only when we know."""
    if action == "delayed":
        return BounceKind.SOFT
    found = _STATUS.match(status) or _STATUS.search(diagnostic) or _REPLY_CODE.match(diagnostic)
    return BounceKind.HARD if found and found.group(1) == "5" else BounceKind.SOFT


def dsn_feedback(raw: bytes) -> list[Feedback]:
    """The bounces a delivery status notification reports: one `Feedback` per recipient whose
    delivery failed or is delayed (none when it only reports deliveries). Raises
    NotADeliveryReport for any other message."""
    report = BytesParser(policy=policy.default).parsebytes(raw)
    if (
        report.get_content_type() != "multipart/report"
        or str(report.get_param("report-type", "")).lower() != "delivery-status"
    ):
        raise NotADeliveryReport(
            f"not a delivery status notification (Content-Type {report.get_content_type()})"
        )
    parts = [p for p in report.iter_parts() if p.get_content_type() in _DELIVERY_STATUS]
    blocks = _status_blocks(parts[0]) if parts else []
    per_message, per_recipient = (blocks[0], blocks[1:]) if blocks else (None, [])
    recipients = [b for b in per_recipient if b.get("Final-Recipient") or b.get("Action")]
    if per_message is None or not recipients:
        raise NotADeliveryReport("a delivery report without a recipient's status")
    own_id = _value(report, "Message-ID")
    reference = own_id or hashlib.sha256(raw).hexdigest()
    message_id = _original_message_id(report)
    reported_at = _date(_value(report, "Date")) or timezone.now()
    events = []
    for fields in recipients:
        action = _value(fields, "Action").lower()
        if action not in {"failed", "delayed"}:
            continue  # delivered, relayed, expanded: nothing went wrong
        email = _typed(_value(fields, "Final-Recipient") or _value(fields, "Original-Recipient"))
        email = email.strip("<>")
        status = _value(fields, "Status")
        diagnostic = _typed(_value(fields, "Diagnostic-Code"))
        digest = hashlib.sha256(f"{reference}\n{email.lower()}".encode()).hexdigest()
        events.append(
            Feedback(
                source=SOURCE,
                event_key=digest,
                kind=EventKind.BOUNCED,
                occurred_at=_date(_value(fields, "Last-Attempt-Date")) or reported_at,
                message_id=message_id,
                email=email,
                bounce_kind=_bounce_kind(action, status, diagnostic),
                description=(diagnostic or f"{action} {status}".strip())[:2000],
            )
        )
    return events


# --- where bounces are read from ----------------------------------------------------------------


class BounceSource(Protocol):
    """A folder of bounce messages: its unread ones, and a way to mark one processed."""

    name: str

    def unread(self) -> Iterator[tuple[str, bytes]]: ...

    def mark_processed(self, key: str) -> None: ...

    def close(self) -> None: ...


class MaildirSource:
    """A Maildir: unread = not flagged seen (in `new` or `cur`); processed = moved to `cur`
    with the seen flag, as a mail client would."""

    def __init__(self, path: str | Path) -> None:
        self.name = f"Maildir {path}"
        self.box = mailbox.Maildir(path, factory=None, create=False)
        if not (Path(path) / "new").is_dir():
            raise mailbox.NoSuchMailboxError(f"{path} is not a Maildir (no new/ folder)")

    def unread(self) -> Iterator[tuple[str, bytes]]:
        for key in sorted(self.box.keys()):
            try:
                if "S" in self.box.get_message(key).get_flags():
                    continue
                raw = self.box.get_bytes(key)
            except KeyError:  # another reader took it meanwhile
                continue
            yield key, raw

    def mark_processed(self, key: str) -> None:
        message = self.box.get_message(key)
        message.set_subdir("cur")
        message.add_flag("S")
        self.box[key] = message

    def close(self) -> None:
        self.box.close()


class ImapSource:
    """An IMAP folder over TLS: unread = without \\Seen (fetched with BODY.PEEK, so a message
    left alone stays unread); processed = flagged \\Seen, and moved to `move_to` if given."""

    def __init__(
        self,
        *,
        host: str,
        user: str,
        password: str,
        folder: str = "INBOX",
        port: int = 993,
        move_to: str = "",
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 60,
    ) -> None:
        self.name = f"IMAP {user}@{host}/{folder}"
        self.move_to = move_to
        context = ssl_context or ssl.create_default_context()
        self.conn = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=timeout)
        self._moved = False
        try:
            self.conn.login(user, password)
            status, answer = self.conn.select(_quoted(folder))
            if status != "OK":
                raise imaplib.IMAP4.error(f"cannot open folder {folder!r}: {answer!r}")
        except Exception:
            self.conn.logout()
            raise

    def unread(self) -> Iterator[tuple[str, bytes]]:
        status, answer = self.conn.uid("SEARCH", None, "UNSEEN")
        if status != "OK":
            raise imaplib.IMAP4.error(f"search failed: {answer!r}")
        for uid in (answer[0] or b"").split():
            status, parts = self.conn.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((p[1] for p in parts or [] if isinstance(p, tuple)), None)
            if status == "OK" and raw is not None:
                yield uid.decode(), raw

    def mark_processed(self, key: str) -> None:
        self.conn.uid("STORE", key, "+FLAGS", "(\\Seen)")
        if not self.move_to:
            return
        if "MOVE" in self.conn.capabilities:
            self.conn.uid("MOVE", key, _quoted(self.move_to))
        else:  # RFC 3501 only: copy, then delete the original (expunged on close)
            self.conn.uid("COPY", key, _quoted(self.move_to))
            self.conn.uid("STORE", key, "+FLAGS", "(\\Deleted)")
            self._moved = True

    def close(self) -> None:
        try:
            if self._moved:
                self.conn.expunge()
            self.conn.close()
        finally:
            self.conn.logout()


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the run ------------------------------------------------------------------------------------


@dataclass
class BounceRun:
    """What one run over a folder did."""

    read: int = 0  # unread messages looked at
    reports: int = 0  # delivery status notifications, now marked processed
    bounces: int = 0  # their failed or delayed recipients
    stored: int = 0  # new events
    duplicates: int = 0  # events recorded before (a message read twice)
    unmatched: int = 0  # new events whose message is not one of our deliveries
    left: int = 0  # messages that are not DSNs, left unread
    warnings: list[str] = field(default_factory=list)


def bounces_process(*, source: BounceSource, chunk: int = 100) -> BounceRun:
    """Read the source's unread messages: each DSN's bounces are recorded (once, however often
    read) and the message marked processed after they are; anything else is left unread."""
    run = BounceRun()
    pending: list[tuple[str, list[Feedback]]] = []
    for key, raw in source.unread():
        run.read += 1
        try:
            events = dsn_feedback(raw)
        except NotADeliveryReport as error:
            run.left += 1
            warning = f"{source.name}: left message {key} alone: {error}"
            run.warnings.append(warning)
            log.warning(warning)
            continue
        pending.append((key, events))
        if len(pending) >= chunk:
            _flush(source, pending, run)
            pending = []
    if pending:
        _flush(source, pending, run)
    return run


def _flush(source: BounceSource, pending: list[tuple[str, list[Feedback]]], run: BounceRun) -> None:
    events = [event for _, found in pending for event in found]
    if events:
        result = feedback_record(events)  # committed before any message is marked
        run.stored += result.stored
        run.duplicates += result.duplicates
        run.unmatched += result.unmatched
    for key, _ in pending:
        source.mark_processed(key)
    run.reports += len(pending)
    run.bounces += len(events)
