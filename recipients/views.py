"""Recipient and list pages of a unit: search, lists, one person's consent and rights."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from consent import services as consent
from consent.models import Channel
from consent.selectors import recipient_dm_type_states
from mlm.forms import bound, submit
from mlm.models import Role
from mlm.scoping import UnitRequest, unit_view
from recipients import rights, selectors, services
from recipients.forms import (
    EraseForm,
    GrantForm,
    ListAddRecipientForm,
    ListCreateForm,
    RecipientSearchForm,
    SearchForm,
    WithdrawForm,
)
from recipients.models import Recipient, RecipientList


def _list(request: UnitRequest, code: UUID) -> RecipientList:
    return get_object_or_404(RecipientList.objects.for_unit(request.unit), code=code)


def _recipient(request: UnitRequest, code: UUID) -> Recipient:
    return get_object_or_404(Recipient.objects.for_unit(request.unit), code=code)


def _page(request: UnitRequest, form: SearchForm, **filters) -> selectors.RecipientPage:
    found = selectors.recipient_search(unit=request.unit, **form.filters(), **filters)
    after, before = request.GET.get("after"), request.GET.get("before")
    return selectors.recipient_page(found, unit=request.unit, after=after, before=before)


def _evidence_context(request: UnitRequest) -> dict:
    """Who acts and from where, recorded with a consent event made in the browser."""
    return {
        "channel": Channel.ADMIN,
        "actor": request.user,
        "ip_address": request.META.get("REMOTE_ADDR") or None,
        "user_agent": request.META.get("HTTP_USER_AGENT", ""),
    }


# Lists ---------------------------------------------------------------------------------------


@unit_view(Role.VIEWER)
def list_list(request: UnitRequest) -> HttpResponse:
    lists = list(selectors.lists_with_counts(request.unit))
    summaries = selectors.list_summaries(request.unit, lists)
    for recipient_list in lists:
        recipient_list.summary = summaries[recipient_list.pk]
    return render(request, "recipients/list_list.html", {"lists": lists})


@unit_view(Role.EDITOR)
def list_create(request: UnitRequest) -> HttpResponse:
    form = bound(ListCreateForm, request)
    created = submit(
        form, lambda data: services.list_create(unit=request.unit, by=request.user, **data)
    )
    if created is not None:
        messages.success(request, f"List “{created.name}” created.")
        return redirect("list_detail", request.unit.slug, created.code)
    return render(request, "recipients/list_form.html", {"form": form})


@unit_view(Role.VIEWER)
def list_detail(request: UnitRequest, list_code: UUID) -> HttpResponse:
    recipient_list = _list(request, list_code)
    form = SearchForm(request.GET)
    page = _page(request, form, recipient_list=recipient_list)
    add_form = ListAddRecipientForm(recipient_list=recipient_list)
    summary = selectors.list_summaries(request.unit, [recipient_list])[recipient_list.pk]
    context = {
        "list": recipient_list,
        "form": form,
        "page": page,
        "add_form": add_form,
        "summary": summary,
    }
    return render(request, "recipients/list_detail.html", context)


@unit_view(Role.EDITOR)
def list_add_recipient(request: UnitRequest, list_code: UUID) -> HttpResponse:
    recipient_list = _list(request, list_code)
    form = bound(ListAddRecipientForm, request, recipient_list=recipient_list)
    added = submit(
        form,
        lambda data: services.list_add_recipient(
            recipient_list=recipient_list, by=request.user, **data
        ),
    )
    if added is not None:
        messages.success(request, f"{added[0].email} is on the list “{recipient_list.name}”.")
        return redirect("list_detail", request.unit.slug, recipient_list.code)
    return render(request, "recipients/list_add.html", {"list": recipient_list, "form": form})


@unit_view(Role.EDITOR)
@require_POST
def list_remove_member(request: UnitRequest, list_code: UUID, recipient_code: UUID) -> HttpResponse:
    recipient_list = _list(request, list_code)
    recipient = _recipient(request, recipient_code)
    if services.list_remove_member(
        recipient_list=recipient_list, recipient=recipient, by=request.user
    ):
        messages.success(request, f"{recipient.email} was taken off “{recipient_list.name}”.")
    else:
        messages.info(request, f"{recipient.email} was not on “{recipient_list.name}”.")
    return redirect("list_detail", request.unit.slug, recipient_list.code)


# Recipients ----------------------------------------------------------------------------------


@unit_view(Role.VIEWER)
def recipient_list(request: UnitRequest) -> HttpResponse:
    form = RecipientSearchForm(request.GET, unit=request.unit)
    page = _page(request, form)
    return render(request, "recipients/recipient_list.html", {"form": form, "page": page})


@unit_view(Role.VIEWER)
def recipient_detail(request: UnitRequest, recipient_code: UUID) -> HttpResponse:
    recipient = _recipient(request, recipient_code)
    events = selectors.recipient_consent_events(recipient)
    context = {
        "recipient": recipient,
        "lists": selectors.recipient_lists(recipient),
        "states": recipient_dm_type_states(recipient),
        "suppressions": selectors.recipient_suppressions(recipient),
        "events": Paginator(events, 50).get_page(request.GET.get("page")),
        "grant_form": GrantForm(unit=request.unit),
        "withdraw_form": WithdrawForm(unit=request.unit),
    }
    return render(request, "recipients/recipient_detail.html", context)


@unit_view(Role.ADMIN)
def recipient_grant(request: UnitRequest, recipient_code: UUID) -> HttpResponse:
    recipient = _recipient(request, recipient_code)
    form = bound(GrantForm, request, unit=request.unit)
    events = submit(
        form,
        lambda data: consent.grant(recipient=recipient, **data, **_evidence_context(request)),
    )
    if events:
        names = ", ".join(e.dm_type.name for e in events)
        messages.success(request, f"Consent recorded: {names}.")
        return redirect("recipient_detail", request.unit.slug, recipient.code)
    context = {"recipient": recipient, "form": form, "action": "grant"}
    return render(request, "recipients/recipient_consent_form.html", context)


@unit_view(Role.ADMIN)
def recipient_withdraw(request: UnitRequest, recipient_code: UUID) -> HttpResponse:
    recipient = _recipient(request, recipient_code)
    form = bound(WithdrawForm, request, unit=request.unit)
    events = submit(
        form,
        lambda data: consent.withdraw(
            recipient=recipient,
            dm_types=None if data["everything"] else data["dm_types"],
            evidence=data["evidence"],
            **_evidence_context(request),
        ),
    )
    if events:
        messages.success(request, "Withdrawal recorded; it takes effect at once.")
        return redirect("recipient_detail", request.unit.slug, recipient.code)
    context = {"recipient": recipient, "form": form, "action": "withdraw"}
    return render(request, "recipients/recipient_consent_form.html", context)


@unit_view(Role.ADMIN)
@require_POST
def recipient_export(request: UnitRequest, recipient_code: UUID) -> HttpResponse:
    recipient = _recipient(request, recipient_code)
    data = rights.recipient_export(recipient=recipient, by=request.user)
    response = JsonResponse(data, json_dumps_params={"ensure_ascii": False, "indent": 2})
    filename = f"recipient-{recipient.code}.json"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@unit_view(Role.ADMIN)
def recipient_erase(request: UnitRequest, recipient_code: UUID) -> HttpResponse:
    recipient = _recipient(request, recipient_code)
    form = bound(EraseForm, request)
    # recipient_erase returns nothing: `or True` tells success from a refusal (None).
    if submit(
        form, lambda data: rights.recipient_erase(recipient=recipient, by=request.user) or True
    ):
        messages.success(request, "The person's data was erased; the address stays suppressed.")
        return redirect("recipient_detail", request.unit.slug, recipient.code)
    return render(
        request, "recipients/recipient_erase.html", {"recipient": recipient, "form": form}
    )
