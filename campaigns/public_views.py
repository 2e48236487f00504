"""The web version of a mail: the page behind its "view in your browser" link, no login.

A signed token names one delivery (consent.tokens). The page is the mail as its recipient
received it — rendered again from the campaign and the recipient, with the same sandboxed
templates, layout and unsubscribe and preference links; no copy of anyone's mail is stored. It
carries no tracking: tracking is the ESP's, on the mail it sends, never on this page.

The mail's HTML is the page itself, under a strict Content-Security-Policy: no scripts, no
forms, no frames, no plugins, images and fonts over https only, and `sandbox` (a unique origin:
the mail can reach no cookie of the site). It is never indexed (meta robots and X-Robots-Tag),
never kept by a shared cache, and sends no Referer to the image hosts the mail names. The
mail's own `viewport` makes it fit a phone as it does in a mail program; one is added if the
layout has none.

Every link we cannot honour — a token we did not sign, a mail not sent, an erased recipient, a
unit that turned web versions off, a template that no longer renders — gets the one invalid
link page of the recipient pages (consent.public_views), never a traceback.
"""

from __future__ import annotations

import logging
import re

from csp.constants import NONE
from csp.decorators import csp_replace
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_http_methods

from campaigns.mail import CampaignMailer
from campaigns.selectors import web_version_delivery
from consent.public_views import invalid_link, too_many
from mlm.languages import language_of
from mlm.ratelimit import limited

logger = logging.getLogger(__name__)

_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)
_DOCTYPE = re.compile(r"<!doctype[^>]*>", re.IGNORECASE)
_VIEWPORT = re.compile(r"<meta\b[^>]*\bname\s*=\s*[\"']?viewport", re.IGNORECASE)
_ROBOTS = '<meta name="robots" content="noindex, nofollow">'
_REFERRER = '<meta name="referrer" content="no-referrer">'
_VIEWPORT_META = '<meta name="viewport" content="width=device-width, initial-scale=1">'


def web_page(html: str) -> str:
    """The mail's HTML as a page: noindex and no-referrer first in its head, and a viewport
    for phones when the mail has none."""
    metas = _ROBOTS + _REFERRER + ("" if _VIEWPORT.search(html) else _VIEWPORT_META)
    found = _HEAD.search(html) or _DOCTYPE.search(html)
    at = found.end() if found else 0
    return html[:at] + metas + html[at:]


@csp_replace(
    {
        "default-src": [NONE],
        "script-src": [NONE],
        "style-src": ["'unsafe-inline'"],
        "img-src": ["https:", "data:"],
        "font-src": ["https:", "data:"],
        "object-src": [NONE],
        "frame-src": [NONE],
        "base-uri": [NONE],
        "form-action": [NONE],
        "frame-ancestors": [NONE],
        "sandbox": ["allow-popups", "allow-popups-to-escape-sandbox"],
    }
)
def _mail_page(html: str, lang: str) -> HttpResponse:
    response = HttpResponse(web_page(html), content_type="text/html; charset=utf-8")
    response["Content-Language"] = lang
    response["Cache-Control"] = "no-store"  # a personal page: never kept by a shared cache
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    return response


@limited("page_ip", methods=("GET", "HEAD"), too_many=too_many)
@require_http_methods(["GET", "HEAD"])
def web_version(request: HttpRequest, token: str) -> HttpResponse:
    """The mail of one delivery as its recipient received it, or the invalid link page."""
    delivery = web_version_delivery(token)
    if delivery is None:
        return invalid_link(request)
    recipient = delivery.recipient
    try:
        mailer = CampaignMailer(delivery.campaign)
        html = mailer.web_version(recipient).html
    except Exception:  # I10: whatever broke since it was sent, the recipient sees no traceback
        logger.exception("The web version of delivery %s does not render", delivery.pk)
        return invalid_link(request)
    lang = language_of(recipient.locale or delivery.campaign.unit.default_locale)
    return _mail_page(html, lang)
