"""The one writer of the consent ledger (I4).

Every consent event, and the subscription row it makes current (the fold), is written here:
one recipient at a time (`record`, behind consent.services.grant and withdraw, which apply the
rules first), every recipient of an import at once (`record_bulk`), or the one-click POST's
withdrawal in one prepared statement (`record_one_click`, which tests/public keep equal to
`record`'s result). Each also queues the outbound event of the change, in the same
transaction (outbound.services).
"""

from __future__ import annotations

import json

# The bulk SQL is assembled from model table names and constants; every value is a parameter.
# ruff: noqa: S608
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.conf import settings
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
from mlm.db import is_prepared, mark_prepared, once_more_on_a_new_connection
from mlm.inserts import insert_parts, table
from outbound.models import EventType
from outbound.services import emit_statement, events_emit_sql, events_kick
from recipients.models import Recipient, RecipientStatus

_IP_FIELD = ConsentEvent._meta.get_field("ip_address")

# The scope of a withdrawal, as outbound events name it.
SCOPE_DM_TYPE, SCOPE_UNIT, SCOPE_EVERYWHERE = "dm_type", "unit", "everywhere"


def _event_type(action: Action) -> EventType:
    return EventType.CONSENT_GRANTED if action == Action.GRANT else EventType.CONSENT_WITHDRAWN


def _event_data(
    recipient: Recipient, dm_type: DMType | None, *, channel: str, scope: str | None
) -> dict:
    """What an outbound consent event says (the address: the receiving system needs it)."""
    return {
        "recipient": {"code": str(recipient.code), "address": recipient.email},
        "dm_type": None
        if dm_type is None
        else {"code": str(dm_type.code), "key": dm_type.key, "name": dm_type.name},
        "scope": scope or (SCOPE_DM_TYPE if dm_type is not None else SCOPE_UNIT),
        "channel": str(channel),
    }


@dataclass(frozen=True)
class Who:
    """Who recorded a change: a user (or None) and the label kept if the user is deleted."""

    actor_id: int | None
    actor_label: str


# `record` in one statement: the events (in the order of the DM types, so that ids keep it),
# their subscription rows (two upserts: one per partial unique index) and their outbound events
# (a join over the unit's endpoints: none, nothing written). Through the ORM the same work took
# three to four statements per DM type; the API records consent at hundreds a second.
_RECORD = """
WITH d AS (
    SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::jsonb[])
        WITH ORDINALITY AS d(dm_type_id, notice_id, data, ord)
), e AS (
    INSERT INTO {event} ({ev_columns}) SELECT {ev_expressions} FROM d ORDER BY d.ord
    RETURNING id, unit_id, recipient_id, dm_type_id, created_at
), one AS (
    INSERT INTO {subscription} ({sub_columns}) SELECT {sub_expressions} FROM e
    WHERE e.dm_type_id IS NOT NULL
    ON CONFLICT (recipient_id, dm_type_id) WHERE dm_type_id IS NOT NULL DO UPDATE
    SET state = excluded.state, event_id = excluded.event_id, updated_at = excluded.updated_at
), every AS (
    INSERT INTO {subscription} ({sub_columns}) SELECT {sub_expressions} FROM e
    WHERE e.dm_type_id IS NULL
    ON CONFLICT (recipient_id) WHERE dm_type_id IS NULL DO UPDATE
    SET state = excluded.state, event_id = excluded.event_id, updated_at = excluded.updated_at
), outbox AS (
    {emit}
    RETURNING 1
)
SELECT e.id, e.created_at, (SELECT count(*) FROM outbox) FROM e ORDER BY e.id
"""
_RECORD_EMIT_SOURCE = """
    SELECT e.unit_id, %s::text AS type, %s::text AS recipient_key, d.data,
           e.created_at AS at, e.id AS ord
    FROM e JOIN d ON d.dm_type_id IS NOT DISTINCT FROM e.dm_type_id
"""


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
    scope: str | None = None,
) -> list[ConsentEvent]:
    """One event per DM type (None: every DM type of the unit), each folded into its
    subscription row, and its outbound event queued. A grant names `notice`, the version the
    person was shown, else the DM type's current one. The caller holds the recipient's lock, in
    a transaction. `scope` SCOPE_EVERYWHERE marks a withdrawal that is part of one from every
    unit. A DM type named twice is recorded once."""
    dm_types = list({(d.pk if d else None): d for d in dm_types}.values())
    if not dm_types:
        return []
    # A grant names the notice version agreed to; a withdrawal needs none.
    notices = [
        (notice or dm_type.current_notice) if action == Action.GRANT and dm_type else None
        for dm_type in dm_types
    ]
    now = timezone.now()
    ip_address = _IP_FIELD.get_db_prep_save(ip_address, connection)
    ev_columns, ev_expressions, ev_params = insert_parts(
        ConsentEvent,
        {
            "unit_id": ("%s", [recipient.unit_id]),
            "recipient_id": ("%s", [recipient.pk]),
            "dm_type_id": "d.dm_type_id",
            "action": ("%s", [action.value]),
            "channel": ("%s", [str(channel)]),
            "evidence": ("%s", [evidence]),
            "notice_id": "d.notice_id",
            "actor_id": ("%s", [who.actor_id]),
            "actor_label": ("%s", [who.actor_label]),
            "ip_address": ("%s::inet", [ip_address]),
            "user_agent": ("%s", [user_agent[:500]]),
            "campaign_code": ("%s::uuid", [campaign_code]),
            "created_at": ("%s", [now]),
        },
        now,
    )
    state = SubscriptionState.GRANTED if action == Action.GRANT else SubscriptionState.WITHDRAWN
    sub_columns, sub_expressions, sub_params = insert_parts(
        Subscription,
        {
            "unit_id": "e.unit_id",
            "recipient_id": "e.recipient_id",
            "dm_type_id": "e.dm_type_id",
            "state": ("%s", [state.value]),
            "event_id": "e.id",
            "updated_at": "e.created_at",
        },
        now,
    )
    data = [
        json.dumps(_event_data(recipient, dm_type, channel=channel, scope=scope))
        for dm_type in dm_types
    ]
    sql = _RECORD.format(
        event=table(ConsentEvent),
        subscription=table(Subscription),
        ev_columns=ev_columns,
        ev_expressions=ev_expressions,
        sub_columns=sub_columns,
        sub_expressions=sub_expressions,
        emit=emit_statement(_RECORD_EMIT_SOURCE),
    )
    params = [
        [d.pk if d else None for d in dm_types],
        [n.pk if n else None for n in notices],
        data,
        *ev_params,
        *sub_params,
        *sub_params,
        _event_type(action).value,
        str(recipient.code),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if rows[0][2]:
        events_kick()
    events = []
    for (event_id, created_at, _), dm_type, event_notice in zip(
        rows, dm_types, notices, strict=True
    ):
        event = ConsentEvent(
            id=event_id,
            unit_id=recipient.unit_id,
            recipient=recipient,
            dm_type=dm_type,
            action=action,
            channel=channel,
            evidence=evidence,
            notice=event_notice,
            ip_address=ip_address,
            user_agent=user_agent[:500],
            campaign_code=campaign_code,
            actor_id=who.actor_id,
            actor_label=who.actor_label,
            created_at=created_at,
        )
        event._state.adding, event._state.db = False, connection.alias
        events.append(event)
    return events


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
    _emit_bulk(unit_id=unit_id, recipients=recipients, action=action, dm_types=dm_types,
               channel=channel, now=now)  # fmt: skip
    return written


def _emit_bulk(
    *,
    unit_id: int,
    recipients: str,
    action: Action,
    dm_types: list[tuple[int, int | None]],
    channel: str,
    now: datetime,
) -> int:
    """The outbound events of `record_bulk`: one INSERT … SELECT (nothing without an endpoint)."""
    source = (
        "SELECT %s::bigint AS unit_id, %s::text AS type, r.code::text AS recipient_key, "
        "jsonb_build_object('recipient', jsonb_build_object('code', r.code::text, "
        "'address', r.email), 'dm_type', jsonb_build_object('code', t.code::text, "
        "'key', t.key, 'name', t.name), 'scope', %s::text, 'channel', %s::text) AS data, "
        "%s::timestamptz AS at, row_number() OVER (ORDER BY r.id, t.id) AS ord "
        f"FROM {recipients} AS i JOIN {table(Recipient)} r ON r.id = i.recipient_id "
        f"JOIN {table(DMType)} t ON t.id = ANY(%s)"
    )
    params = [
        unit_id,
        _event_type(action).value,
        SCOPE_DM_TYPE,
        channel,
        now,
        [dm_type_id for dm_type_id, _ in dm_types],
    ]
    return events_emit_sql(unit_id=unit_id, type=_event_type(action), source=source, params=params)


# The one-click POST (RFC 8058) in one statement: find the token's recipient and DM type, lock
# the recipient (as `consent.services.withdraw` does), skip if the fold already says withdrawn,
# write the withdrawal, fold it into the subscription row and queue its outbound event (for no
# endpoint, a join over none). Mail providers post these in bursts and the endpoint must answer
# 300 a second on two cores: through the ORM the same work took seven round trips and 6 ms of
# CPU (bench/unsubscribe.py), here one. Every rule is the one `recipient_unsubscribe` +
# `withdraw` apply; tests/public compare the two paths' ledgers.
#
# It is PREPAREd once per connection: planning the statement cost PostgreSQL four times what
# running it does. (Named prepared statements need a session of our own: behind a pooler in
# transaction mode, set ONE_CLICK_PREPARED=False.)
_ONE_CLICK_NAME = "mlm_one_click_withdraw"
_ONE_CLICK_TYPES = "uuid, uuid, inet, text, uuid, text, text, text, text, text, text, text"
_ONE_CLICK_WITHDRAW = """
WITH target AS (
    SELECT r.id AS recipient_id, r.unit_id, d.id AS dm_type_id, r.code AS recipient_code,
           r.email, d.code AS dm_type_code, d.key AS dm_type_key, d.name AS dm_type_name
    FROM {recipient} r JOIN {dm_type} d ON d.code = $1 AND d.unit_id = r.unit_id
    WHERE r.code = $2 AND r.status <> $6
    FOR UPDATE OF r
), fresh AS (
    SELECT t.* FROM target t
    WHERE COALESCE((
        SELECT s.state FROM {subscription} s
        WHERE s.recipient_id = t.recipient_id
          AND (s.dm_type_id = t.dm_type_id OR s.dm_type_id IS NULL)
        ORDER BY s.event_id DESC LIMIT 1
    ), '') <> $7
), event AS (
    INSERT INTO {event} (unit_id, recipient_id, dm_type_id, action, channel, evidence,
                         notice_id, actor_id, actor_label, ip_address, user_agent,
                         campaign_code, created_at)
    SELECT unit_id, recipient_id, dm_type_id, $8, $9, $10,
           NULL, NULL, $11, $3, $4, $5, statement_timestamp()
    FROM fresh
    RETURNING id, unit_id, recipient_id, dm_type_id, created_at
), folded AS (
    INSERT INTO {subscription} (unit_id, recipient_id, dm_type_id, state, event_id, updated_at)
    SELECT unit_id, recipient_id, dm_type_id, $7, id, created_at FROM event
    ON CONFLICT (recipient_id, dm_type_id) WHERE dm_type_id IS NOT NULL
    DO UPDATE SET state = EXCLUDED.state, event_id = EXCLUDED.event_id,
                  updated_at = EXCLUDED.updated_at
    RETURNING 1
), outbox AS (
    {emit}
    RETURNING 1
)
SELECT (SELECT count(*) FROM folded), (SELECT count(*) FROM outbox)
"""
_ONE_CLICK_EMIT_SOURCE = """
    SELECT e.unit_id, $12 AS type, f.recipient_code::text AS recipient_key,
           jsonb_build_object(
               'recipient', jsonb_build_object('code', f.recipient_code::text,
                                               'address', f.email),
               'dm_type', jsonb_build_object('code', f.dm_type_code::text,
                                             'key', f.dm_type_key, 'name', f.dm_type_name),
               'scope', 'dm_type', 'channel', $9) AS data,
           e.created_at AS at, e.id AS ord
    FROM event e JOIN fresh f ON f.recipient_id = e.recipient_id
"""


def _one_click_statement() -> str:
    """The statement's text, with the tables' names."""
    return _ONE_CLICK_WITHDRAW.format(
        recipient=table(Recipient),
        dm_type=table(DMType),
        subscription=table(Subscription),
        event=table(ConsentEvent),
        emit=emit_statement(_ONE_CLICK_EMIT_SOURCE),
    )


def _one_click_run(cursor, params: list) -> int:
    """EXECUTE the prepared statement, PREPAREing it first on a connection new to it; returns
    how many outbound events it queued."""
    prepare = f"PREPARE {_ONE_CLICK_NAME} ({_ONE_CLICK_TYPES}) AS {_one_click_statement()}"
    execute = f"EXECUTE {_ONE_CLICK_NAME} ({', '.join(['%s'] * len(params))})"
    if not settings.ONE_CLICK_PREPARED:
        cursor.execute(prepare)
        try:
            cursor.execute(execute, params)
            return cursor.fetchone()[1]
        finally:
            cursor.execute(f"DEALLOCATE {_ONE_CLICK_NAME}")
    if not is_prepared(_ONE_CLICK_NAME):
        cursor.execute(prepare)
        mark_prepared(_ONE_CLICK_NAME)
    cursor.execute(execute, params)
    return cursor.fetchone()[1]


def _one_click_once(params: list) -> int:
    with connection.cursor() as cursor:
        return _one_click_run(cursor, params)


def record_one_click(
    *,
    dm_type_code: UUID,
    recipient_code: UUID,
    channel: str,
    evidence: str,
    actor_label: str,
    ip_address: str | None = None,
    user_agent: str = "",
    campaign_code: UUID | None = None,
) -> None:
    """Withdraw one DM type of one recipient, named by their codes, unless the fold already
    says withdrawn: what `record` writes for a withdrawal, in one statement."""
    params = [
        dm_type_code,
        recipient_code,
        ip_address,
        user_agent[:500],
        campaign_code,
        RecipientStatus.ERASED.value,
        SubscriptionState.WITHDRAWN.value,
        Action.WITHDRAW.value,
        channel,
        evidence,
        actor_label,
        EventType.CONSENT_WITHDRAWN.value,
    ]
    # One statement, so autocommit makes it one transaction: no BEGIN and COMMIT round trips.
    # Nor a health check's SELECT 1 before it (a third of the database time): a connection that
    # died since the last request fails the statement itself, which then runs once more on a new
    # connection. Safe to repeat: a withdrawal already written makes the second one write nothing.
    queued = once_more_on_a_new_connection(lambda: _one_click_once(params), what="one-click")
    if queued:
        events_kick()
