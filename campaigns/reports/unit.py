"""Reads for a unit's reports page: consent by DM type, list growth, campaign history and the
complaint trend, per week in the unit's time zone.

Everything is aggregated in PostgreSQL (GROUP BY, date_trunc in the unit's time zone) over the
indexed columns: consent events and provider events by (unit, occurred_at), deliveries by
(campaign, status).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import UUID

from django.db.models import Count, Exists, Min, OuterRef, Q
from django.db.models.functions import TruncWeek
from django.utils import timezone

from campaigns.models import Campaign, Delivery, DeliveryEvent, DeliveryStatus, EventKind
from campaigns.reports.buckets import rate
from campaigns.reports.campaign import ALL_DM_TYPES, unsubscribes_by_campaign
from consent.models import Action, ConsentEvent, DMType, Subscription, SubscriptionState
from mlm.models import SenderUnit
from recipients.models import ListMembership, RecipientList, RecipientStatus

# Complaint rates that mailbox providers treat as warnings (0.1%) and as the limit (0.3%).
COMPLAINT_WARNING = 0.1
COMPLAINT_LIMIT = 0.3
REPORT_WEEKS = 26
HISTORY_CAMPAIGNS = 50


@dataclass
class WeeklySeries:
    """Per-week counts over the report's weeks (Mondays, in the unit's time zone)."""

    weeks: list[date]
    series: dict[str, list[int]]

    @property
    def labels(self) -> list[str]:
        return [f"week of {w:%Y-%m-%d}" for w in self.weeks]

    @property
    def tick_labels(self) -> list[str]:
        return [f"{w:%m-%d}" for w in self.weeks]


@dataclass(frozen=True)
class ConsentRow:
    name: str
    archived: bool
    subscribed: int
    grants: int
    withdrawals: int


@dataclass
class ConsentReport:
    rows: list[ConsentRow]
    grants: WeeklySeries
    withdrawals: WeeklySeries


@dataclass(frozen=True)
class ListRow:
    name: str
    members: int
    added: int


@dataclass
class ListGrowth:
    rows: list[ListRow]
    members: WeeklySeries  # members at the end of each week, per list


@dataclass(frozen=True)
class CampaignRow:
    name: str
    code: UUID
    sent_at: datetime | None
    sent: int
    delivered: int
    bounced: int
    complained: int
    unsubscribed: int

    @property
    def bounce_rate(self) -> float | None:
        return rate(self.bounced, self.sent)

    @property
    def complaint_rate(self) -> float | None:
        return rate(self.complained, self.sent)


@dataclass
class ComplaintTrend:
    weeks: list[date]
    sent: list[int]
    complained: list[int]

    @property
    def rates(self) -> list[float | None]:
        return [rate(c, s) for c, s in zip(self.complained, self.sent, strict=True)]


@dataclass
class UnitReport:
    consent: ConsentReport
    lists: ListGrowth
    campaigns: list[CampaignRow]
    complaints: ComplaintTrend
    weeks: int


def report_weeks(unit: SenderUnit, weeks: int = REPORT_WEEKS) -> tuple[list[date], datetime]:
    """The last `weeks` weeks up to this one (their Mondays, local) and when the first began."""
    today = timezone.localdate(timezone.now(), unit.tzinfo)
    this_monday = today - timedelta(days=today.weekday())
    mondays = [this_monday - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    since = datetime.combine(mondays[0], datetime.min.time(), tzinfo=unit.tzinfo)
    return mondays, since


def _week(moment: datetime) -> date:
    return moment.date()


def subscribed_now(unit: SenderUnit) -> dict[int, int]:
    """Active recipients per DM type whose latest consent event for it is a grant (an
    "all DM types" withdrawal after the grant wins, as in `sendable`)."""
    withdrawn_later = Subscription.objects.filter(
        recipient=OuterRef("recipient"),
        dm_type__isnull=True,
        state=SubscriptionState.WITHDRAWN,
        event_id__gt=OuterRef("event_id"),
    )
    rows = (
        Subscription.objects.for_unit(unit)
        .filter(
            dm_type__isnull=False,
            state=SubscriptionState.GRANTED,
            recipient__status=RecipientStatus.ACTIVE,
        )
        .filter(~Exists(withdrawn_later))
        .order_by()
        .values("dm_type")
        .annotate(n=Count("id"))
    )
    return {row["dm_type"]: row["n"] for row in rows}


def consent_report(unit: SenderUnit, weeks: int = REPORT_WEEKS) -> ConsentReport:
    """Subscribed now, and grants and withdrawals per week, by DM type."""
    mondays, since = report_weeks(unit, weeks)
    at = {m: i for i, m in enumerate(mondays)}
    dm_types = list(DMType.objects.for_unit(unit).order_by("name"))
    names = {t.pk: t.name for t in dm_types}
    rows = (
        ConsentEvent.objects.for_unit(unit)
        .filter(created_at__gte=since)
        .annotate(week=TruncWeek("created_at", tzinfo=unit.tzinfo))
        .order_by()
        .values("week", "dm_type", "action")
        .annotate(n=Count("id"))
    )
    grants: dict[str, list[int]] = {t.name: [0] * weeks for t in dm_types}
    withdrawals: dict[str, list[int]] = {t.name: [0] * weeks for t in dm_types}
    totals: dict[tuple[int | None, str], int] = defaultdict(int)
    for row in rows:
        name = names.get(row["dm_type"], ALL_DM_TYPES)
        target = grants if row["action"] == Action.GRANT else withdrawals
        week = _week(row["week"])
        if week in at:
            target.setdefault(name, [0] * weeks)[at[week]] += row["n"]
            totals[(row["dm_type"], row["action"])] += row["n"]
    subscribed = subscribed_now(unit)
    table = [
        ConsentRow(
            t.name,
            t.is_archived,
            subscribed.get(t.pk, 0),
            totals[(t.pk, Action.GRANT)],
            totals[(t.pk, Action.WITHDRAW)],
        )
        for t in dm_types
    ]
    if totals[(None, Action.WITHDRAW)] or totals[(None, Action.GRANT)]:
        table.append(
            ConsentRow(
                ALL_DM_TYPES,
                False,
                0,
                totals[(None, Action.GRANT)],
                totals[(None, Action.WITHDRAW)],
            )
        )
    return ConsentReport(
        rows=table,
        grants=WeeklySeries(mondays, grants),
        withdrawals=WeeklySeries(mondays, withdrawals),
    )


def list_growth(unit: SenderUnit, weeks: int = REPORT_WEEKS, most: int = 8) -> ListGrowth:
    """Members per list at the end of each week, counting today's members by when they were
    added (a removed member leaves no trace, so the past shows today's members only)."""
    mondays, since = report_weeks(unit, weeks)
    at = {m: i for i, m in enumerate(mondays)}
    lists = {rl.pk: rl.name for rl in RecipientList.objects.for_unit(unit)}
    memberships = ListMembership.objects.filter(recipient_list__unit=unit).order_by()
    before = dict(
        memberships.filter(added_at__lt=since).values_list("recipient_list").annotate(n=Count("id"))
    )
    added: dict[int, list[int]] = {pk: [0] * weeks for pk in lists}
    recent = (
        memberships.filter(added_at__gte=since)
        .annotate(week=TruncWeek("added_at", tzinfo=unit.tzinfo))
        .values("recipient_list", "week")
        .annotate(n=Count("id"))
    )
    for row in recent:
        week = _week(row["week"])
        if week in at and row["recipient_list"] in added:
            added[row["recipient_list"]][at[week]] += row["n"]
    members: dict[int, list[int]] = {}
    for pk, counts in added.items():
        running, total = before.get(pk, 0), []
        for n in counts:
            running += n
            total.append(running)
        members[pk] = total
    order = sorted(lists, key=lambda pk: (-members[pk][-1], lists[pk]))
    rows = [ListRow(lists[pk], members[pk][-1], sum(added[pk])) for pk in order]
    series = {lists[pk]: members[pk] for pk in order[:most]}
    return ListGrowth(rows=rows, members=WeeklySeries(mondays, series))


def campaign_history(unit: SenderUnit, limit: int = HISTORY_CAMPAIGNS) -> list[CampaignRow]:
    """The unit's latest campaigns that started sending, with their main figures."""
    campaigns = list(
        Campaign.objects.for_unit(unit)
        .filter(started_at__isnull=False)
        .order_by("-started_at", "-id")[:limit]
    )
    ids = [c.pk for c in campaigns]
    sent = {
        row["campaign"]: row
        for row in Delivery.objects.filter(campaign__in=ids, status=DeliveryStatus.SENT)
        .order_by()
        .values("campaign")
        .annotate(n=Count("id"), first=Min("sent_at"))
    }
    events: dict[tuple[int, str], int] = {
        (row["campaign"], row["kind"]): row["n"]
        for row in DeliveryEvent.objects.filter(
            campaign__in=ids,
            delivery__isnull=False,
            kind__in=[EventKind.DELIVERED, EventKind.BOUNCED, EventKind.COMPLAINED],
        )
        .order_by()
        .values("campaign", "kind")
        .annotate(n=Count("delivery", distinct=True))
    }
    unsubscribed = unsubscribes_by_campaign(ids, unit)
    rows = []
    for c in campaigns:
        mine = sent.get(c.pk, {})
        rows.append(
            CampaignRow(
                name=c.name,
                code=c.code,
                sent_at=mine.get("first") or c.started_at,
                sent=mine.get("n", 0),
                delivered=events.get((c.pk, EventKind.DELIVERED), 0),
                bounced=events.get((c.pk, EventKind.BOUNCED), 0),
                complained=events.get((c.pk, EventKind.COMPLAINED), 0),
                unsubscribed=unsubscribed.get(c.pk, 0),
            )
        )
    return rows


def complaint_trend(unit: SenderUnit, weeks: int = REPORT_WEEKS) -> ComplaintTrend:
    """Per week: mail sent, and how many of those mails drew a complaint (whenever it came)."""
    mondays, since = report_weeks(unit, weeks)
    at = {m: i for i, m in enumerate(mondays)}
    # A complaint comes after its mail: the unit's complaints since the first week (index on
    # unit and time) hold every one about the mail of these weeks.
    complained = DeliveryEvent.objects.filter(
        unit=unit, occurred_at__gte=since, kind=EventKind.COMPLAINED, delivery__isnull=False
    ).values("delivery_id")
    rows = (
        Delivery.objects.for_unit(unit)
        .filter(status=DeliveryStatus.SENT, sent_at__gte=since)
        .annotate(week=TruncWeek("sent_at", tzinfo=unit.tzinfo))
        .order_by()
        .values("week")
        .annotate(n=Count("id"), complaints=Count("id", filter=Q(id__in=complained)))
    )
    sent, complaints = [0] * weeks, [0] * weeks
    for row in rows:
        week = _week(row["week"])
        if week in at:
            sent[at[week]] += row["n"]
            complaints[at[week]] += row["complaints"]
    return ComplaintTrend(weeks=mondays, sent=sent, complained=complaints)


def unit_report(unit: SenderUnit, weeks: int = REPORT_WEEKS) -> UnitReport:
    """Everything the unit's reports page shows."""
    return UnitReport(
        consent=consent_report(unit, weeks),
        lists=list_growth(unit, weeks),
        campaigns=campaign_history(unit),
        complaints=complaint_trend(unit, weeks),
        weeks=weeks,
    )
