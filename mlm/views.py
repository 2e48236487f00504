"""Pages of the browser shell: home, unit dashboard, audit log, outbox, health."""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from csp.constants import NONE, SELF
from csp.decorators import csp_replace
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_POST

from campaigns.selectors import campaigns_failing, setup_steps
from mlm import selectors
from mlm.forms import AuditFilterForm, OutboxFilterForm
from mlm.models import AuditEntry, Membership, OutboxMessage, Role
from mlm.scoping import UnitRequest, unit_view
from mlm.services import audit_record, heartbeat_age, unit_send_test_mail
from mlm.tasks import WORKER_HEARTBEAT
from recipients.exports import csv_lines


@login_required
def home(request: HttpRequest) -> HttpResponse:
    memberships = list(
        Membership.objects.filter(user=request.user).select_related("unit").order_by("unit__name")
    )
    if len(memberships) == 1:
        return redirect("dashboard", unit_slug=memberships[0].unit.slug)
    # Units that are set up to send come first; the others say they are not, yet.
    ready = {m.pk: all(step.done for step in setup_steps(m.unit)) for m in memberships}
    memberships.sort(key=lambda m: not ready[m.pk])
    rows = [(m, ready[m.pk]) for m in memberships]
    return render(request, "mlm/home.html", {"memberships": rows})


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: the database answers; the worker's last heartbeat age."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    age = heartbeat_age(name=WORKER_HEARTBEAT)
    return JsonResponse({"database": "ok", "worker_seen_seconds_ago": age})


@unit_view(Role.VIEWER)
def dashboard(request: UnitRequest) -> HttpResponse:
    unit = request.unit
    steps = setup_steps(unit)
    context = {
        # Each step links to its page only for members whose role may open it.
        "setup_steps": [(step, request.membership.allows(step.role)) for step in steps],
        "setup_open": any(not step.done for step in steps),
        "members": unit.memberships.select_related("user").order_by("user__username"),
        "worker_age": heartbeat_age(name=WORKER_HEARTBEAT),
        "outbox_count": OutboxMessage.objects.for_unit(unit).count(),
        "uses_outbox": settings.EMAIL_BACKEND == "mlm.mail.OutboxBackend",
        "failing": list(campaigns_failing(unit)[:10]),
    }
    return render(request, "mlm/dashboard.html", context)


def _audit_filter(request: UnitRequest) -> AuditFilterForm:
    return AuditFilterForm(
        request.GET,
        members=selectors.audit_actor_choices(request.unit),
        verbs=selectors.audit_verbs(request.unit),
    )


@unit_view(Role.ADMIN)
def audit_list(request: UnitRequest) -> HttpResponse:
    form = _audit_filter(request)
    entries = AuditEntry.objects.none()
    if form.is_valid():
        entries = selectors.audit_entries(request.unit, **form.cleaned_data)
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"page": page, "form": form, "query": query.urlencode()}
    return render(request, "mlm/audit_list.html", context)


@unit_view(Role.ADMIN)
@require_GET
def audit_export(request: UnitRequest) -> HttpResponse:
    """The filtered entries as CSV (formula-safe); the export itself is recorded."""
    form = _audit_filter(request)
    if not form.is_valid():
        context = {"page": None, "form": form, "query": ""}
        return render(request, "mlm/audit_list.html", context, status=400)
    filters = {k: str(v) for k, v in form.cleaned_data.items() if v}
    audit_record(unit=request.unit, actor=request.user, verb="audit.export", data=filters)
    entries = selectors.audit_entries(request.unit, **form.cleaned_data)
    rows = selectors.audit_rows(request.unit, entries.iterator(chunk_size=2000))
    response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{request.unit.slug}.csv"'
    return response


@unit_view(Role.EDITOR)
def outbox_list(request: UnitRequest) -> HttpResponse:
    campaigns = selectors.outbox_campaign_choices(request.unit)
    form = OutboxFilterForm(request.GET, campaigns=campaigns)
    outbox = OutboxMessage.objects.none()
    if form.is_valid():
        outbox = selectors.outbox_messages(request.unit, **form.cleaned_data)
    page = Paginator(outbox, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"page": page, "form": form, "query": query.urlencode()}
    return render(request, "mlm/outbox_list.html", context)


def _parse(raw: bytes) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(raw)


def _part(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    return None if part is None else part.get_content()


@unit_view(Role.EDITOR)
def outbox_detail(request: UnitRequest, message_code) -> HttpResponse:
    item = get_object_or_404(OutboxMessage.objects.for_unit(request.unit), code=message_code)
    raw = bytes(item.raw)
    parsed = _parse(raw)
    context = {
        "item": item,
        "headers": list(parsed.items()),
        "text": _part(parsed, "plain"),
        "has_html": _part(parsed, "html") is not None,
        "raw": raw.decode("utf-8", errors="replace"),
    }
    return render(request, "mlm/outbox_detail.html", context)


# Links in a kept mail open in a new tab: the public pages they lead to refuse to be framed.
_NEW_TAB = '<base target="_blank">'
_HEAD = re.compile(r"<head(?:\s[^>]*)?>", re.IGNORECASE)
_DOCTYPE = re.compile(r"\A\s*<!doctype[^>]*>", re.IGNORECASE)


def _links_in_new_tab(html: str) -> str:
    """The HTML with a `<base target="_blank">` first in its head (the first base wins)."""
    found = _HEAD.search(html) or _DOCTYPE.search(html)
    at = found.end() if found else 0
    return html[:at] + _NEW_TAB + html[at:]


# The HTML part is shown in a sandboxed iframe: no scripts, no forms, no same-origin access; a
# link may open a new tab, which escapes the sandbox to show the page as a recipient sees it.
@unit_view(Role.EDITOR)
@xframe_options_sameorigin
@csp_replace(
    {
        "default-src": [NONE],
        "img-src": ["https:", "data:", SELF],
        "style-src": ["'unsafe-inline'"],
        "font-src": ["https:", "data:"],
        "frame-ancestors": [SELF],
        "sandbox": ["allow-popups", "allow-popups-to-escape-sandbox"],
        "script-src": [NONE],
        "form-action": [NONE],
    }
)
def outbox_html(request: UnitRequest, message_code) -> HttpResponse:
    item = get_object_or_404(OutboxMessage.objects.for_unit(request.unit), code=message_code)
    html = _part(_parse(bytes(item.raw)), "html")
    body = _links_in_new_tab(html) if html else ""
    return HttpResponse(body, content_type="text/html; charset=utf-8")


@unit_view(Role.EDITOR)
@require_POST
def outbox_send_test(request: UnitRequest) -> HttpResponse:
    if not request.user.email:
        messages.error(request, "Your account has no e-mail address; ask operations to add one.")
    else:
        unit_send_test_mail(unit=request.unit, by=request.user)
        messages.success(
            request,
            f"A test message to {request.user.email} is queued; it appears here once the "
            "worker has sent it.",
        )
    return redirect("outbox", unit_slug=request.unit.slug)
