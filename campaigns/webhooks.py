"""Tracking webhooks of the mail providers: django-anymail's own views, one per ESP, under
/webhooks/anymail/ (e.g. /webhooks/anymail/sendgrid/tracking/).

anymail validates each call (basic auth with WEBHOOK_SECRET; Mailgun's signature), parses it
and sends its `tracking` signal once per event. `on_tracking` turns each event into `Feedback`;
the views are wrapped so that the events of one request are recorded together, in one
`feedback_record` call, after anymail has parsed them all (SendGrid posts up to a thousand
events at once). Outside such a request, an event is recorded at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from functools import wraps
from typing import Any

from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.signals import AnymailTrackingEvent, EventType
from anymail.utils import get_anymail_setting
from csp.decorators import csp_exempt
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.urls import URLPattern
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from campaigns.feedback import Feedback, feedback_record
from campaigns.models import BounceKind, EventKind
from campaigns.services.status import send_error_text
from mlm.db import once_more_on_a_new_connection
from recipients.addresses import address_hash

log = logging.getLogger(__name__)

# The events of the request being handled, or None outside a webhook request.
_batch: ContextVar[list[Feedback] | None] = ContextVar("feedback_batch", default=None)

KINDS = {
    EventType.QUEUED: EventKind.QUEUED,
    EventType.SENT: EventKind.SENT,
    EventType.DELIVERED: EventKind.DELIVERED,
    EventType.DEFERRED: EventKind.DEFERRED,
    EventType.BOUNCED: EventKind.BOUNCED,
    EventType.COMPLAINED: EventKind.COMPLAINED,
    EventType.UNSUBSCRIBED: EventKind.UNSUBSCRIBED,
    EventType.OPENED: EventKind.OPENED,
    EventType.CLICKED: EventKind.CLICKED,
    EventType.REJECTED: EventKind.REJECTED,
    EventType.FAILED: EventKind.REJECTED,
}


def _source(esp_name: str) -> str:
    """anymail's ESP name as a source: "Amazon SES" → "amazon_ses"."""
    return esp_name.lower().replace(" ", "_")[:20]


def _bounce_kind(source: str, esp_event: Any) -> BounceKind:
    """Hard (the address is gone) or soft (full mailbox, blocked, retries given up on), as each
    provider says it; anymail reports both as "bounced"."""
    if not isinstance(esp_event, dict):
        return BounceKind.HARD
    if source == "amazon_ses":
        bounce_type = (esp_event.get("bounce") or {}).get("bounceType")
        return BounceKind.HARD if bounce_type == "Permanent" else BounceKind.SOFT
    if source == "sendgrid":
        # "bounce": the receiving server refused the address; "blocked": it refused for now.
        return BounceKind.SOFT if esp_event.get("type") == "blocked" else BounceKind.HARD
    if source == "mailgun":
        data = esp_event.get("event-data") or {}
        code = (data.get("delivery-status") or {}).get("code")
        hard = data.get("reason") in ("bounce", "suppress-bounce") or (
            isinstance(code, int) and 500 <= code < 600
        )
        return BounceKind.HARD if hard else BounceKind.SOFT
    if source == "postmark":
        kind = esp_event.get("Type") or esp_event.get("SuppressionReason")
        return BounceKind.HARD if kind == "HardBounce" else BounceKind.SOFT
    return BounceKind.HARD


def _event_key(event: AnymailTrackingEvent, source: str) -> str:
    """The provider's event id, or a digest of the raw event when it gives none (Postmark's
    deliveries, opens, clicks); with a keyed digest of the address, because one Amazon SES
    notification names several recipients under one id."""
    key = event.event_id
    if not key:
        raw = event.esp_event
        if hasattr(raw, "lists"):  # a QueryDict (Mailgun's legacy form posts)
            raw = sorted(raw.lists())
        text = json.dumps(raw, sort_keys=True, default=str)
        key = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    if event.recipient and source == "amazon_ses":
        key = f"{key}/{address_hash(event.recipient.strip().lower())[:16]}"
    return key if len(key) <= 200 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def feedback_from_anymail(event: AnymailTrackingEvent, esp_name: str) -> Feedback:
    """One anymail tracking event as `Feedback`; the delivery id comes back in the metadata we
    sent ({"delivery": "<id>", "campaign": "<code>"})."""
    source = _source(esp_name)
    kind = KINDS.get(event.event_type, EventKind.UNKNOWN)
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    said = [part for part in (event.description, event.mta_response) if part]
    return Feedback(
        source=source,
        event_key=_event_key(event, source),
        kind=kind,
        occurred_at=event.timestamp or timezone.now(),
        message_id=str(event.message_id or ""),
        delivery_ref=str(metadata.get("delivery") or ""),
        email=event.recipient or "",
        bounce_kind=_bounce_kind(source, event.esp_event) if kind == EventKind.BOUNCED else "",
        description=": ".join(str(part) for part in said),
        url=event.click_url or "",
    )


def on_tracking(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
    """anymail's `tracking` signal: keep the event for the request's batch, or record it."""
    feedback = feedback_from_anymail(event, esp_name)
    batch = _batch.get()
    if batch is None:
        feedback_record([feedback])
    else:
        batch.append(feedback)


def _secured(view: Callable) -> bool:
    """A provider authenticated by basic auth needs WEBHOOK_SECRET; anymail alone would only
    warn and accept anyone's events. Mailgun signs its calls (MAILGUN_WEBHOOK_SIGNING_KEY)."""
    view_class = getattr(view, "view_class", None)
    if view_class is not None and not getattr(view_class, "warn_if_no_basic_auth", True):
        return True
    return bool(get_anymail_setting("webhook_secret", default=None))


def batched(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap an anymail webhook view: refuse it while unsecured, log refusals, and record the
    events of a request in one batch once anymail has accepted and parsed them all."""

    @wraps(view)
    def webhook(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not _secured(view):
            log.warning(
                "refused a webhook call to %s: set ANYMAIL_WEBHOOK_SECRET to receive it",
                request.path,
            )
            return HttpResponseForbidden("Webhooks are off until ANYMAIL_WEBHOOK_SECRET is set.")
        batch: list[Feedback] = []
        token = _batch.set(batch)
        try:
            response = view(request, *args, **kwargs)
        except ImproperlyConfigured as error:  # e.g. Mailgun without its signing key
            log.warning("refused a webhook call to %s: not configured: %s", request.path, error)
            return HttpResponseForbidden("This webhook is not configured.")
        except AnymailWebhookValidationFailure as error:
            # Answered here, not raised: Django would log every forged call as an ERROR.
            log.warning("refused a webhook call to %s: %s", request.path, error)
            return HttpResponseBadRequest("Not authenticated.")
        except Exception as error:  # anymail could not parse what was posted
            # The error may quote the payload: its addresses are blanked, as a log is never
            # erased (I9).
            log.warning(
                "refused a webhook call to %s: malformed (%s)", request.path, send_error_text(error)
            )
            return HttpResponseBadRequest("Malformed webhook call.")
        finally:
            _batch.reset(token)
        if batch and response.status_code < 300:
            _record(batch)
        if response.status_code >= 400:
            log.warning("refused a webhook call to %s: %s", request.path, response.status_code)
        return response

    # No CSP header: the answer is read by a provider's HTTP client, not a browser (building
    # the policy was a tenth of a single-event request's time).
    return csrf_exempt(csp_exempt()(webhook))


def _record(batch: list[Feedback]) -> None:
    """`feedback_record` without Django's connection health check (a SELECT 1 before the first
    query of each request: a round trip for every single-event webhook). A connection that
    died since the last request fails the first statement instead, and the batch is recorded
    once more on a new connection: safe, as a stored event is never stored or acted on twice."""
    once_more_on_a_new_connection(lambda: feedback_record(batch), what="webhook batch")


def anymail_urlpatterns() -> list[URLPattern]:
    """anymail's own URL patterns (anymail.urls), each view wrapped by `batched`."""
    from anymail import urls

    return [
        URLPattern(p.pattern, batched(p.callback), p.default_args, p.name) for p in urls.urlpatterns
    ]
