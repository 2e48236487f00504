"""Campaign pages of a unit: list, write with a live preview, checks, preview, approval,
schedule, sending. HTTP only: the services decide; layouts and settings are in setup_views."""

from __future__ import annotations

import secrets
from uuid import UUID

from csp.constants import NONE, SELF
from csp.decorators import csp_replace
from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.html import escape
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_POST

from campaigns import selectors
from campaigns.checks import run_checks
from campaigns.forms import (
    AcknowledgeForm,
    CampaignForm,
    PreviewForm,
    ReviewForm,
    ScheduleForm,
    TestSendForm,
)
from campaigns.mail import SAMPLE_RECIPIENT, CampaignMailer, sample_links
from campaigns.models import BodyFormat, Campaign, CampaignStatus, SenderIdentity
from campaigns.rendering import CompiledMail
from campaigns.sandbox import RenderError
from campaigns.segments import segment_shown
from campaigns.services import authoring, status
from mlm.forms import bound, submit
from mlm.models import AuditEntry, Role
from mlm.scoping import UnitRequest, unit_view

PREVIEW_SECONDS = 600

# A rendered mail is shown in a sandboxed iframe with a policy of its own: no scripts, no forms,
# no same-origin access; its inline styles and https images are allowed.
mail_frame_csp = csp_replace(
    {
        "default-src": [NONE],
        "img-src": ["https:", "data:", SELF],
        "style-src": ["'unsafe-inline'"],
        "font-src": ["https:", "data:"],
        "frame-ancestors": [SELF],
        "sandbox": [""],
        "script-src": [NONE],
        "form-action": [NONE],
    }
)


def _campaign(request: UnitRequest, code: UUID) -> Campaign:
    return get_object_or_404(
        Campaign.objects.for_unit(request.unit).select_related(
            "dm_type", "identity", "layout", "unit", "created_by", "approved_by"
        ),
        code=code,
    )


def _refused(request: UnitRequest, error: Exception) -> None:
    text = "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
    messages.error(request, text)


# Campaigns -------------------------------------------------------------------------------------


@unit_view(Role.VIEWER)
def campaign_list(request: UnitRequest) -> HttpResponse:
    campaigns = selectors.campaign_list(request.unit)
    chosen = request.GET.get("status", "")
    if chosen in CampaignStatus.values:
        campaigns = campaigns.filter(status=chosen)
    context = {"campaigns": campaigns, "statuses": CampaignStatus.choices, "status": chosen}
    return render(request, "campaigns/campaign_list.html", context)


@unit_view(Role.EDITOR)
def campaign_create(request: UnitRequest) -> HttpResponse:
    form = bound(CampaignForm, request, unit=request.unit)
    created = submit(
        form, lambda data: authoring.campaign_create(unit=request.unit, by=request.user, **data)
    )
    if created is not None:
        messages.success(request, f"Draft “{created.name}” saved. Check it, then submit it.")
        return redirect("campaign_detail", request.unit.slug, created.code)
    context = {"form": form, "campaign": None, **_from_address_context(request)}
    return render(request, "campaigns/campaign_form.html", context)


def _from_address_context(request: UnitRequest) -> dict:
    """What the campaign form says when the unit has no usable From address yet."""
    return {
        "no_from_address": not SenderIdentity.objects.for_unit(request.unit).usable().exists(),
        "pending_identities": selectors.pending_identities(request.unit),
    }


@unit_view(Role.EDITOR)
def campaign_edit(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_code)
    if not campaign.is_editable:
        messages.error(request, f"A {campaign.get_status_display().lower()} campaign is final.")
        return redirect("campaign_detail", request.unit.slug, campaign.code)
    form = bound(
        CampaignForm, request, unit=request.unit, initial=CampaignForm.initial_for(campaign)
    )
    updated = submit(
        form,
        lambda data: authoring.campaign_update(campaign=campaign, by=request.user, **data),
    )
    if updated is not None:
        again = " It is a draft again." if campaign.status != CampaignStatus.DRAFT else ""
        messages.success(request, "Saved." + again)
        return redirect("campaign_detail", request.unit.slug, updated.code)
    context = {"form": form, "campaign": campaign, **_from_address_context(request)}
    return render(request, "campaigns/campaign_form.html", context)


@unit_view(Role.VIEWER)
def campaign_detail(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_code)
    history = AuditEntry.objects.for_unit(request.unit).filter(
        object_type="campaigns.campaign", object_id=str(campaign.code)
    )[:50]
    context = {
        "campaign": campaign,
        "lists": campaign.lists.all(),
        "segment": segment_shown(campaign),
        "report": run_checks(campaign),
        "audience": selectors.audience_summary(campaign),
        "history": history,
        "ack_form": AcknowledgeForm(),
        "is_author": campaign.created_by_id == request.user.pk,
        "is_approver": request.membership.allows(Role.APPROVER),
        **_sending_context(campaign),
    }
    return render(request, "campaigns/campaign_detail.html", context)


SENDING_STATUSES = {CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.SENT}


def _sending_context(campaign: Campaign) -> dict:
    if campaign.status not in SENDING_STATUSES and not campaign.deliveries.exists():
        return {"progress": None, "in_doubt": []}
    in_doubt = (
        campaign.deliveries.filter(status="in_doubt")
        .select_related("recipient")
        .order_by("id")[:200]
    )
    return {"progress": selectors.campaign_progress(campaign), "in_doubt": in_doubt}


@unit_view(Role.VIEWER)
def campaign_progress(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    """The live progress fragment (HTMX polls it while the campaign sends)."""
    campaign = _campaign(request, campaign_code)
    context = {"campaign": campaign, **_sending_context(campaign)}
    context["is_approver"] = request.membership.allows(Role.APPROVER)
    return render(request, "campaigns/_progress.html", context)


def _sending_action(request: UnitRequest, campaign_code: UUID, action, done: str) -> HttpResponse:
    campaign = _campaign(request, campaign_code)
    try:
        action(campaign=campaign, by=request.user)
        messages.success(request, done)
    except (ValidationError, PermissionDenied) as error:
        _refused(request, error)
    return redirect("campaign_detail", request.unit.slug, campaign.code)


@unit_view(Role.APPROVER)
@require_POST
def campaign_pause(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    return _sending_action(
        request, campaign_code, status.campaign_pause, "Paused: no new batch starts."
    )


@unit_view(Role.APPROVER)
@require_POST
def campaign_resume(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    return _sending_action(request, campaign_code, status.campaign_resume, "Sending again.")


@unit_view(Role.APPROVER)
@require_POST
def campaign_send_in_doubt(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    return _sending_action(
        request,
        campaign_code,
        status.deliveries_send_in_doubt,
        "The deliveries in doubt are queued again; some of them may get the mail twice.",
    )


@unit_view(Role.EDITOR)
@require_POST
def campaign_submit(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_code)
    try:
        status.campaign_submit(campaign=campaign, by=request.user)
        messages.success(request, "Submitted: an approver of the unit can now approve it.")
    except (ValidationError, PermissionDenied) as error:
        _refused(request, error)
    return redirect("campaign_detail", request.unit.slug, campaign.code)


@unit_view(Role.APPROVER)
def campaign_review(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_code)
    form = bound(ReviewForm, request)
    if request.method == "POST" and form.is_valid():
        comment = form.cleaned_data["comment"]
        try:
            if request.POST.get("decision") == "approve":
                status.campaign_approve(campaign=campaign, by=request.user, comment=comment)
                messages.success(request, "Approved. It can now be scheduled.")
            else:
                status.campaign_reject(campaign=campaign, by=request.user, comment=comment)
                messages.success(request, "Sent back to the editors with your comment.")
            return redirect("campaign_detail", request.unit.slug, campaign.code)
        except (ValidationError, PermissionDenied) as error:
            _refused(request, error)
    context = {
        "campaign": campaign,
        "form": form,
        "report": run_checks(campaign),
        "audience": selectors.audience_summary(campaign),
        "is_author": campaign.created_by_id == request.user.pk,
        "self_approval": selectors.unit_settings(request.unit).allow_self_approval,
    }
    return render(request, "campaigns/campaign_review.html", context)


@unit_view(Role.EDITOR)
def campaign_schedule(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_code)
    form = bound(ScheduleForm, request)
    done = submit(
        form,
        lambda data: status.campaign_schedule(
            campaign=campaign, by=request.user, when=data["at"] if data["when"] == "later" else None
        ),
    )
    if done is not None:
        local = timezone.localtime(done.scheduled_at)
        messages.success(
            request, f"Scheduled for {local:%Y-%m-%d %H:%M} ({request.unit.timezone})."
        )
        return redirect("campaign_detail", request.unit.slug, campaign.code)
    return render(request, "campaigns/campaign_schedule.html", {"campaign": campaign, "form": form})


@unit_view(Role.EDITOR)
@require_POST
def campaign_cancel(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_code)
    try:
        status.campaign_cancel(campaign=campaign, by=request.user)
        messages.success(request, "Cancelled.")
    except (ValidationError, PermissionDenied) as error:
        _refused(request, error)
    return redirect("campaign_detail", request.unit.slug, campaign.code)


@unit_view(Role.EDITOR)
@require_POST
def campaign_acknowledge(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_code)
    form = AcknowledgeForm(request.POST)
    if form.is_valid():
        try:
            authoring.campaign_acknowledge(campaign=campaign, by=request.user, **form.cleaned_data)
            messages.success(request, f"“{form.cleaned_data['word']}” acknowledged.")
        except (ValidationError, PermissionDenied) as error:
            _refused(request, error)
    else:
        messages.error(request, "Say why the word is acceptable here.")
    return redirect("campaign_detail", request.unit.slug, campaign.code)


@unit_view(Role.EDITOR)
@require_POST
def campaign_test(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_code)
    form = TestSendForm(request.POST)
    code = form.cleaned_data["recipient"] if form.is_valid() else None
    try:
        authoring.campaign_send_test(
            campaign=campaign, by=request.user, recipient_code=str(code) if code else None
        )
        messages.success(
            request, f"A [TEST] mail to {request.user.email} is queued; it is not a delivery."
        )
    except (ValidationError, PermissionDenied) as error:
        _refused(request, error)
    return redirect("campaign_preview", request.unit.slug, campaign.code)


# Preview ---------------------------------------------------------------------------------------


def _preview_recipient(request: UnitRequest, campaign: Campaign):
    code = request.GET.get("recipient", "")
    try:
        code = UUID(code)
    except ValueError:
        return None
    return selectors.campaign_members(campaign).filter(code=code).first()


@unit_view(Role.EDITOR)
def campaign_preview(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_code)
    query = request.GET.get("q", "").strip()
    recipient = _preview_recipient(request, campaign)
    parts, error = None, None
    try:
        mailer = CampaignMailer(campaign)
        parts = mailer.render(mailer.sample_variables(recipient))
    except RenderError as failure:
        error = str(failure)
    context = {
        "campaign": campaign,
        "query": query,
        "found": selectors.preview_recipients(campaign, query) if query else [],
        "recipient": recipient,
        "parts": parts,
        "error": error,
        "test_form": TestSendForm(initial={"recipient": recipient.code if recipient else None}),
    }
    return render(request, "campaigns/campaign_preview.html", context)


@unit_view(Role.EDITOR)
@xframe_options_sameorigin
@mail_frame_csp
def campaign_preview_html(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_code)
    recipient = _preview_recipient(request, campaign)
    try:
        mailer = CampaignMailer(campaign)
        html = mailer.render(mailer.sample_variables(recipient)).html
    except RenderError as error:
        html = f"<p>The mail does not render: {escape(str(error))}</p>"
    return HttpResponse(html, content_type="text/html; charset=utf-8")


@unit_view(Role.EDITOR)
@require_POST
def live_preview(request: UnitRequest) -> HttpResponse:
    """The edit page's preview pane: renders the unsaved fields for the sample recipient."""
    form = PreviewForm(request.POST, unit=request.unit)
    form.is_valid()
    data = form.cleaned_data
    layout = data.get("layout")
    dm_type = data.get("dm_type")
    sample = {
        **SAMPLE_RECIPIENT,
        **sample_links(),
        "unit": {
            "name": request.unit.name,
            "postal_address": request.unit.postal_address,
            "slug": request.unit.slug,
        },
        "campaign": {"name": data.get("name") or "", "code": ""},
        "dm_type": {"name": dm_type.name if dm_type else ""},
    }
    context: dict = {"error": None, "parts": None, "key": None}
    try:
        compiled = CompiledMail(
            subject=data.get("subject") or "",
            html_body=data.get("html_body") or "",
            # The edit form always sends its format; a bare request is read as HTML, as before.
            body_format=data.get("body_format") or BodyFormat.HTML,
            layout=layout.html if layout else None,
            text_body=data.get("text_body") or "",
            strict=False,
            sample=sample,
        )
        context["parts"] = parts = compiled.render(sample)
        key = secrets.token_urlsafe(16)
        cache.set(
            f"campaigns:preview:{key}",
            {"unit": request.unit.pk, "user": request.user.pk, "html": parts.html},
            PREVIEW_SECONDS,
        )
        context["key"] = key
    except RenderError as error:
        context["error"] = str(error)
    return render(request, "campaigns/_live_preview.html", context)


@unit_view(Role.EDITOR)
@xframe_options_sameorigin
@mail_frame_csp
def live_preview_html(request: UnitRequest) -> HttpResponse:
    stored = cache.get(f"campaigns:preview:{request.GET.get('key', '')}")
    html = "<p>Type in the form to see the preview here.</p>"
    if stored and stored["unit"] == request.unit.pk and stored["user"] == request.user.pk:
        html = stored["html"]
    return HttpResponse(html, content_type="text/html; charset=utf-8")
