"""The start of a campaign's sending (DESIGN §5, steps 2 and 3; I1): the snapshot, the start
itself, and the scheduled campaigns whose time has come.

- `campaign_start` moves a scheduled campaign to sending (the status machine's
  `campaign_mark_started`) and writes its snapshot in the same transaction, in ONE SQL statement
  (an INSERT … SELECT built from `consent.selectors.sendable`): `queued` where I1 holds now, else
  `skipped` with the reason. Then it fans out the batch tasks, on commit.
- `campaigns_start_due` is beat's sweep: every scheduled campaign whose time has come starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, connection, transaction
from django.db.models import (
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns import enqueue
from campaigns.models import Campaign, Delivery, DeliveryStatus, SkipReason
from campaigns.segments import campaign_segment_freeze
from campaigns.selectors import campaign_members, campaigns_due, frequency_caps, skip_reason
from campaigns.sending.recovery import campaign_finish_if_done
from campaigns.services.status import TransitionError, campaign_mark_started
from consent.selectors import sendable
from mlm.db import queryset_sql

log = logging.getLogger(__name__)

D = DeliveryStatus


# --- the snapshot (I1) ---------------------------------------------------------------------------


def _snapshot_select(campaign: Campaign) -> tuple[str, tuple, int, int]:
    """SELECT of every member of the campaign's lists with: may we mail them now (sendable, the
    one definition of I1), why not, and their mails within each frequency cap's window."""
    unit, dm_type, audience = campaign.unit, campaign.dm_type, campaign.audience
    allowed = sendable(unit=unit, dm_type=dm_type, audience=audience).filter(pk=OuterRef("pk"))
    why = skip_reason(campaign)
    caps = {cap.scope: cap for cap in frequency_caps(unit)}

    def recent(scope: str):
        cap = caps.get(scope)
        if cap is None:
            return Value(0, output_field=IntegerField())
        sent = Delivery.objects.filter(status=D.SENT, sent_at__gte=cap.since)
        if scope == "unit":
            sent = sent.filter(recipient=OuterRef("pk"))
        else:
            sent = sent.filter(email_hash=OuterRef("email_hash"))
        count = sent.order_by().values("email_hash").annotate(n=Count("id")).values("n")[:1]
        return Coalesce(Subquery(count, output_field=IntegerField()), 0)

    members = (
        campaign_members(campaign)
        .order_by()
        .annotate(
            m_ok=Exists(allowed),
            m_why=why,
            m_unit_recent=recent("unit"),
            m_inst_recent=recent("institution"),
        )
        .values_list("pk", "email_hash", "m_ok", "m_why", "m_unit_recent", "m_inst_recent")
    )
    sql, params = queryset_sql(members)
    unit_cap = caps["unit"].mails if "unit" in caps else 2**31 - 1
    inst_cap = caps["institution"].mails if "institution" in caps else 2**31 - 1
    return sql, (*params,), unit_cap, inst_cap


@transaction.atomic
def deliveries_snapshot(*, campaign: Campaign) -> int:
    """Write the campaign's delivery rows in one statement: `queued` where sendable now (I1),
    else `skipped` with the reason; rows that exist already are kept (unique per recipient).
    A segment is resolved here, once, from the copy kept as sending starts."""
    campaign_segment_freeze(campaign=campaign)
    select, params, unit_cap, inst_cap = _snapshot_select(campaign)
    table = Delivery._meta.db_table
    # Only our own table name is interpolated; values travel as parameters.
    # MATERIALIZED: each member's row is worked out once; inlined, PostgreSQL evaluated the
    # sendable test once for each CASE that reads `ok` (twice the work, bench/dispatch.py).
    sql = f"""
        WITH m (id, email_hash, ok, why, unit_recent, inst_recent) AS MATERIALIZED ({select})
        INSERT INTO {table} (campaign_id, unit_id, recipient_id, email_hash, status, reason,
                             message_id, provider_message_id, attempts, reply, created_at,
                             updated_at)
        SELECT %s, %s, m.id, m.email_hash,
               CASE WHEN m.ok AND m.unit_recent < %s AND m.inst_recent < %s
                    THEN %s ELSE %s END,
               CASE WHEN NOT m.ok THEN m.why
                    WHEN m.unit_recent >= %s THEN %s
                    WHEN m.inst_recent >= %s THEN %s
                    ELSE '' END,
               '', '', 0, '', %s, %s
        FROM m
        ON CONFLICT (campaign_id, recipient_id) DO NOTHING
    """  # noqa: S608
    now = timezone.now()
    values = [
        campaign.pk,
        campaign.unit_id,
        unit_cap,
        inst_cap,
        D.QUEUED.value,
        D.SKIPPED.value,
        unit_cap,
        SkipReason.UNIT_CAP.value,
        inst_cap,
        SkipReason.INSTITUTION_CAP.value,
        now,
        now,
    ]
    # The SELECT's placeholders come first now, then ours.
    with connection.cursor() as cursor:
        # The plan's cost passes PostgreSQL's JIT thresholds, and compiling it was most of the
        # snapshot's time (bench/dispatch.py): the wait before the first mail. Interpreted, the
        # statement itself takes no longer.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, [*params, *values])
        written = cursor.rowcount
    return written


@transaction.atomic
def campaign_start(*, campaign: Campaign, by: AbstractBaseUser | None = None) -> int:
    """Scheduled → sending with its snapshot, in one transaction; the batch tasks are enqueued
    on commit (a rollback enqueues nothing). Answers how many rows the snapshot wrote."""
    campaign_mark_started(campaign=campaign, by=by)
    written = deliveries_snapshot(campaign=campaign)
    queued = Delivery.objects.filter(campaign=campaign, status=D.QUEUED).count()
    log.info("campaign %s started: %s deliveries, %s queued", campaign.code, written, queued)
    if queued:
        enqueue.batches_fan_out(campaign_id=campaign.pk)
    else:
        transaction.on_commit(lambda: campaign_finish_if_done(campaign_id=campaign.pk))
    return written


def campaigns_start_due(
    *, now=None, on_error: Callable[[int, DatabaseError], None] | None = None
) -> list[int]:
    """Start every scheduled campaign whose time has come, also those whose time passed while
    the system was down; each in its own transaction. Answers their ids. With `on_error`, a
    campaign whose start fails at the database is handed to it and the others still start."""
    started = []
    for campaign in campaigns_due(now).select_related("unit", "dm_type"):
        try:
            campaign_start(campaign=campaign, by=None)
        except TransitionError:  # another beat or a person got there first
            continue
        except DatabaseError as error:
            if on_error is None:
                raise
            on_error(campaign.pk, error)
            continue
        started.append(campaign.pk)
    return started
