"""The way out (DESIGN §5, steps 3 and 4): which mail backend sends a unit's mail, handing one
message to it over the batch's connection, the throttle before each, and the classification of
what went wrong (transient: retried later; permanent: recorded)."""

from __future__ import annotations

import functools
import smtplib
import socket
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.utils.module_loading import import_string

from campaigns.models import UnitCampaignSettings
from campaigns.sandbox import RenderError
from mlm.mail.headers import HeaderInjection
from mlm.models import SenderUnit


class BackendNotConfigured(ImproperlyConfigured):
    """A unit chose a mail backend that settings.MLM_MAIL_BACKENDS no longer offers."""


def backend(unit: SenderUnit | None = None) -> str:
    """The dotted path of the mail backend that sends `unit`'s campaigns: its choice among
    MLM_MAIL_BACKENDS (campaign settings), else the default EMAIL_BACKEND."""
    name = ""
    if unit is not None:
        name = (
            UnitCampaignSettings.objects.filter(unit_id=unit.pk)
            .values_list("mail_backend", flat=True)
            .first()
        ) or ""
    if not name:
        return settings.EMAIL_BACKEND
    try:
        return settings.MLM_MAIL_BACKENDS[name]
    except KeyError:
        # Not silently the default: the unit chose where its mail goes (an ESP, a relay).
        raise BackendNotConfigured(
            f"the unit's mail backend {name!r} is not in MLM_MAIL_BACKENDS"
        ) from None


@functools.lru_cache(maxsize=32)
def is_esp(backend_path: str) -> bool:
    """Whether the backend is one of anymail's ESPs: they take parts, build their own MIME and
    sign it, and answer with their own message id."""
    from anymail.backends.base import AnymailBaseBackend

    try:
        return issubclass(import_string(backend_path), AnymailBaseBackend)
    except ImportError:
        return backend_path.startswith("anymail.")


def signs(backend_path: str) -> bool:
    """Whether we DKIM-sign what goes through this backend."""
    # On ESP paths the ESP builds the MIME and signs; our signature would not travel anyway.
    return not is_esp(backend_path)


def provider_message_id(message: Any) -> str:
    """The id the ESP gave a sent message (anymail's `anymail_status`), or "" (SMTP, Outbox)."""
    status = getattr(message, "anymail_status", None)
    found = getattr(status, "message_id", None)
    if found is None:
        return ""
    if isinstance(found, set | frozenset | list | tuple):  # one per recipient: we send to one
        return ",".join(sorted(str(item) for item in found))[:255]
    return str(found)[:255]


TRANSIENT, PERMANENT = "transient", "permanent"


def classify(error: BaseException) -> tuple[str, str]:
    """(transient or permanent, the server's answer) of a send error: 4xx, timeouts and lost
    connections are transient (retried later); 5xx and refused content are permanent."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()), (550, b"recipient refused"))
        return _by_code(code, reply)
    if isinstance(error, smtplib.SMTPResponseException):
        return _by_code(error.smtp_code, error.smtp_error)
    if isinstance(error, RenderError | HeaderInjection | ValueError | UnicodeError):
        return PERMANENT, f"not built: {error}"
    try:
        from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
    except ImportError:  # pragma: no cover - anymail is a dependency
        AnymailAPIError = AnymailRecipientsRefused = ()
    if AnymailRecipientsRefused and isinstance(error, AnymailRecipientsRefused):
        return PERMANENT, str(error)[:500]
    if AnymailAPIError and isinstance(error, AnymailAPIError):
        status = getattr(error, "status_code", None)
        if status is not None and 400 <= status < 500 and status != 429:
            return PERMANENT, str(error)[:500]
        return TRANSIENT, str(error)[:500]
    if isinstance(error, smtplib.SMTPException | OSError | socket.timeout | TimeoutError):
        return TRANSIENT, f"{type(error).__name__}: {error}"[:500]
    return TRANSIENT, f"{type(error).__name__}: {error}"[:500]


def _by_code(code: int, reply: bytes | str) -> tuple[str, str]:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    answer = f"{code} {text}"[:500]
    return (TRANSIENT if 400 <= code < 500 else PERMANENT), answer


def connection_close(conn) -> None:
    """Close the batch's backend connection; a close that fails leaves it closed anyway."""
    try:
        conn.close()
    except Exception:
        if hasattr(conn, "connection"):
            conn.connection = None


def throttle_wait(unit_id: int, backend_path: str) -> None:
    """Wait for the unit's and the backend's rate (MLM_DISPATCH_UNIT_RATE, _BACKEND_RATE)."""
    buckets = []
    if settings.MLM_DISPATCH_UNIT_RATE:
        from mlm.mail.throttle import unit_key

        rate = settings.MLM_DISPATCH_UNIT_RATE
        buckets.append((unit_key(unit_id), rate, rate))
    if settings.MLM_DISPATCH_BACKEND_RATE:
        from mlm.mail.throttle import backend_key

        rate = settings.MLM_DISPATCH_BACKEND_RATE
        buckets.append((backend_key(backend_path), rate, rate))
    if buckets:
        from mlm.mail.throttle import throttle

        throttle().take(buckets, timeout=settings.MLM_DISPATCH_LEASE_SECONDS / 4)


def _hand_over(conn, message) -> None:
    """Hand one message to the backend, on the batch's one connection.

    Our prebuilt bytes go to Django's SMTP backend's open connection directly: its
    `send_messages` would parse both addresses again with the email package (1.1 ms a message,
    as much as building it, bench/dispatch.py) to arrive at the same two ASCII addresses, and,
    on a connection it had not opened itself, connect, EHLO and QUIT around every message.
    Anything else (non-ASCII addresses, anymail, the Outbox) takes the backend's own way.
    """
    if not isinstance(conn, SMTPBackend):
        conn.send_messages([message])
        return
    if conn.connection is None:
        conn.open()  # kept open for the batch: send_messages then leaves it open too
    built = getattr(message, "built", None)
    if built is not None and built.from_addr.isascii() and built.to_addr.isascii():
        conn.connection.sendmail(built.from_addr, [built.to_addr], built.raw)
    else:
        conn.send_messages([message])


def send_one(conn, message, domain: str) -> None:
    """Hand one message over, within the recipient domain's concurrency limit if one is set."""
    limit = settings.MLM_DISPATCH_DOMAIN_CONCURRENCY
    if not limit:
        _hand_over(conn, message)
        return
    from mlm.mail.throttle import concurrency_limiter, domain_key

    with concurrency_limiter().slot(
        domain_key(domain),
        limit=limit,
        lease_seconds=settings.EMAIL_TIMEOUT + 30,
        timeout=settings.EMAIL_TIMEOUT,
    ):
        _hand_over(conn, message)


def is_connect_error(error: BaseException) -> bool:
    """Refused, reset, timed out or hung up: on a fresh connection, nobody is taking mail."""
    answered = smtplib.SMTPResponseException | smtplib.SMTPRecipientsRefused  # a 4xx code
    return isinstance(error, OSError | TimeoutError) and not isinstance(error, answered)
