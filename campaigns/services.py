"""What campaigns do: identities, layouts, settings, writing a campaign, and its status machine.

Every status change goes through `campaign_transition`: a conditional UPDATE from the statuses
the action allows, checked by its row count, and an audit entry in the same transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from campaigns.bodies import sanitize_rich_text
from campaigns.models import (
    EDITABLE_STATUSES,
    BodyFormat,
    Campaign,
    CampaignStatus,
    IdentityStatus,
    Layout,
    SenderIdentity,
    UnitCampaignSettings,
)
from campaigns.rendering import CONTENT_SLOT, CompiledMail
from campaigns.sandbox import RenderError
from consent.models import DMType
from mlm.mail.sender_checks import Resolver, sending_domain_checks
from mlm.models import Role, SenderUnit, SendingDomain
from mlm.scoping import require_role
from mlm.services import audit_record
from recipients.models import Audience, RecipientList, Segment

S = CampaignStatus


class TransitionError(ValidationError):
    """The campaign is not in a status from which the action is allowed."""


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    target: str
    verb: str  # past participle for messages


TRANSITIONS: dict[str, Transition] = {
    "submit": Transition(frozenset({S.DRAFT}), S.PENDING, "submitted for approval"),
    "approve": Transition(frozenset({S.PENDING}), S.APPROVED, "approved"),
    "reject": Transition(frozenset({S.PENDING}), S.DRAFT, "rejected"),
    "reopen": Transition(frozenset({S.PENDING, S.APPROVED, S.SCHEDULED}), S.DRAFT, "reopened"),
    "schedule": Transition(frozenset({S.APPROVED, S.SCHEDULED}), S.SCHEDULED, "scheduled"),
    "start": Transition(frozenset({S.SCHEDULED}), S.SENDING, "started"),
    "pause": Transition(frozenset({S.SENDING}), S.PAUSED, "paused"),
    "resume": Transition(frozenset({S.PAUSED}), S.SENDING, "resumed"),
    "finish": Transition(frozenset({S.SENDING}), S.SENT, "marked sent"),
    # An approver chose to send the in-doubt deliveries of a sent campaign once more.
    "redispatch": Transition(frozenset({S.SENT}), S.SENDING, "sent again"),
    "cancel": Transition(
        frozenset({S.DRAFT, S.PENDING, S.APPROVED, S.SCHEDULED, S.SENDING, S.PAUSED}),
        S.CANCELLED,
        "cancelled",
    ),
}


@transaction.atomic
def campaign_transition(
    *,
    campaign: Campaign,
    action: str,
    by: AbstractBaseUser | None,
    fields: dict[str, Any] | None = None,
    only_if: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> Campaign:
    """Move a campaign by `action` if its status allows it, with an audit entry; the one way a
    status changes. Raises TransitionError (nothing changed) if another request got there first
    or the status does not allow the action."""
    transition = TRANSITIONS[action]
    updated = Campaign.objects.filter(
        pk=campaign.pk, status__in=transition.sources, **(only_if or {})
    ).update(status=transition.target, updated_at=timezone.now(), **(fields or {}))
    if not updated:
        current = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).first()
        label = S(current).label.lower() if current else "gone"
        if current in transition.sources:
            raise TransitionError(
                f"The campaign changed while you looked at it; it was not {transition.verb}. "
                "Reload the page and check it again."
            )
        raise TransitionError(f"This campaign is {label}: it cannot be {transition.verb}.")
    previous = campaign.status
    campaign.refresh_from_db()
    audit_record(
        unit=campaign.unit,
        actor=by,
        verb=f"campaign.{action}",
        obj=campaign,
        data={"from": previous, "to": campaign.status, **(data or {})},
    )
    return campaign


# Identities, layouts, settings -----------------------------------------------------------------


@transaction.atomic
def identity_create(
    *, unit: SenderUnit, name: str, email: str, reply_to: str = "", by: AbstractBaseUser | None
) -> SenderIdentity:
    """Let `unit` send as `name <email>`."""
    identity = SenderIdentity(unit=unit, name=name, email=email.strip(), reply_to=reply_to)
    identity.full_clean()
    identity.save()
    audit_record(unit=unit, actor=by, verb="identity.create", obj=identity)
    return identity


@transaction.atomic
def identity_request(
    *,
    unit: SenderUnit,
    name: str,
    email: str,
    reply_to: str = "",
    by: AbstractBaseUser | None,
    resolver: Resolver | None = None,
) -> SenderIdentity:
    """A unit administrator asks to send as `name <email>`: usable at once when its domain has
    an active DKIM key that passes every sender check, else pending until operations approve."""
    require_role(unit, by, Role.ADMIN)
    email = email.strip()
    if SenderIdentity.objects.for_unit(unit).filter(email__iexact=email).exists():
        raise ValidationError(f"This unit already has the From address {email}.")
    identity = SenderIdentity(unit=unit, name=name.strip(), email=email, reply_to=reply_to)
    identity.full_clean()
    identity.pending_reason = _identity_pending_reason(email, resolver)
    if identity.pending_reason:
        identity.status = IdentityStatus.PENDING
    identity.save()
    audit_record(
        unit=unit,
        actor=by,
        verb="identity.request",
        obj=identity,
        data={"status": identity.status, "domain": email.rpartition("@")[2].lower()},
    )
    return identity


def _identity_pending_reason(email: str, resolver: Resolver | None) -> str:
    """Why mail From `email` cannot go out trusted yet, or "" when it can."""
    domain = email.rpartition("@")[2].lower()
    sending_domain = SendingDomain.objects.active_for(domain)
    if sending_domain is None:
        return f"Operations have no active DKIM key for {domain} yet."
    report = sending_domain_checks(sending_domain, resolver=resolver)
    failing = [f"{check.name}: {check.message}" for check in report.checks if not check.ok]
    return " ".join(failing)


@transaction.atomic
def identity_approve(*, identity: SenderIdentity, by: AbstractBaseUser | None) -> bool:
    """Operations let a pending identity be used; False if it was not pending (nothing done)."""
    updated = SenderIdentity.objects.filter(pk=identity.pk, status=IdentityStatus.PENDING).update(
        status=IdentityStatus.APPROVED
    )
    if updated:
        identity.refresh_from_db()
        audit_record(unit=identity.unit, actor=by, verb="identity.approve", obj=identity)
    return bool(updated)


@transaction.atomic
def starter_layout_create(*, unit: SenderUnit, by: AbstractBaseUser | None) -> Layout:
    """Give a new unit the starter layout, whose footer passes every content check."""
    from campaigns.starter import STARTER_LAYOUT, STARTER_LAYOUT_NAME

    return layout_create(unit=unit, name=STARTER_LAYOUT_NAME, html=STARTER_LAYOUT, by=by)


def _validate_layout(html: str) -> None:
    matches = CONTENT_SLOT.findall(html)
    if len(matches) != 1:
        raise ValidationError(
            "A layout needs {{ content }} exactly once: that is where each campaign's body goes."
        )
    _trial_render(subject="", html_body="", layout=html, text_body="")


@transaction.atomic
def layout_create(*, unit: SenderUnit, name: str, html: str, by: AbstractBaseUser | None) -> Layout:
    """A reusable wrapper; refused if it does not compile or breaks the sandbox's limits."""
    _validate_layout(html)
    if Layout.objects.for_unit(unit).filter(name=name).exists():
        raise ValidationError(f"This unit already has a layout named {name!r}.")
    layout = Layout.objects.create(unit=unit, name=name, html=html, created_by=by)
    audit_record(unit=unit, actor=by, verb="layout.create", obj=layout)
    return layout


@transaction.atomic
def layout_update(*, layout: Layout, name: str, html: str, by: AbstractBaseUser | None) -> Layout:
    """Change a layout; campaigns waiting for approval or sending that use it go back to draft
    (what was approved must be what is sent)."""
    _validate_layout(html)
    if Layout.objects.for_unit(layout.unit).filter(name=name).exclude(pk=layout.pk).exists():
        raise ValidationError(f"This unit already has a layout named {name!r}.")
    changed = html != layout.html
    Layout.objects.filter(pk=layout.pk).update(name=name, html=html, updated_at=timezone.now())
    layout.refresh_from_db()
    audit_record(unit=layout.unit, actor=by, verb="layout.change", obj=layout)
    if changed:
        affected = Campaign.objects.filter(layout=layout, status__in=TRANSITIONS["reopen"].sources)
        for campaign in affected:
            campaign_transition(
                campaign=campaign,
                action="reopen",
                by=by,
                fields=_reopen_fields(),
                data={"reason": f"layout {layout.name} changed"},
            )
    return layout


@transaction.atomic
def unit_settings_update(
    *,
    unit: SenderUnit,
    allow_self_approval: bool,
    frequency_cap_mails: int,
    frequency_cap_days: int,
    banned_words: str,
    tracking_enabled: bool | None = None,
    web_version_enabled: bool | None = None,
    by: AbstractBaseUser | None,
    mail_backend: str = "",
    complaint_rate_limit: Decimal | None = None,
    hard_bounce_rate_limit: Decimal | None = None,
) -> UnitCampaignSettings:
    """Change the unit's campaign rules, recorded; the mail backend is one operations offer
    (settings.MLM_MAIL_BACKENDS) or the default; the circuit breaker's limits may be lowered,
    never raised above the institution's ceilings (the model's validators)."""
    require_role(unit, by, Role.ADMIN)
    limits = {
        name: _rate_limit(name, value)
        for name, value in (
            ("complaint_rate_limit", complaint_rate_limit),
            ("hard_bounce_rate_limit", hard_bounce_rate_limit),
        )
        if value is not None
    }
    if frequency_cap_mails and frequency_cap_days < 1:
        raise ValidationError("A frequency cap needs a period of at least one day.")
    if mail_backend and mail_backend not in settings.MLM_MAIL_BACKENDS:
        raise ValidationError(f"There is no mail backend {mail_backend!r} to choose.")
    settings_row, _ = UnitCampaignSettings.objects.update_or_create(
        unit=unit,
        defaults={
            "allow_self_approval": allow_self_approval,
            "frequency_cap_mails": frequency_cap_mails,
            "frequency_cap_days": frequency_cap_days,
            "banned_words": "\n".join(w.strip() for w in banned_words.splitlines() if w.strip()),
            "mail_backend": mail_backend,
            **limits,
            # Tracking and web versions stay as they are unless the caller says.
            **({} if tracking_enabled is None else {"tracking_enabled": tracking_enabled}),
            **({} if web_version_enabled is None else {"web_version_enabled": web_version_enabled}),
        },
    )
    audit_record(
        unit=unit,
        actor=by,
        verb="campaign_settings.change",
        data={
            "allow_self_approval": allow_self_approval,
            "frequency_cap": [frequency_cap_mails, frequency_cap_days],
            "banned_words": len(settings_row.banned_word_list),
            "tracking_enabled": settings_row.tracking_enabled,
            "web_version_enabled": settings_row.web_version_enabled,
            "mail_backend": mail_backend or "default",
            **{name: str(value) for name, value in limits.items()},
        },
    )
    return settings_row


def _rate_limit(name: str, value: Decimal) -> Decimal:
    """A breaker limit (percent) within the bounds of its model field, or a clear refusal."""
    field = UnitCampaignSettings._meta.get_field(name)
    bounds = {
        type(v): v.limit_value
        for v in field.validators
        if isinstance(v, MinValueValidator | MaxValueValidator)
    }
    lowest, highest = bounds[MinValueValidator], bounds[MaxValueValidator]
    label = "complaint-rate" if name == "complaint_rate_limit" else "hard-bounce-rate"
    if not lowest <= value <= highest:
        raise ValidationError(
            f"The {label} limit must be between {lowest.normalize():f}% and "
            f"{highest.normalize():f}%: {value.normalize():f}% is refused. A unit may pause "
            "its campaigns sooner than the institution does, never later."
        )
    if value != value.quantize(Decimal("0.001")):
        raise ValidationError(f"The {label} limit takes at most three decimals.")
    return value


# Writing a campaign ------------------------------------------------------------------------------


def _trial_render(
    *,
    subject: str,
    html_body: str,
    layout: str | None,
    text_body: str,
    body_format: str = BodyFormat.HTML,
) -> None:
    """Compile and render once for the sample recipient: a template that does not compile or
    that breaks a limit (`{{ "a" * 50000000 }}`) is refused when saved. Undefined names are
    rendered empty here; the strict content check reports them before approval."""
    from campaigns.mail import SAMPLE_RECIPIENT, sample_links

    sample = {
        **SAMPLE_RECIPIENT,
        **sample_links(),
        "unit": {"name": "Sample unit", "postal_address": "1 Sample Road", "slug": "sample"},
        "campaign": {"name": "Sample", "code": "00000000-0000-0000-0000-000000000000"},
        "dm_type": {"name": "Sample"},
    }
    try:
        CompiledMail(
            subject=subject,
            html_body=html_body,
            body_format=body_format,
            layout=layout,
            text_body=text_body,
            strict=False,
            sample=sample,
        ).render(sample)
    except RenderError as error:
        raise ValidationError(str(error)) from None


def _stored_body(*, body_format: str, body: str) -> str:
    """The body to store: rich text is kept only as its sanitised allow-list HTML."""
    if body_format not in BodyFormat.values:
        raise ValidationError("A body is written in Markdown, rich text or HTML.")
    if body_format == BodyFormat.RICH_TEXT:
        return sanitize_rich_text(body)
    return body


def _validate_campaign(
    *,
    unit: SenderUnit,
    dm_type: DMType,
    audience: str,
    lists: list[RecipientList],
    identity: SenderIdentity,
    layout: Layout | None,
    segment: Segment | None = None,
) -> None:
    if audience not in Audience.values:
        raise ValidationError("A campaign is either internal or external.")
    if dm_type.unit_id != unit.pk:
        raise ValidationError("The DM type belongs to another unit.")
    if dm_type.is_archived:
        raise ValidationError(f"The DM type {dm_type.name!r} is archived.")
    if identity.unit_id != unit.pk:
        raise ValidationError("The sender identity belongs to another unit.")
    if identity.status != IdentityStatus.APPROVED:
        raise ValidationError(
            f"The From address {identity.email} is waiting for operations to approve it."
        )
    if layout is not None and layout.unit_id != unit.pk:
        raise ValidationError("The layout belongs to another unit.")
    for recipient_list in lists:
        if recipient_list.unit_id != unit.pk:
            raise ValidationError(f"The list {recipient_list.name!r} belongs to another unit.")
        if recipient_list.audience != audience:
            # I3: internal and external recipients are never mixed in one campaign.
            raise ValidationError(
                f"The list {recipient_list.name!r} is {recipient_list.get_audience_display()}"
                f" and this campaign is {Audience(audience).label}: a campaign targets lists "
                "of its own audience only."
            )
    _validate_segment(unit=unit, audience=audience, lists=lists, segment=segment)


def _validate_segment(
    *, unit: SenderUnit, audience: str, lists: list[RecipientList], segment: Segment | None
) -> None:
    """A campaign targets lists or one segment of its unit and audience (I3), not both."""
    if segment is None:
        return
    if lists:
        raise ValidationError("A campaign targets lists or a segment, not both.")
    if segment.unit_id != unit.pk:
        raise ValidationError(f"The segment {segment.name!r} belongs to another unit.")
    if segment.audience != audience:
        raise ValidationError(
            f"The segment {segment.name!r} is {segment.get_audience_display()} and this "
            f"campaign is {Audience(audience).label}: a campaign targets recipients of its own "
            "audience only."
        )


@transaction.atomic
def campaign_create(
    *,
    unit: SenderUnit,
    by: AbstractBaseUser | None,
    name: str,
    dm_type: DMType,
    audience: str,
    lists: Iterable[RecipientList],
    identity: SenderIdentity,
    subject: str,
    html_body: str,
    text_body: str = "",
    layout: Layout | None = None,
    reply_to: str = "",
    # HTML unless told: the demo and other callers that predate body formats pass HTML; the
    # campaign form chooses Markdown for a new campaign.
    body_format: str = BodyFormat.HTML,
    segment: Segment | None = None,
) -> Campaign:
    """Write a new draft; lists or segment must be of the campaign's audience (I3)."""
    require_role(unit, by, Role.EDITOR)
    lists = list(lists)
    html_body = _stored_body(body_format=body_format, body=html_body)
    _validate_campaign(
        unit=unit,
        dm_type=dm_type,
        audience=audience,
        lists=lists,
        identity=identity,
        layout=layout,
        segment=segment,
    )
    _trial_render(
        subject=subject,
        html_body=html_body,
        layout=layout.html if layout else None,
        text_body=text_body,
        body_format=body_format,
    )
    campaign = Campaign(
        unit=unit,
        name=name,
        dm_type=dm_type,
        audience=audience,
        identity=identity,
        reply_to=reply_to,
        subject=subject,
        body_format=body_format,
        html_body=html_body,
        text_body=text_body,
        layout=layout,
        segment=segment,
        created_by=by if by is not None and by.is_authenticated else None,
    )
    campaign.full_clean(exclude=["lists"])
    campaign.save()
    campaign.lists.set(lists)
    audit_record(
        unit=unit,
        actor=by,
        verb="campaign.create",
        obj=campaign,
        data={
            "audience": audience,
            "lists": [str(rl.code) for rl in lists],
            **_segment_data(segment),
        },
    )
    return campaign


def _segment_data(segment: Segment | None) -> dict[str, str]:
    return {"segment": str(segment.code)} if segment is not None else {}


def _reopen_fields() -> dict[str, Any]:
    return {
        "approved_by": None,
        "approved_at": None,
        "submitted_by": None,
        "submitted_at": None,
        "scheduled_at": None,
        "sent_by": None,
    }


@transaction.atomic
def campaign_update(
    *,
    campaign: Campaign,
    by: AbstractBaseUser | None,
    name: str,
    dm_type: DMType,
    audience: str,
    lists: Iterable[RecipientList],
    identity: SenderIdentity,
    subject: str,
    html_body: str,
    text_body: str = "",
    layout: Layout | None = None,
    reply_to: str = "",
    body_format: str | None = None,  # None: the campaign's own
    segment: Segment | None = None,
) -> Campaign:
    """Change a campaign that has not started; one waiting for or past approval goes back to
    draft (an approver signs off what is sent, not an earlier version)."""
    require_role(campaign.unit, by, Role.EDITOR)
    lists = list(lists)
    body_format = body_format or campaign.body_format
    html_body = _stored_body(body_format=body_format, body=html_body)
    _validate_campaign(
        unit=campaign.unit,
        dm_type=dm_type,
        audience=audience,
        lists=lists,
        identity=identity,
        layout=layout,
        segment=segment,
    )
    _trial_render(
        subject=subject,
        html_body=html_body,
        layout=layout.html if layout else None,
        text_body=text_body,
        body_format=body_format,
    )
    values = {
        "name": name,
        "dm_type": dm_type,
        "audience": audience,
        "identity": identity,
        "reply_to": reply_to,
        "subject": subject,
        "body_format": body_format,
        "html_body": html_body,
        "text_body": text_body,
        "layout": layout,
        "segment": segment,
    }
    probe = Campaign(unit=campaign.unit, **values)
    probe.full_clean(exclude=["lists", "unit", "created_by"], validate_unique=False)
    updated = Campaign.objects.filter(pk=campaign.pk, status__in=EDITABLE_STATUSES).update(
        **values, revision=F("revision") + 1, updated_at=timezone.now()
    )
    if not updated:
        campaign.refresh_from_db()
        raise TransitionError(
            f"This campaign is {campaign.get_status_display().lower()}: it can no longer be edited."
        )
    campaign.lists.set(lists)
    campaign.refresh_from_db()
    audit_record(
        unit=campaign.unit,
        actor=by,
        verb="campaign.edit",
        obj=campaign,
        data={
            "revision": campaign.revision,
            "lists": [str(rl.code) for rl in lists],
            **_segment_data(segment),
        },
    )
    if campaign.status != S.DRAFT:
        campaign = campaign_transition(
            campaign=campaign,
            action="reopen",
            by=by,
            fields=_reopen_fields(),
            data={"reason": "edited"},
        )
    return campaign


@transaction.atomic
def campaign_acknowledge(
    *, campaign: Campaign, word: str, reason: str, by: AbstractBaseUser | None
) -> Campaign:
    """Accept one banned-word finding with a reason (an approver sees it)."""
    require_role(campaign.unit, by, Role.EDITOR)
    reason = reason.strip()
    if not reason:
        raise ValidationError("Say why this word is acceptable here.")
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if not campaign.is_editable:
        raise TransitionError("This campaign can no longer be changed.")
    acknowledgements = dict(campaign.acknowledgements)
    acknowledgements[word] = {
        "reason": reason,
        "by": by.get_username() if by is not None else "system",
        "at": timezone.now().isoformat(),
    }
    Campaign.objects.filter(pk=campaign.pk).update(
        acknowledgements=acknowledgements, updated_at=timezone.now()
    )
    campaign.refresh_from_db()
    audit_record(
        unit=campaign.unit,
        actor=by,
        verb="campaign.acknowledge",
        obj=campaign,
        data={"word": word, "reason": reason},
    )
    return campaign


# The status machine --------------------------------------------------------------------------


def _checks_pass(campaign: Campaign) -> None:
    from campaigns.checks import run_checks

    report = run_checks(campaign)
    if not report.passed:
        failing = "; ".join(c.message for c in report.failing)
        raise ValidationError(f"The content checks do not pass yet: {failing}")


def campaign_submit(*, campaign: Campaign, by: AbstractBaseUser | None) -> Campaign:
    """Ask for approval; only a campaign whose content checks pass."""
    require_role(campaign.unit, by, Role.EDITOR)
    _checks_pass(campaign)
    return campaign_transition(
        campaign=campaign,
        action="submit",
        by=by,
        fields={"submitted_by": by, "submitted_at": timezone.now(), "review_comment": ""},
        only_if={"revision": campaign.revision},
    )


def campaign_approve(*, campaign: Campaign, by: AbstractBaseUser, comment: str = "") -> Campaign:
    """Sign off the revision the approver saw: an approver who is not the author (unless the
    unit allows self-approval), with the checks passing, and the audience recorded."""
    from campaigns.selectors import audience_summary, unit_settings

    require_role(campaign.unit, by, Role.APPROVER)
    if campaign.created_by_id == by.pk and not unit_settings(campaign.unit).allow_self_approval:
        raise PermissionDenied(
            "You wrote this campaign: another approver must approve it (the unit's settings "
            "do not allow self-approval)."
        )
    _checks_pass(campaign)
    summary = audience_summary(campaign)
    return campaign_transition(
        campaign=campaign,
        action="approve",
        by=by,
        fields={"approved_by": by, "approved_at": timezone.now(), "review_comment": comment},
        only_if={"revision": campaign.revision},
        data={
            "revision": campaign.revision,
            "sendable": summary.sendable,
            "skipped": summary.skipped,
            "comment": comment,
        },
    )


def campaign_reject(*, campaign: Campaign, by: AbstractBaseUser, comment: str) -> Campaign:
    """Send a campaign back to its editors with the approver's reasons."""
    require_role(campaign.unit, by, Role.APPROVER)
    if not comment.strip():
        raise ValidationError("Say what needs to change: the editors read your comment.")
    return campaign_transition(
        campaign=campaign,
        action="reject",
        by=by,
        fields={**_reopen_fields(), "review_comment": comment.strip()},
        data={"comment": comment.strip()},
    )


@transaction.atomic
def campaign_schedule(
    *, campaign: Campaign, by: AbstractBaseUser | None, when: datetime | None = None
) -> Campaign:
    """Send an approved campaign now (`when` None) or at a time; a beat task starts it."""
    require_role(campaign.unit, by, Role.EDITOR)
    now = timezone.now()
    if when is not None and when < now:
        raise ValidationError("That time has passed: choose a later one, or send now.")
    campaign = campaign_transition(
        campaign=campaign,
        action="schedule",
        by=by,
        fields={"scheduled_at": when or now, "sent_by": by},
        data={"at": (when or now).isoformat(), "now": when is None},
    )
    if when is None:  # start at once rather than at beat's next round (the snapshot is a task)
        from campaigns.tasks import start_campaign

        campaign_id = campaign.pk
        transaction.on_commit(lambda: start_campaign.delay(campaign_id))
    return campaign


@transaction.atomic
def campaign_cancel(*, campaign: Campaign, by: AbstractBaseUser | None) -> Campaign:
    """Stop a campaign for good (sending campaigns stop between batches)."""
    from campaigns.models import Delivery, DeliveryStatus, SkipReason

    require_role(campaign.unit, by, Role.EDITOR)
    now = timezone.now()
    campaign = campaign_transition(
        campaign=campaign,
        action="cancel",
        by=by,
        fields={"cancelled_by": by, "cancelled_at": now},
    )
    # What no batch has claimed yet will not go out; rows being sent finish their batch.
    Delivery.objects.filter(
        campaign=campaign, status__in=[DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED]
    ).update(
        status=DeliveryStatus.SKIPPED,
        reason=SkipReason.CANCELLED,
        next_attempt_at=None,
        finished_at=now,
        updated_at=now,
    )
    return campaign


def campaign_start_sending(*, campaign: Campaign, by: AbstractBaseUser | None = None) -> Campaign:
    """Scheduled → sending, once its time has come (called by dispatch's beat task)."""
    now = timezone.now()
    return campaign_transition(
        campaign=campaign,
        action="start",
        by=by,
        fields={"started_at": now},
        only_if={"scheduled_at__lte": now},
    )


def campaign_pause(
    *, campaign: Campaign, by: AbstractBaseUser | None = None, reason: str = ""
) -> Campaign:
    """Sending → paused, by a person, or by the system with the `reason` its page shows
    (dispatch after failures in a row, the circuit breaker after complaints or bounces)."""
    require_role(campaign.unit, by, Role.EDITOR)
    return campaign_transition(
        campaign=campaign,
        action="pause",
        by=by,
        fields={"paused_at": timezone.now(), "pause_reason": reason},
        data={"reason": reason} if reason else None,
    )


@transaction.atomic
def campaign_resume(*, campaign: Campaign, by: AbstractBaseUser | None = None) -> Campaign:
    """Paused → sending; a campaign the system paused (breaker, failures) needs an approver."""
    from campaigns.dispatch import campaign_kick_on_commit

    reason = Campaign.objects.filter(pk=campaign.pk).values_list("pause_reason", flat=True).first()
    require_role(campaign.unit, by, Role.APPROVER if reason else Role.EDITOR)
    campaign = campaign_transition(
        campaign=campaign,
        action="resume",
        by=by,
        fields={"consecutive_failures": 0, "pause_reason": ""},
        only_if={"pause_reason": reason or ""},
    )
    campaign_kick_on_commit(campaign_id=campaign.pk)
    return campaign


def campaign_mark_sent(*, campaign: Campaign, by: AbstractBaseUser | None = None) -> Campaign:
    """Sending → sent, when dispatch has handed every queued delivery to the backend."""
    return campaign_transition(
        campaign=campaign, action="finish", by=by, fields={"finished_at": timezone.now()}
    )


def campaign_send_test(
    *, campaign: Campaign, by: AbstractBaseUser, recipient_code: str | None = None
) -> None:
    """Queue a [TEST] mail to the editor's own address, personalised as a recipient of the
    lists or the sample; not a delivery, not counted by caps or reports."""
    from campaigns.tasks import send_campaign_test

    require_role(campaign.unit, by, Role.EDITOR)
    if not by.email:
        raise ValidationError("Your account has no e-mail address; ask operations to add one.")
    audit_record(
        unit=campaign.unit,
        actor=by,
        verb="campaign.test",
        obj=campaign,
        data={"to": by.email, "as": recipient_code or "sample"},
    )
    transaction.on_commit(
        lambda: send_campaign_test.delay(campaign.pk, by.pk, recipient_code or None)
    )


# --- sending errors: what the campaign page says when sending keeps failing (I10) ---------------

# An address in an error (an SMTP reply, a database detail) is personal data: never kept.
_ADDRESS = re.compile(r"[^\s<>()\[\]{}\"',;:]+@[^\s<>()\[\]{}\"',;:]+")


def send_error_text(error: BaseException | str) -> str:
    """`Class: message` of an error, its first line only, every address blanked, ≤ 300 chars."""
    if isinstance(error, BaseException):
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    else:
        text = str(error).strip().splitlines()[0] if str(error).strip() else "unknown error"
    return _ADDRESS.sub("<address>", text)[:300]


@transaction.atomic
def campaign_record_send_error(
    *,
    campaign_id: int,
    error: BaseException | str,
    attempt: int | None = None,
    next_attempt_at: datetime | None,
) -> None:
    """Keep the last error of a campaign's sending, with the attempts that failed in a row
    (`attempt` None: one more than recorded) and when it is tried again (None: it is not).
    The text holds no address (send_error_text)."""
    attempts = F("send_error_attempts") + 1 if attempt is None else attempt
    Campaign.objects.filter(pk=campaign_id).update(
        send_error=send_error_text(error),
        send_error_at=timezone.now(),
        send_error_attempts=attempts,
        send_error_next_at=next_attempt_at,
    )


@transaction.atomic
def campaign_clear_send_error(*, campaign_id: int) -> None:
    """Forget the campaign's sending error once sending goes forward again."""
    Campaign.objects.filter(pk=campaign_id).exclude(send_error="").update(
        send_error="", send_error_at=None, send_error_attempts=0, send_error_next_at=None
    )
