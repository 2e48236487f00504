"""What recipients do on the public pages: refuse mail (I5, I6), choose DM types, subscribe by
double opt-in (I2). Every change is a consent event with the person's own action as evidence."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from consent.ledger import record_one_click
from consent.models import (
    Channel,
    ConsentEvent,
    DMType,
    Subscription,
    SubscriptionRequest,
    SubscriptionState,
    Suppression,
    SuppressionReason,
)
from consent.public_selectors import public_target_lean_for
from consent.selectors import recipient_dm_type_states
from consent.services import grant, suppress, unsuppress, withdraw
from consent.tokens import TokenData
from mlm.models import SenderUnit
from mlm.queue import enqueue_on_commit
from mlm.services import audit_record
from recipients.addresses import address_hash, is_internal_address, normalise_address
from recipients.models import Category, Recipient, RecipientStatus
from recipients.services import recipient_upsert

log = logging.getLogger(__name__)

PUBLIC_ACTOR = "recipient"
ONE_CLICK_EVIDENCE = "RFC 8058 one-click unsubscribe"


@dataclass(frozen=True)
class Unsubscribed:
    """What an unsubscribe did: the events written (none if it was already done) and the DM
    types that were subscribed just before (what an undo grants back)."""

    events: list[ConsentEvent] = field(default_factory=list)
    were_subscribed: list[DMType] = field(default_factory=list)


def _lock(recipient: Recipient) -> Recipient:
    return Recipient.objects.select_for_update().get(pk=recipient.pk)


def _stamp() -> str:
    return timezone.now().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# Read on every one-click POST, hence plain SQL (the ORM's query building costs more than the
# query). The fold's rule: the later event of the (R, T) row and the (R, all) row decides.
_LATEST_FOR_DM_TYPE = """
    SELECT state FROM {table} WHERE recipient_id = %s AND (dm_type_id = %s OR dm_type_id IS NULL)
    ORDER BY event_id DESC LIMIT 1
"""
_ALL_ROWS = "SELECT dm_type_id, state, event_id FROM {table} WHERE recipient_id = %s"


def _already_withdrawn(recipient: Recipient, dm_type: DMType | None) -> bool:
    """True if the latest event that decides (R, T) — or, without T, every DM type of the unit,
    now and later — is already a withdrawal (one query on the folded state)."""
    table = Subscription._meta.db_table
    with connection.cursor() as cursor:
        if dm_type is not None:
            cursor.execute(_LATEST_FOR_DM_TYPE.format(table=table), [recipient.pk, dm_type.pk])
            latest = cursor.fetchone()
            return latest is not None and latest[0] == SubscriptionState.WITHDRAWN
        cursor.execute(_ALL_ROWS.format(table=table), [recipient.pk])
        rows = cursor.fetchall()
    all_rows = [r for r in rows if r[0] is None]
    if not all_rows or all_rows[0][1] != SubscriptionState.WITHDRAWN:
        return False
    after = all_rows[0][2]
    return not any(r[1] == SubscriptionState.GRANTED and r[2] > after for r in rows)


def one_click_withdraw(
    *, data: TokenData, ip_address: str | None = None, user_agent: str = ""
) -> None:
    """Withdraw the DM type a one-click token names (I6), unless the fold already says so.

    A token we did not sign never gets here; one whose recipient was erased or whose DM type is
    gone changes nothing. Tokens for "every DM type" take the general path.
    """
    if data.dm_type_code is None:
        target = public_target_lean_for(data)
        if target is not None:
            recipient_unsubscribe(
                recipient=target.recipient,
                dm_type=target.dm_type,
                channel=Channel.ONE_CLICK,
                evidence=ONE_CLICK_EVIDENCE,
                campaign_code=data.campaign_code,
                report=False,
                ip_address=ip_address,
                user_agent=user_agent,
            )
        return
    record_one_click(
        dm_type_code=data.dm_type_code,
        recipient_code=data.recipient_code,
        channel=Channel.ONE_CLICK.value,
        evidence=ONE_CLICK_EVIDENCE,
        actor_label=PUBLIC_ACTOR,
        ip_address=ip_address,
        user_agent=user_agent,
        campaign_code=data.campaign_code,
    )


def recipient_unsubscribe(
    *,
    recipient: Recipient,
    dm_type: DMType | None,
    channel: Channel,
    evidence: str = "",
    ip_address: str | None = None,
    user_agent: str = "",
    campaign_code: UUID | None = None,
    report: bool = True,
    everywhere: bool = False,
) -> Unsubscribed:
    """Withdraw one DM type, or with `dm_type=None` every DM type of the unit (I6); does nothing
    if that is already the state, so a repeated one-click POST writes no second event.

    The "already withdrawn" check reads without a lock and `withdraw` then locks the recipient:
    two identical requests at the same instant can both write a withdrawal — a second refusal
    in the ledger, never a lost one — and the one-click path saves a lock and two savepoints.
    `report=False` skips working out what was subscribed before (one-click needs no undo).
    """
    if _already_withdrawn(recipient, dm_type):
        return Unsubscribed()
    were_subscribed = []
    if report:
        were_subscribed = [
            s.dm_type
            for s in recipient_dm_type_states(recipient)
            if s.subscribed
            and not s.dm_type.is_archived
            and (dm_type is None or s.dm_type.pk == dm_type.pk)
        ]
    events = withdraw(
        recipient=recipient,
        dm_types=None if dm_type is None else [dm_type],
        channel=channel,
        evidence=evidence,
        actor_label=PUBLIC_ACTOR,
        ip_address=ip_address,
        user_agent=user_agent,
        campaign_code=campaign_code,
        everywhere=everywhere,
    )
    return Unsubscribed(events, were_subscribed)


@transaction.atomic
def recipient_unsubscribe_everywhere(
    *, recipient: Recipient, ip_address: str | None = None, user_agent: str = ""
) -> Unsubscribed:
    """Stop all marketing from the institution: every DM type of every unit that holds the
    address is withdrawn and the address is suppressed for every unit (I6). Reports this unit."""
    evidence = f"Stop all marketing mail from the institution: unsubscribe page of {recipient.unit}"
    result = Unsubscribed()
    for holder in Recipient.objects.filter(email_hash=recipient.email_hash).exclude(
        status=RecipientStatus.ERASED
    ):
        done = recipient_unsubscribe(
            recipient=holder,
            dm_type=None,
            channel=Channel.PREFERENCE_CENTRE,
            evidence=evidence,
            ip_address=ip_address,
            user_agent=user_agent,
            everywhere=True,
        )
        if holder.pk == recipient.pk:
            result = done
    suppress(
        email=recipient.email,
        unit=None,
        reason=SuppressionReason.OPT_OUT,
        note=f"Asked on the unsubscribe page of {recipient.unit}",
    )
    return result


@transaction.atomic
def recipient_resubscribe(
    *,
    recipient: Recipient,
    dm_types: Collection[DMType],
    lift_opt_out: bool = False,
    ip_address: str | None = None,
    user_agent: str = "",
) -> list[ConsentEvent]:
    """Undo an unsubscribe by the person's own click: grant the DM types again (channel
    preference centre), and if they had stopped all marketing, lift that suppression."""
    if lift_opt_out:
        for suppression in Suppression.objects.filter(
            unit__isnull=True, email_hash=recipient.email_hash, reason=SuppressionReason.OPT_OUT
        ):
            unsuppress(suppression=suppression, by=None)
    dm_types = [t for t in dm_types if t.unit_id == recipient.unit_id and not t.is_archived]
    if not dm_types:
        return []
    names = ", ".join(f"“{t.name}”" for t in dm_types)
    return grant(
        recipient=recipient,
        dm_types=dm_types,
        channel=Channel.PREFERENCE_CENTRE,
        evidence=(
            f"Clicked “Undo” on the unsubscribe page at {_stamp()} to receive {names} again."
        ),
        actor_label=PUBLIC_ACTOR,
        ip_address=ip_address,
        user_agent=user_agent,
    )


@transaction.atomic
def recipient_preferences_save(
    *,
    recipient: Recipient,
    wanted: Collection[UUID],
    ip_address: str | None = None,
    user_agent: str = "",
) -> list[ConsentEvent]:
    """Save the preference centre: one event per DM type whose box changed. A grant only comes
    from the person's own tick, and that tick (page, time, address, browser) is its evidence."""
    recipient = _lock(recipient)
    wanted = set(wanted)
    events: list[ConsentEvent] = []
    for state in recipient_dm_type_states(recipient):
        dm_type = state.dm_type
        if dm_type.is_archived:
            continue
        if dm_type.code in wanted and not state.subscribed:
            notice = dm_type.current_notice
            version = f" (notice version {notice.version})" if notice else ""
            events += grant(
                recipient=recipient,
                dm_types=[dm_type],
                channel=Channel.PREFERENCE_CENTRE,
                evidence=(
                    f"Ticked “{dm_type.name}”{version} in the preference centre and saved "
                    f"at {_stamp()}."
                ),
                actor_label=PUBLIC_ACTOR,
                ip_address=ip_address,
                user_agent=user_agent,
            )
        elif dm_type.code not in wanted and state.subscribed:
            events += withdraw(
                recipient=recipient,
                dm_types=[dm_type],
                channel=Channel.PREFERENCE_CENTRE,
                evidence=f"Cleared “{dm_type.name}” in the preference centre at {_stamp()}.",
                actor_label=PUBLIC_ACTOR,
                ip_address=ip_address,
                user_agent=user_agent,
            )
    return events


# Double opt-in --------------------------------------------------------------------------------


@transaction.atomic
def subscription_request_create(
    *,
    unit: SenderUnit,
    email: str,
    first_name: str,
    last_name: str,
    dm_types: Collection[DMType],
    wording: str,
    locale: str,
    ip_address: str | None,
    user_agent: str,
) -> SubscriptionRequest:
    """Keep a request from the public form and mail its confirmation link; grants nothing and
    creates no recipient (I2). Known and unknown addresses take exactly the same path."""
    normalised = normalise_address(email)
    if is_internal_address(normalised):
        raise ValidationError("Addresses of the institution cannot subscribe on the public form.")
    dm_types = [t for t in dm_types if t.unit_id == unit.pk and not t.is_archived]
    if not dm_types:
        raise ValidationError("Tick at least one kind of mail.")
    request = SubscriptionRequest.objects.create(
        unit=unit,
        email=normalised,
        first_name=first_name[:150],
        last_name=last_name[:150],
        locale=locale,
        wording=wording,
        ip_address=ip_address,
        user_agent=user_agent[:500],
        expires_at=timezone.now() + timedelta(days=settings.MLM_SUBSCRIPTION_REQUEST_DAYS),
    )
    request.dm_types.set(dm_types)
    audit_record(
        unit=unit,
        actor=None,
        verb="subscription_request.create",
        obj=request,
        data={"dm_types": [str(t.code) for t in dm_types]},
    )
    enqueue_on_commit("consent.tasks.send_subscription_confirmation", request.pk)
    return request


@transaction.atomic
def subscription_request_confirm(
    *, subscription_request: SubscriptionRequest, ip_address: str | None, user_agent: str
) -> Recipient | None:
    """The person confirmed by the link in the mail: now, and only now, the recipient exists and
    the DM types are granted (channel double opt-in, the form's wording as evidence, I2).

    A second confirmation changes nothing; None if the request expired or cannot be honoured.
    """
    now = timezone.now()
    claimed = SubscriptionRequest.objects.filter(
        pk=subscription_request.pk, confirmed_at__isnull=True, expires_at__gt=now
    ).update(confirmed_at=now)
    subscription_request.refresh_from_db()
    unit = subscription_request.unit
    recipient = (
        Recipient.objects.for_unit(unit)
        .filter(email_hash=address_hash(subscription_request.email))
        .first()
    )
    if not claimed:
        return recipient if subscription_request.confirmed_at else None
    if recipient is not None and recipient.status == RecipientStatus.ERASED:
        log.info("subscription request %s names an erased recipient", subscription_request.code)
        return None
    if recipient is None:
        recipient, _ = recipient_upsert(
            unit=unit,
            email=subscription_request.email,
            category=Category.EXTERNAL,
            first_name=subscription_request.first_name,
            last_name=subscription_request.last_name,
            locale=subscription_request.locale,
            by=None,
        )
    dm_types = [t for t in subscription_request.dm_types.all() if not t.is_archived]
    if dm_types:
        asked = subscription_request.created_at.astimezone(UTC)
        grant(
            recipient=recipient,
            dm_types=dm_types,
            channel=Channel.DOUBLE_OPT_IN,
            evidence=(
                f"Double opt-in. Subscription form of {unit} ({settings.SITE_URL}/s/{unit.slug}/) "
                f"sent at {asked:%Y-%m-%d %H:%M:%S} UTC from {subscription_request.ip_address} "
                f"({subscription_request.user_agent or 'no user agent'}); confirmed through the "
                f"link mailed to this address at {_stamp()}. The form said: "
                f"{subscription_request.wording}"
            ),
            actor_label=PUBLIC_ACTOR,
            ip_address=ip_address,
            user_agent=user_agent,
        )
    audit_record(
        unit=unit, actor=None, verb="subscription_request.confirm", obj=subscription_request
    )
    return recipient


def subscription_requests_purge(*, now=None) -> int:
    """Delete expired requests (confirmed or not): an unconfirmed one leaves nothing behind, a
    confirmed one lives on in the grant's evidence."""
    _, per_model = SubscriptionRequest.objects.filter(
        expires_at__lte=now or timezone.now()
    ).delete()
    return per_model.get(SubscriptionRequest._meta.label, 0)
