"""The one writer of the consent ledger (I4).

Every consent event, and the subscription row it makes current (the fold), is written here:
one recipient at a time (`record`, behind consent.services.grant and withdraw, which apply the
rules first), or every recipient of an import at once (`record_bulk`). The one-click POST has a
prepared statement of its own for speed (consent.public_services), which tests/public keep
equal to `record`'s result.
"""

from __future__ import annotations

# The bulk SQL is assembled from model table names and constants; every value is a parameter.
# ruff: noqa: S608
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db import connection
from django.utils import timezone

from consent.models import (
    Action,
    ConsentEvent,
    DMType,
    DMTypeNotice,
    Subscription,
    SubscriptionState,
)
from mlm.inserts import insert_parts, table
from recipients.models import Recipient


@dataclass(frozen=True)
class Who:
    """Who recorded a change: a user (or None) and the label kept if the user is deleted."""

    actor_id: int | None
    actor_label: str


def record(
    *,
    recipient: Recipient,
    action: Action,
    dm_types: Sequence[DMType | None],
    channel: str,
    evidence: str,
    who: Who,
    ip_address: str | None = None,
    user_agent: str = "",
    campaign_code: UUID | None = None,
    notice: DMTypeNotice | None = None,
) -> list[ConsentEvent]:
    """One event per DM type (None: every DM type of the unit), each folded into its
    subscription row. A grant names `notice`, the version the person was shown, else the DM
    type's current one. The caller holds the recipient's lock, in a transaction."""
    events = []
    for dm_type in dm_types:
        event = ConsentEvent.objects.create(
            unit_id=recipient.unit_id,
            recipient=recipient,
            dm_type=dm_type,
            action=action,
            channel=channel,
            evidence=evidence,
            # A grant names the notice version agreed to; a withdrawal needs none.
            notice=(notice or dm_type.current_notice)
            if action == Action.GRANT and dm_type
            else None,
            ip_address=ip_address,
            user_agent=user_agent[:500],
            campaign_code=campaign_code,
            actor_id=who.actor_id,
            actor_label=who.actor_label,
        )
        _fold(event)
        events.append(event)
    return events


def _fold(event: ConsentEvent) -> None:
    """Write the subscription row that this event makes current (same transaction)."""
    state = (
        SubscriptionState.GRANTED if event.action == Action.GRANT else SubscriptionState.WITHDRAWN
    )
    updated = Subscription.objects.filter(
        recipient_id=event.recipient_id, dm_type_id=event.dm_type_id
    ).update(state=state, event=event, updated_at=timezone.now())
    if not updated:
        Subscription.objects.create(
            unit_id=event.unit_id,
            recipient_id=event.recipient_id,
            dm_type_id=event.dm_type_id,
            state=state,
            event=event,
        )


def record_bulk(
    *,
    unit_id: int,
    recipients: str,
    action: Action,
    dm_types: list[tuple[int, int | None]],
    channel: str,
    evidence: str,
    who: Who,
    now: datetime,
) -> int:
    """What `record` writes, for every recipient at once: one event per (recipient, DM type)
    and the subscription row it makes current. Returns how many events were written.

    `recipients` names a table of (recipient_id bigint, created boolean): `created` marks
    recipients made in the same transaction, which have no subscription row yet (a plain
    insert; the others upsert). `dm_types` holds (DM type id, its current notice id). The
    caller holds the recipients' locks, in a transaction, with the rules already applied.
    """
    if not dm_types:
        return 0
    pairs = " UNION ALL ".join(["SELECT %s AS dm_type_id, %s AS notice_id"] * len(dm_types))
    pair_params = [value for pair in dm_types for value in pair]
    ev_columns, ev_expressions, ev_params = insert_parts(
        ConsentEvent,
        {
            "unit_id": ("%s", [unit_id]),
            "recipient_id": "i.recipient_id",
            "dm_type_id": "d.dm_type_id",
            "action": ("%s", [action.value]),
            "channel": ("%s", [channel]),
            "evidence": ("%s", [evidence]),
            "notice_id": "d.notice_id" if action == Action.GRANT else "NULL",
            "actor_id": ("%s", [who.actor_id]),
            "actor_label": ("%s", [who.actor_label]),
            "ip_address": "NULL",
            "user_agent": "''",
            "campaign_code": "NULL",
            "created_at": ("%s", [now]),
        },
        now,
    )
    source = f"SELECT {ev_expressions} FROM {recipients} AS i CROSS JOIN ({pairs}) AS d"
    state = SubscriptionState.GRANTED if action == Action.GRANT else SubscriptionState.WITHDRAWN
    sub_columns, sub_expressions, sub_params = insert_parts(
        Subscription,
        {
            "unit_id": ("%s", [unit_id]),
            "recipient_id": "e.recipient_id",
            "dm_type_id": "e.dm_type_id",
            "state": ("%s", [state.value]),
            "event_id": "e.id",
            "updated_at": ("%s", [now]),
        },
        now,
    )
    upsert = (
        "ON CONFLICT (recipient_id, dm_type_id) WHERE dm_type_id IS NOT NULL DO UPDATE SET "
        "state = excluded.state, event_id = excluded.event_id, updated_at = excluded.updated_at"
    )
    written = 0
    with connection.cursor() as cursor:
        for where, conflict in (("i.created", ""), ("NOT i.created", upsert)):
            cursor.execute(
                f"WITH e AS (INSERT INTO {table(ConsentEvent)} ({ev_columns}) {source} "
                f"WHERE {where} RETURNING id, recipient_id, dm_type_id) "
                f"INSERT INTO {table(Subscription)} ({sub_columns}) SELECT {sub_expressions} "
                f"FROM e {conflict}",
                [*ev_params, *pair_params, *sub_params],
            )
            written += cursor.rowcount
    return written
