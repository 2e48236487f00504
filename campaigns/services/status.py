"""The campaign status machine: a table of allowed transitions, `campaign_transition` (one
conditional UPDATE whose row count says whether it won, and the audit entry in the same
transaction), and the services that move a campaign: submit, approve, reject, schedule, cancel,
mark started, pause, resume, mark sent, send in-doubt rows again; and the sending error its page
shows.

The status machine never calls sending (campaigns.sending): what must follow a change (the start
of a campaign sent now, batches after a resume) is enqueued by task name on commit
(campaigns.enqueue), and the sending package calls these services.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from campaigns import enqueue
from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, SkipReason
from mlm.models import Role
from mlm.scoping import require_role
from mlm.services import audit_record

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


def reopen_fields() -> dict[str, Any]:
    """What a campaign going back to draft forgets: its submission, approval and schedule."""
    return {
        "approved_by": None,
        "approved_at": None,
        "submitted_by": None,
        "submitted_at": None,
        "scheduled_at": None,
        "sent_by": None,
    }


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
        fields={**reopen_fields(), "review_comment": comment.strip()},
        data={"comment": comment.strip()},
    )


@transaction.atomic
def campaign_schedule(
    *, campaign: Campaign, by: AbstractBaseUser | None, when: datetime | None = None
) -> Campaign:
    """Set the time an approved campaign starts: now (`when` None: its start is enqueued on
    commit) or later (beat's sweep starts it, campaigns.sending.start.campaigns_start_due)."""
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
        enqueue.start_on_commit(campaign_id=campaign.pk)
    return campaign


@transaction.atomic
def campaign_cancel(*, campaign: Campaign, by: AbstractBaseUser | None) -> Campaign:
    """Stop a campaign for good (sending campaigns stop between batches)."""
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


def campaign_mark_started(*, campaign: Campaign, by: AbstractBaseUser | None = None) -> Campaign:
    """Scheduled → sending, once its time has come: the status half of the start
    (campaigns.sending.start.campaign_start writes the snapshot in the same transaction)."""
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
    (sending after failures in a row, the circuit breaker after complaints or bounces)."""
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
    reason = Campaign.objects.filter(pk=campaign.pk).values_list("pause_reason", flat=True).first()
    require_role(campaign.unit, by, Role.APPROVER if reason else Role.EDITOR)
    campaign = campaign_transition(
        campaign=campaign,
        action="resume",
        by=by,
        fields={"consecutive_failures": 0, "pause_reason": ""},
        only_if={"pause_reason": reason or ""},
    )
    enqueue.batches_fan_out(campaign_id=campaign.pk)
    return campaign


def campaign_mark_sent(*, campaign: Campaign, by: AbstractBaseUser | None = None) -> Campaign:
    """Sending → sent, when sending has handed every queued delivery to the backend."""
    return campaign_transition(
        campaign=campaign, action="finish", by=by, fields={"finished_at": timezone.now()}
    )


@transaction.atomic
def deliveries_send_in_doubt(*, campaign: Campaign, by: AbstractBaseUser) -> int:
    """An approver's decision to send the campaign's in-doubt rows once more (they may get the
    mail twice); audited, then queued like any other row."""
    require_role(campaign.unit, by, Role.APPROVER)
    now = timezone.now()
    count = Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.IN_DOUBT).update(
        status=DeliveryStatus.QUEUED,
        finished_at=None,
        updated_at=now,
        reply="sent again by a person",
    )
    if not count:
        return 0
    campaign.refresh_from_db()
    if campaign.status == S.SENT:
        campaign_transition(campaign=campaign, action="redispatch", by=by, data={"rows": count})
    else:
        audit_record(
            unit=campaign.unit,
            actor=by,
            verb="campaign.send_in_doubt",
            obj=campaign,
            data={"rows": count},
        )
    if campaign.status == S.SENDING:
        enqueue.batches_fan_out(campaign_id=campaign.pk)
    return count


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
