"""Reads with rules. `sendable` is the only definition of who may be mailed (I1)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import Exists, F, FilteredRelation, OuterRef, Q, QuerySet

from consent.models import (
    Action,
    ConsentEvent,
    DMType,
    Subscription,
    SubscriptionState,
    Suppression,
)
from mlm.models import SenderUnit
from recipients.addresses import address_hash, case_sensitive_hash, normalise_address
from recipients.models import Audience, Category, Recipient, RecipientStatus


def _latest_is(state: SubscriptionState) -> Q:
    """The later of the (R, T) row and the (R, all DM types) row has `state`.

    Uses the two filtered joins `sub_t` and `sub_all` that `sendable` annotates; event ids
    grow in commit order per recipient (services lock the recipient), so the higher id wins.
    "No row" is tested on the event column (never NULL in a row): with state and event in the
    covering indexes of consent migration 0006 the joins read no table rows.
    """
    t_wins = Q(sub_t__state=state) & (
        Q(sub_all__event__isnull=True) | Q(sub_t__event_id__gt=F("sub_all__event_id"))
    )
    all_wins = Q(sub_all__state=state) & (
        Q(sub_t__event__isnull=True) | Q(sub_all__event_id__gt=F("sub_t__event_id"))
    )
    return t_wins | all_wins


def _with_subscriptions(recipients: QuerySet[Recipient], dm_type: DMType) -> QuerySet[Recipient]:
    """The two filtered joins `_latest_is` reads: the (R, T) row and the (R, all) row."""
    return recipients.annotate(
        sub_t=FilteredRelation("subscriptions", condition=Q(subscriptions__dm_type=dm_type)),
        sub_all=FilteredRelation("subscriptions", condition=Q(subscriptions__dm_type__isnull=True)),
    )


def sendable(*, unit: SenderUnit, dm_type: DMType, audience: str) -> QuerySet[Recipient]:
    """Recipients of `unit` and `audience` whom a message of `dm_type` may reach now (I1).

    - active, and their address not suppressed for the unit or globally;
    - external: the latest event for (R, T) is a grant (grants always carry evidence: a
      database constraint);
    - internal: the latest event is not a withdrawal, and T goes to internal recipients by
      default or the latest event is a grant.

    One query: two LEFT JOINs on subscriptions and an anti-join on suppressions.
    """
    if dm_type.unit_id != unit.pk:
        return Recipient.objects.none()
    recipients = _with_subscriptions(
        Recipient.objects.filter(
            unit=unit,
            status=RecipientStatus.ACTIVE,
            category__in=Category.of_audience(audience),
        ),
        dm_type,
    )
    suppressed = Suppression.objects.filter(
        Q(unit=unit) | Q(unit__isnull=True), email_hash=OuterRef("email_hash")
    )
    recipients = recipients.filter(~Exists(suppressed))
    grant_is_latest = _latest_is(SubscriptionState.GRANTED)
    if audience == Audience.EXTERNAL or not dm_type.internal_default:
        return recipients.filter(grant_is_latest)
    # "The latest event is not a withdrawal", said positively: no event at all, or the latest
    # is a grant. exclude() across the two joins compiled into NOT IN subqueries over the whole
    # unit (9 s instead of 1 s for a million recipients, and no index walk for a first page).
    no_event = Q(sub_t__event__isnull=True, sub_all__event__isnull=True)
    return recipients.filter(no_event | grant_is_latest)


def granted(*, unit: SenderUnit, dm_type: DMType) -> QuerySet[Recipient]:
    """Recipients of `unit` whose latest consent event for `dm_type` is a grant, whatever
    their status or audience: who agreed, not who may be mailed (that is `sendable`)."""
    if dm_type.unit_id != unit.pk:
        return Recipient.objects.none()
    recipients = _with_subscriptions(Recipient.objects.filter(unit=unit), dm_type)
    return recipients.filter(_latest_is(SubscriptionState.GRANTED))


@dataclass(frozen=True)
class DMTypeState:
    """What a recipient's consent to one DM type is now, and the event that made it so."""

    dm_type: DMType
    subscribed: bool
    event: ConsentEvent | None
    by_default: bool  # internal recipient receiving an internal-default DM type without a grant


def recipient_dm_type_states(recipient: Recipient) -> list[DMTypeState]:
    """Per DM type of the unit (archived ones included), the recipient's current state.

    Follows the same rule as `sendable`, for one recipient; the recipient page shows it.
    """
    rows = {
        s.dm_type_id: s
        for s in Subscription.objects.filter(recipient=recipient).select_related(
            "event", "event__notice"
        )
    }
    all_row = rows.get(None)
    internal = recipient.audience == Audience.INTERNAL
    states = []
    for dm_type in DMType.objects.for_unit(recipient.unit).order_by("name"):
        row = rows.get(dm_type.pk)
        latest = row
        if all_row is not None and (row is None or all_row.event_id > row.event_id):
            latest = all_row
        if latest is None:
            subscribed = internal and dm_type.internal_default
            states.append(DMTypeState(dm_type, subscribed, None, subscribed))
            continue
        granted = latest.state == SubscriptionState.GRANTED
        by_default = internal and dm_type.internal_default and not granted
        subscribed = granted or (
            internal and dm_type.internal_default and latest.state != SubscriptionState.WITHDRAWN
        )
        states.append(DMTypeState(dm_type, subscribed, latest.event, by_default and subscribed))
    return states


@dataclass(frozen=True)
class SubscriptionMismatch:
    """One place where the subscription rows differ from the fold of the ledger (I4)."""

    kind: str  # missing, extra, state, event or unit (see subscription_mismatches)
    recipient_id: int
    dm_type_id: int | None  # None: the "all DM types of the unit" row
    expected_state: str | None  # None: no event, so there should be no row
    expected_event_id: int | None
    actual_state: str | None  # None: there is no row
    actual_event_id: int | None


MISMATCH_KINDS = {
    "missing": "the ledger has events but there is no subscription row",
    "extra": "a subscription row without any event",
    "state": "the row's state is not the latest event's action",
    "event": "the row does not point at the latest event",
    "unit": "the row's unit is not the latest event's unit",
}


def subscription_mismatches() -> list[SubscriptionMismatch]:
    """Recompute every subscription from the events and list where the rows differ (I4).

    The latest event (highest id) per (recipient, DM type or "all") decides the state. One SQL
    statement; an empty list means the rows are the fold.
    """
    events = ConsentEvent._meta.db_table
    subscriptions = Subscription._meta.db_table
    # COALESCE(dm_type_id, 0) pairs the "all DM types" rows (NULL never equals NULL; ids > 0).
    # Only table names of our own models are interpolated; values go as parameters.
    sql = f"""
        WITH latest AS (
            SELECT recipient_id, dm_type_id, MAX(id) AS event_id
            FROM {events}
            GROUP BY recipient_id, dm_type_id
        ), expected AS (
            SELECT l.recipient_id, l.dm_type_id, l.event_id, e.unit_id,
                   CASE WHEN e.action = %s THEN %s ELSE %s END AS state
            FROM latest l JOIN {events} e ON e.id = l.event_id
        )
        SELECT x.recipient_id, x.dm_type_id, x.state, x.event_id,
               s.state, s.event_id,
               CASE
                   WHEN s.id IS NULL THEN 'missing'
                   WHEN s.state <> x.state THEN 'state'
                   WHEN s.event_id <> x.event_id THEN 'event'
                   ELSE 'unit'
               END
        FROM expected x
        LEFT JOIN {subscriptions} s
            ON s.recipient_id = x.recipient_id
            AND COALESCE(s.dm_type_id, 0) = COALESCE(x.dm_type_id, 0)
        WHERE s.id IS NULL OR s.state <> x.state OR s.event_id <> x.event_id
            OR s.unit_id <> x.unit_id
        UNION ALL
        SELECT s.recipient_id, s.dm_type_id, NULL, NULL, s.state, s.event_id, 'extra'
        FROM {subscriptions} s
        WHERE NOT EXISTS (
            SELECT 1 FROM {events} e
            WHERE e.recipient_id = s.recipient_id
            AND COALESCE(e.dm_type_id, 0) = COALESCE(s.dm_type_id, 0)
        )
    """  # noqa: S608
    params = [Action.GRANT, SubscriptionState.GRANTED, SubscriptionState.WITHDRAWN]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    found = [
        SubscriptionMismatch(
            kind=kind,
            recipient_id=recipient_id,
            dm_type_id=dm_type_id,
            expected_state=state,
            expected_event_id=event_id,
            actual_state=row_state,
            actual_event_id=row_event_id,
        )
        for recipient_id, dm_type_id, state, event_id, row_state, row_event_id, kind in rows
    ]
    return sorted(found, key=lambda m: (m.recipient_id, m.dm_type_id or 0))


def address_suppressions(*, unit: SenderUnit, email: str) -> list[Suppression]:
    """The suppressions that keep `email` from the unit's mail: the unit's own and the global
    ones, matched in any case of the address, including those kept from before as a hash of
    the address as written (Suppression.case_sensitive). Raises InvalidAddress."""
    normalised = normalise_address(email)
    matches = Q(email_hash=address_hash(normalised)) | Q(
        case_sensitive=True, email_hash=case_sensitive_hash(normalised)
    )
    found = Suppression.objects.filter(Q(unit=unit) | Q(unit__isnull=True), matches)
    return list(found.order_by(F("unit").asc(nulls_last=True), "created_at", "id"))
