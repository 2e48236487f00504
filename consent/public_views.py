"""Public pages of recipients: unsubscribe, RFC 8058 one-click, preference centre, double opt-in.

Recipients never log in: a signed token in the link names them (consent.tokens). GET shows,
POST acts (link scanners and prefetchers follow GETs); every form but the one-click POST carries
a CSRF token. Pages render in the recipient's language: the switcher's `?lang=`, else the
recipient's locale, else the browser's Accept-Language, else the unit's default.

What an answer may reveal — the decision behind "invalid tokens and tokens of people already
unsubscribed get answers of identical status and size":

- The one-click POST answers every well-formed request (body `List-Unsubscribe=One-Click`) with
  the same status, 200, and the same 32-byte body: for a fresh unsubscribe, a repeated one, a
  person already unsubscribed, erased or gone, and a token we never signed alike. Whoever posts
  a token — a mail provider, a scanner, someone holding a forwarded mail, someone guessing —
  learns nothing from the answer, and a provider's retry is harmless. (A malformed request gets
  400 whatever its token; past the rate limit, 429.)
- The pages (GET, and POSTs of forms) answer a token we did not sign, a tampered one, and one
  whose recipient is erased or gone with one friendly 404 page whose bytes do not depend on the
  token (it does not echo it). A genuine token of a person who already unsubscribed shows the
  page as usual: it is the person's own way back (undo, preference centre).
- No answer is ever a traceback: lookups are by code from a verified token and return None
  rather than raise.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.translation.trans_real import parse_accept_lang_header
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from consent.models import Channel, DMType
from consent.public_forms import (
    SCOPE_DM_TYPE,
    SCOPE_INSTITUTION,
    DMTypeChoiceForm,
    SubscribeForm,
    UndoForm,
    UnsubscribeForm,
)
from consent.public_selectors import (
    confirmed_recipient,
    opted_out_everywhere,
    preference_states,
    public_target,
    subscription_request_pending,
)
from consent.public_services import (
    one_click_withdraw,
    recipient_preferences_save,
    recipient_resubscribe,
    recipient_unsubscribe,
    recipient_unsubscribe_everywhere,
    subscription_request_confirm,
    subscription_request_create,
)
from consent.tokens import make_recipient_token, read_recipient_token, read_subscription_token
from mlm.models import SenderUnit
from mlm.ratelimit import client_ip, exceeded, exceeded_any, limited
from recipients.addresses import address_hash

ONE_CLICK_BODY = b"Your request has been received.\n"
ONE_CLICK_MALFORMED = b"Expected List-Unsubscribe=One-Click\n"


# Language, rendering, the answers shared by every page ---------------------------------------


def _supported(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return translation.get_supported_language_variant(value.replace("_", "-").lower())
    except LookupError:
        return None


def choose_language(
    request: HttpRequest, *, locale: str | None = None, unit: SenderUnit | None = None
) -> str:
    """The switcher's choice, the recipient's locale, Accept-Language, the unit's default."""
    for candidate in (request.GET.get("lang"), locale):
        if code := _supported(candidate):
            return code
    for accepted, _q in parse_accept_lang_header(request.headers.get("Accept-Language", "")):
        if accepted != "*" and (code := _supported(accepted)):
            return code
    return _supported(unit.default_locale if unit else None) or settings.LANGUAGE_CODE


def _page(
    request: HttpRequest,
    template: str,
    context: dict,
    *,
    lang: str,
    unit: SenderUnit | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "unit": unit,
        "institution_name": settings.MLM_INSTITUTION_NAME,
        "languages": settings.LANGUAGES,
        **context,
    }
    with translation.override(lang):
        response = render(request, template, context, status=status)
    response["Content-Language"] = lang
    response["Cache-Control"] = "no-store"  # personal pages: never kept by a shared cache
    response["X-Robots-Tag"] = "noindex"
    patch_vary_headers(response, ["Accept-Language"])
    return response


def invalid_link(request: HttpRequest) -> HttpResponse:
    """The one answer to every link we cannot honour (same bytes whatever the token)."""
    return _page(request, "public/invalid_link.html", {}, lang=choose_language(request), status=404)


def too_many(request: HttpRequest, retry_after: int) -> HttpResponse:
    response = _page(request, "public/too_many.html", {}, lang=choose_language(request), status=429)
    response["Retry-After"] = str(retry_after)
    return response


def _who(request: HttpRequest) -> dict:
    """The evidence of the person's own action: their address and browser."""
    return {
        "ip_address": client_ip(request),
        "user_agent": request.headers.get("User-Agent", "")[:500],
    }


def _masked(email: str) -> str:
    """Enough of the address for the person to recognise it, too little to learn it."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"


# Unsubscribe, one-click, undo -----------------------------------------------------------------


@limited("page_ip", methods=("GET", "HEAD"), too_many=too_many)
@limited("action_ip", methods=("POST",), too_many=too_many)
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """The page of the footer link: three buttons, each a POST; afterwards, an undo."""
    target = public_target(token)
    if target is None:
        return invalid_link(request)
    recipient, dm_type = target.recipient, target.dm_type
    lang = choose_language(request, locale=recipient.locale, unit=recipient.unit)
    context = {"token": token, "dm_type": dm_type}
    if request.method == "POST":
        form = UnsubscribeForm(request.POST, has_dm_type=dm_type is not None)
        if form.is_valid():
            scope = form.cleaned_data["scope"]
            if scope == SCOPE_INSTITUTION:
                done = recipient_unsubscribe_everywhere(recipient=recipient, **_who(request))
            else:
                scoped = dm_type if scope == SCOPE_DM_TYPE else None
                button = scoped.name if scoped else f"everything from {recipient.unit.name}"
                done = recipient_unsubscribe(
                    recipient=recipient,
                    dm_type=scoped,
                    channel=Channel.PREFERENCE_CENTRE,
                    evidence=f"Unsubscribe page: pressed “Unsubscribe from {button}”",
                    campaign_code=target.data.campaign_code,
                    **_who(request),
                )
            context.update(scope=scope, were_subscribed=done.were_subscribed)
            return _page(
                request, "public/unsubscribed.html", context, lang=lang, unit=recipient.unit
            )
    return _page(request, "public/unsubscribe.html", context, lang=lang, unit=recipient.unit)


@csrf_exempt  # RFC 8058: providers post without cookies or CSRF token. The only exempt view.
@require_http_methods(["GET", "HEAD", "POST"])
def one_click(request: HttpRequest, token: str) -> HttpResponse:
    """RFC 8058 one-click: a POST withdraws the mail's DM type (or every DM type of the unit);
    a GET never does — it shows the unsubscribe page."""
    if request.method != "POST":
        return unsubscribe(request, token)
    if request.POST.get("List-Unsubscribe") != "One-Click":
        return HttpResponse(ONE_CLICK_MALFORMED, status=400, content_type="text/plain")
    data = read_recipient_token(token)
    checks = [("one_click_ip", client_ip(request))]
    if data is not None:
        checks.append(("one_click_token", f"{data.recipient_code}:{data.dm_type_code or ''}"))
    # Both limits in one round trip to Redis, before any database work.
    if retry_after := exceeded_any(checks):
        return HttpResponse(status=429, headers={"Retry-After": str(retry_after)})
    if data is not None:
        one_click_withdraw(data=data, **_who(request))
    return HttpResponse(ONE_CLICK_BODY, content_type="text/plain; charset=utf-8")


@limited("action_ip", methods=("POST",), too_many=too_many)
@require_POST
def undo(request: HttpRequest, token: str) -> HttpResponse:
    """Take an unsubscribe back by the person's own click (a grant, channel preference centre)."""
    target = public_target(token)
    if target is None:
        return invalid_link(request)
    recipient = target.recipient
    lang = choose_language(request, locale=recipient.locale, unit=recipient.unit)
    form = UndoForm(
        request.POST,
        dm_types=DMType.objects.for_unit(recipient.unit).filter(archived_at__isnull=True),
    )
    if not form.is_valid():
        context = {"token": token, "dm_type": target.dm_type}
        return _page(
            request, "public/unsubscribe.html", context, lang=lang, unit=recipient.unit, status=400
        )
    lifted = form.cleaned_data["scope"] == SCOPE_INSTITUTION
    recipient_resubscribe(
        recipient=recipient, dm_types=form.chosen(), lift_opt_out=lifted, **_who(request)
    )
    context = {"token": token, "dm_types": form.chosen(), "lifted": lifted}
    return _page(request, "public/resubscribed.html", context, lang=lang, unit=recipient.unit)


# Preference centre ------------------------------------------------------------------------------


@limited("page_ip", methods=("GET", "HEAD"), too_many=too_many)
@limited("action_ip", methods=("POST",), too_many=too_many)
@require_http_methods(["GET", "HEAD", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    """Every non-archived DM type of the unit with its notice and a box showing the state."""
    target = public_target(token)
    if target is None:
        return invalid_link(request)
    recipient = target.recipient
    lang = choose_language(request, locale=recipient.locale, unit=recipient.unit)
    saved = None
    if request.method == "POST":
        states = preference_states(recipient)
        form = DMTypeChoiceForm(request.POST, dm_types=[s.dm_type for s in states])
        if form.is_valid():
            saved = recipient_preferences_save(
                recipient=recipient, wanted={t.code for t in form.chosen()}, **_who(request)
            )
    context = {
        "token": token,
        "states": preference_states(recipient),
        "saved": saved,
        "opted_out": opted_out_everywhere(recipient),
        "masked_email": _masked(recipient.email),
    }
    return _page(request, "public/preferences.html", context, lang=lang, unit=recipient.unit)


# Double opt-in ----------------------------------------------------------------------------------


@limited("page_ip", methods=("GET", "HEAD"), too_many=too_many)
@limited("subscribe_ip", methods=("POST",), too_many=too_many)
@require_http_methods(["GET", "HEAD", "POST"])
def subscribe(request: HttpRequest, slug: str) -> HttpResponse:
    """The unit's public form. Its answer never depends on whether the address is known."""
    # Public, no membership: the keyword is not `unit_slug`, which marks the scoped unit pages.
    unit = SenderUnit.objects.filter(slug=slug).first()
    if unit is None:
        return invalid_link(request)
    lang = choose_language(request, unit=unit)
    dm_types = list(DMType.objects.for_unit(unit).filter(archived_at__isnull=True))
    with translation.override(lang):  # the statement and the errors in the page's language
        form = SubscribeForm(request.POST or None, unit=unit, dm_types=dm_types)
        valid = request.method == "POST" and form.is_valid()
        wording = f"[{lang}] {form.wording()}" if valid else ""  # as the page showed it
    if valid:
        key = address_hash(form.cleaned_data["email"])
        if retry_after := exceeded(request, limit="subscribe_address", key=key):
            return too_many(request, retry_after)
        if not form.is_bot():  # a filled honeypot gets the same answer and no mail
            subscription_request_create(
                unit=unit,
                email=form.cleaned_data["email"],
                first_name=form.cleaned_data["first_name"],
                last_name=form.cleaned_data["last_name"],
                dm_types=form.chosen(),
                wording=wording,
                locale=lang,
                **_who(request),
            )
        context = {"days": settings.MLM_SUBSCRIPTION_REQUEST_DAYS}
        return _page(request, "public/subscribe_sent.html", context, lang=lang, unit=unit)
    context = {"form": form, "dm_types": dm_types, "ticked": request.POST.getlist("dm")}
    return _page(request, "public/subscribe.html", context, lang=lang, unit=unit)


@limited("page_ip", methods=("GET", "HEAD"), too_many=too_many)
@limited("action_ip", methods=("POST",), too_many=too_many)
@require_http_methods(["GET", "HEAD", "POST"])
def subscribe_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The confirmation link: GET shows one button (scanners follow links), POST grants."""
    code = read_subscription_token(token)
    subscription_request = subscription_request_pending(code=code) if code else None
    if subscription_request is None:
        return invalid_link(request)
    unit = subscription_request.unit
    lang = choose_language(request, locale=subscription_request.locale, unit=unit)
    context = {"token": token, "dm_types": subscription_request.dm_types.order_by("name")}
    if request.method == "POST":
        recipient = subscription_request_confirm(
            subscription_request=subscription_request, **_who(request)
        )
    elif subscription_request.confirmed_at:  # the link again, after confirming: nothing to do
        recipient = confirmed_recipient(subscription_request)
    else:
        return _page(request, "public/subscribe_confirm.html", context, lang=lang, unit=unit)
    if recipient is None:
        return invalid_link(request)
    context["preferences_token"] = make_recipient_token(recipient=recipient)
    return _page(request, "public/subscribe_done.html", context, lang=lang, unit=unit)
