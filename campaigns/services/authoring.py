"""Writing a campaign: sender identities, layouts, creating, updating and acknowledging a
campaign, and test mails."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from campaigns import enqueue
from campaigns.bodies import sanitize_rich_text
from campaigns.models import (
    EDITABLE_STATUSES,
    BodyFormat,
    Campaign,
    CampaignStatus,
    IdentityStatus,
    Layout,
    SenderIdentity,
)
from campaigns.rendering import CONTENT_SLOT, CompiledMail
from campaigns.sandbox import RenderError
from campaigns.services.status import (
    TRANSITIONS,
    TransitionError,
    campaign_transition,
    reopen_fields,
)
from consent.models import DMType
from mlm.mail.sender_checks import Resolver, sending_domain_checks
from mlm.models import Role, SenderUnit, SendingDomain
from mlm.scoping import require_role
from mlm.services import audit_record
from recipients.models import Audience, RecipientList, Segment

S = CampaignStatus


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
                fields=reopen_fields(),
                data={"reason": f"layout {layout.name} changed"},
            )
    return layout


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


def _checked_content(
    *,
    unit: SenderUnit,
    dm_type: DMType,
    audience: str,
    lists: list[RecipientList],
    identity: SenderIdentity,
    layout: Layout | None,
    segment: Segment | None,
    subject: str,
    html_body: str,
    text_body: str,
    body_format: str,
) -> str:
    """The body as stored, once the campaign's choices pass their rules (I3 and the rest) and
    its texts render; else ValidationError. What creating and editing a campaign both check."""
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
    return html_body


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
    html_body = _checked_content(
        unit=unit, dm_type=dm_type, audience=audience, lists=lists, identity=identity,
        layout=layout, segment=segment, subject=subject, html_body=html_body,
        text_body=text_body, body_format=body_format,
    )  # fmt: skip
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
    html_body = _checked_content(
        unit=campaign.unit, dm_type=dm_type, audience=audience, lists=lists, identity=identity,
        layout=layout, segment=segment, subject=subject, html_body=html_body,
        text_body=text_body, body_format=body_format,
    )  # fmt: skip
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
            fields=reopen_fields(),
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


def campaign_send_test(
    *, campaign: Campaign, by: AbstractBaseUser, recipient_code: str | None = None
) -> None:
    """Queue a [TEST] mail to the editor's own address, personalised as a recipient of the
    lists or the sample; not a delivery, not counted by caps or reports."""
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
    enqueue.test_mail_on_commit(
        campaign_id=campaign.pk, user_id=by.pk, recipient_code=recipient_code or None
    )
