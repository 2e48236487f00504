"""Reads with rules. `sendable` is the only definition of who may be mailed (I1)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, F, FilteredRelation, OuterRef, Q, QuerySet

from consent.models import ConsentEvent, DMType, Subscription, SubscriptionState, Suppression
from mlm.models import SenderUnit
from recipients.models import Audience, Category, Recipient, RecipientStatus


def _latest_is(state: SubscriptionState) -> Q:
    """The later of the (R, T) row and the (R, all DM types) row has `state`.

    Uses the two filtered joins `sub_t` and `sub_all` that `sendable` annotates; event ids
    grow in commit order per recipient (services lock the recipient), so the higher id wins.
    """
    t_wins = Q(sub_t__state=state) & (
        Q(sub_all__id__isnull=True) | Q(sub_t__event_id__gt=F("sub_all__event_id"))
    )
    all_wins = Q(sub_all__state=state) & (
        Q(sub_t__id__isnull=True) | Q(sub_all__event_id__gt=F("sub_t__event_id"))
    )
    return t_wins | all_wins


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
    recipients = Recipient.objects.filter(
        unit=unit,
        status=RecipientStatus.ACTIVE,
        category__in=Category.of_audience(audience),
    ).annotate(
        sub_t=FilteredRelation("subscriptions", condition=Q(subscriptions__dm_type=dm_type)),
        sub_all=FilteredRelation("subscriptions", condition=Q(subscriptions__dm_type__isnull=True)),
    )
    suppressed = Suppression.objects.filter(
        Q(unit=unit) | Q(unit__isnull=True), email_hash=OuterRef("email_hash")
    )
    recipients = recipients.filter(~Exists(suppressed))
    granted = _latest_is(SubscriptionState.GRANTED)
    if audience == Audience.EXTERNAL or not dm_type.internal_default:
        return recipients.filter(granted)
    return recipients.exclude(_latest_is(SubscriptionState.WITHDRAWN))


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
