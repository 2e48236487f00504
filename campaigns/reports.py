"""Reads for the reports: a campaign's figures, timeline, unsubscribes by DM type and recipient
domains; a unit's consent by DM type, list growth, campaign history and complaint trend.

Everything is aggregated in PostgreSQL (GROUP BY, date_trunc in the unit's time zone) over the
indexed columns: deliveries by (campaign, status), events by (campaign, kind, occurred_at) and
(unit, occurred_at). Rates are shares of the deliveries sent. An event kind counts each delivery
once (two opens of one mail are one opened delivery); a timeline puts each delivery in the
bucket of its first event of the kind, so a series adds up to the figure beside it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    Func,
    Max,
    Min,
    OuterRef,
    Q,
    Value,
    When,
)
from django.db.models.functions import Lower, TruncWeek
from django.utils import timezone

from campaigns.models import (
    BounceKind,
    Campaign,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EventKind,
    SkipReason,
)
from campaigns.selectors import unit_settings
from consent.models import Action, ConsentEvent, DMType, Subscription, SubscriptionState
from mlm.models import SenderUnit
from recipients.models import ListMembership, RecipientList, RecipientStatus

# What the figures count from the providers' events, in the order the report shows them.
EVENT_FIGURES = [
    EventKind.DELIVERED,
    EventKind.BOUNCED,
    EventKind.COMPLAINED,
    EventKind.OPENED,
    EventKind.CLICKED,
]
TIMELINE_KINDS = [
    EventKind.DELIVERED,
    EventKind.OPENED,
    EventKind.CLICKED,
    EventKind.BOUNCED,
    EventKind.COMPLAINED,
]
ERASED_DOMAIN = "(erased)"
OTHER_DOMAINS = "(other domains)"
TOP_DOMAINS = 10
# A domain is named only if this many deliveries went to it: a rarer one (a person's own domain)
# could single out its recipient, so it is counted among the other domains instead.
DOMAIN_MIN_DELIVERIES = 5
ALL_DM_TYPES = "All DM types"
# Complaint rates that mailbox providers treat as warnings (0.1%) and as the limit (0.3%).
COMPLAINT_WARNING = 0.1
COMPLAINT_LIMIT = 0.3
REPORT_WEEKS = 26
HISTORY_CAMPAIGNS = 50


def rate(part: int, whole: int) -> float | None:
    """`part` as a percentage of `whole`; None when there is no whole to speak of."""
    return 100.0 * part / whole if whole else None


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    count: int
    rate: float | None = None  # percent of the base the table names (sent, or all deliveries)


@dataclass(frozen=True)
class DomainRow:
    domain: str
    deliveries: int
    sent: int
    bounced: int

    @property
    def bounce_rate(self) -> float | None:
        return rate(self.bounced, self.sent)


@dataclass
class Timeline:
    """Counts per time bucket (local time of the unit): `series[name][i]` for `buckets[i]`."""

    granularity: str = "hour"
    buckets: list[datetime] = field(default_factory=list)
    series: dict[str, list[int]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [bucket_label(b, self.granularity) for b in self.buckets]

    @property
    def tick_labels(self) -> list[str]:
        return [bucket_tick(b, self.granularity) for b in self.buckets]


@dataclass
class CampaignReport:
    campaign: Campaign
    deliveries: int
    sent: int
    figures: list[Figure]  # rates of sent
    statuses: list[Figure]  # rates of all deliveries
    skipped: list[Figure]  # by reason, rates of all deliveries
    unsubscribes_by_dm_type: list[tuple[str, int]]
    domains: list[DomainRow]
    timeline: Timeline
    tracking_enabled: bool
    first_sent_at: datetime | None
    last_sent_at: datetime | None

    def figure(self, key: str) -> Figure:
        return next(f for f in [*self.figures, *self.statuses, *self.skipped] if f.key == key)


# Time buckets -------------------------------------------------------------------------------


def choose_granularity(start: datetime, end: datetime) -> str:
    """Hours for three days, days for three months, weeks for three years, then months."""
    span = end - start
    if span <= timedelta(hours=72):
        return "hour"
    if span <= timedelta(days=92):
        return "day"
    if span <= timedelta(weeks=156):
        return "week"
    return "month"


def truncate(moment: datetime, granularity: str) -> datetime:
    """What PostgreSQL's date_trunc makes of a local (naive) time."""
    moment = moment.replace(minute=0, second=0, microsecond=0)
    if granularity == "hour":
        return moment
    moment = moment.replace(hour=0)
    if granularity == "day":
        return moment
    if granularity == "week":
        return moment - timedelta(days=moment.weekday())
    return moment.replace(day=1)


def next_bucket(moment: datetime, granularity: str) -> datetime:
    """The start of the bucket after the one starting at `moment`."""
    if granularity == "hour":
        return moment + timedelta(hours=1)
    if granularity == "day":
        return moment + timedelta(days=1)
    if granularity == "week":
        return moment + timedelta(weeks=1)
    return (moment.replace(day=28) + timedelta(days=4)).replace(day=1)


def buckets_between(start: datetime, end: datetime, granularity: str) -> list[datetime]:
    """Every bucket from the one holding `start` to the one holding `end` (local, naive)."""
    found, moment, last = [], truncate(start, granularity), truncate(end, granularity)
    while moment <= last:
        found.append(moment)
        moment = next_bucket(moment, granularity)
    return found


def bucket_label(moment: datetime, granularity: str) -> str:
    """A bucket as the data tables name it, in full."""
    if granularity == "hour":
        return f"{moment:%Y-%m-%d %H:00}"
    if granularity == "month":
        return f"{moment:%Y-%m}"
    if granularity == "week":
        return f"week of {moment:%Y-%m-%d}"
    return f"{moment:%Y-%m-%d}"


def bucket_tick(moment: datetime, granularity: str) -> str:
    """A bucket as the chart's axis names it, short."""
    if granularity == "hour":
        return f"{moment:%d %H:00}"
    if granularity == "month":
        return f"{moment:%Y-%m}"
    return f"{moment:%m-%d}"


def _local(moment: datetime, unit: SenderUnit) -> datetime:
    return timezone.localtime(moment, unit.tzinfo).replace(tzinfo=None)


def _rows(sql: str, params: list[Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# Who unsubscribed through a campaign ----------------------------------------------------------


def _unsubscribers_sql(campaign_ids: list[int], unit: SenderUnit) -> tuple[str, list[Any]]:
    """(campaign_id, recipient_id, at) of every unsubscribe a campaign brought: a withdrawal
    made through its links (consent events name the campaign) or one a provider reported."""
    events = DeliveryEvent._meta.db_table
    deliveries = Delivery._meta.db_table
    consent = ConsentEvent._meta.db_table
    campaigns = Campaign._meta.db_table
    # Only our own table names are interpolated; values travel as parameters.
    sql = f"""
        SELECT e.campaign_id, d.recipient_id, e.occurred_at
        FROM {events} e JOIN {deliveries} d ON d.id = e.delivery_id
        WHERE e.campaign_id = ANY(%s) AND e.kind = %s
        UNION ALL
        SELECT c.id, ce.recipient_id, ce.created_at
        FROM {consent} ce JOIN {campaigns} c ON c.code = ce.campaign_code
        WHERE ce.unit_id = %s AND ce.action = %s AND c.id = ANY(%s) AND c.unit_id = %s
    """  # noqa: S608
    params = [campaign_ids, EventKind.UNSUBSCRIBED.value, unit.pk, Action.WITHDRAW.value]
    return sql, [*params, campaign_ids, unit.pk]


def unsubscribes_by_campaign(campaign_ids: list[int], unit: SenderUnit) -> dict[int, int]:
    """How many recipients each campaign's mail made unsubscribe (each recipient once)."""
    if not campaign_ids:
        return {}
    inner, params = _unsubscribers_sql(campaign_ids, unit)
    sql = f"SELECT u.campaign_id, count(DISTINCT u.recipient_id) FROM ({inner}) AS u GROUP BY 1"  # noqa: S608
    return dict(_rows(sql, params))


def unsubscribes_by_dm_type(campaign: Campaign) -> list[tuple[str, int]]:
    """Withdrawals made through the campaign's links, by DM type ("All DM types" for an
    unsubscribe from everything); each recipient once per DM type."""
    rows = (
        ConsentEvent.objects.for_unit(campaign.unit)
        .filter(campaign_code=campaign.code, action=Action.WITHDRAW)
        .order_by()
        .values("dm_type__name")
        .annotate(n=Count("recipient", distinct=True))
    )
    found = [(row["dm_type__name"] or ALL_DM_TYPES, row["n"]) for row in rows]
    return sorted(found, key=lambda item: (-item[1], item[0]))


# One campaign -------------------------------------------------------------------------------


def _event_counts(campaign: Campaign) -> dict[str, int]:
    once = {
        kind.value: Count("delivery", distinct=True, filter=Q(kind=kind)) for kind in EVENT_FIGURES
    }
    return DeliveryEvent.objects.filter(campaign=campaign, delivery__isnull=False).aggregate(
        **once,
        hard=Count(
            "delivery", distinct=True, filter=Q(kind=EventKind.BOUNCED, bounce_kind=BounceKind.HARD)
        ),
        soft=Count(
            "delivery", distinct=True, filter=Q(kind=EventKind.BOUNCED, bounce_kind=BounceKind.SOFT)
        ),
        first=Min("occurred_at"),
        last=Max("occurred_at"),
    )


def campaign_domains(campaign: Campaign) -> list[DomainRow]:
    """Deliveries by the domain of the recipient's address, the biggest first, with their sent
    and bounced counts. Erased recipients (whose address is now a placeholder) count together;
    rare domains are folded together."""
    address = F("recipient__email")
    erased = Q(recipient__status=RecipientStatus.ERASED) | Q(recipient__email="")
    domain = Case(
        When(erased, then=Value(ERASED_DOMAIN)),
        default=Lower(
            Func(address, Value("@"), Value(2), function="split_part", output_field=CharField())
        ),
        output_field=CharField(),
    )
    # One hashed set of the campaign's bounced deliveries (index on campaign and kind), not a
    # lookup per delivery.
    bounced = DeliveryEvent.objects.filter(
        campaign=campaign, kind=EventKind.BOUNCED, delivery__isnull=False
    ).values("delivery_id")
    rows = (
        Delivery.objects.filter(campaign=campaign)
        .annotate(domain=domain)
        .order_by()
        .values("domain")
        .annotate(
            deliveries=Count("id"),
            sent=Count("id", filter=Q(status=DeliveryStatus.SENT)),
            bounced=Count("id", filter=Q(id__in=bounced)),
        )
        .order_by("-sent", "-deliveries", "domain")
    )
    named: list[DomainRow] = []
    other = [0, 0, 0]
    for row in rows:
        one = DomainRow(row["domain"], row["deliveries"], row["sent"], row["bounced"])
        big_enough = one.deliveries >= DOMAIN_MIN_DELIVERIES or one.domain == ERASED_DOMAIN
        if big_enough and len(named) < TOP_DOMAINS:
            named.append(one)
        else:
            other = [other[0] + one.deliveries, other[1] + one.sent, other[2] + one.bounced]
    if other[0]:
        named.append(DomainRow(OTHER_DOMAINS, *other))
    return named


def campaign_timeline(campaign: Campaign, start: datetime | None, end: datetime | None) -> Timeline:
    """Sends, and each delivery's first event of every charted kind (and unsubscribes), per
    hour, day, week or month — whichever suits the span from `start` to `end`."""
    if start is None or end is None:
        return Timeline()
    unit = campaign.unit
    granularity = choose_granularity(start, end)
    buckets = buckets_between(_local(start, unit), _local(end, unit), granularity)
    series = {name: [0] * len(buckets) for name in ["sent", *TIMELINE_KINDS, "unsubscribed"]}
    index = {b: i for i, b in enumerate(buckets)}
    deliveries, events = Delivery._meta.db_table, DeliveryEvent._meta.db_table
    tz = unit.timezone
    sends = f"""
        SELECT date_trunc(%s, sent_at AT TIME ZONE %s), 'sent', count(*) FROM {deliveries}
        WHERE campaign_id = %s AND status = %s AND sent_at IS NOT NULL GROUP BY 1
    """  # noqa: S608
    firsts = f"""
        SELECT date_trunc(%s, f.first_at AT TIME ZONE %s), f.kind, count(*) FROM (
            SELECT kind, min(occurred_at) AS first_at FROM {events}
            WHERE campaign_id = %s AND delivery_id IS NOT NULL AND kind = ANY(%s)
            GROUP BY delivery_id, kind
        ) AS f GROUP BY 1, 2
    """  # noqa: S608
    inner, params = _unsubscribers_sql([campaign.pk], unit)
    unsubscribed = f"""
        SELECT date_trunc(%s, f.first_at AT TIME ZONE %s), 'unsubscribed', count(*) FROM (
            SELECT u.recipient_id, min(u.occurred_at) AS first_at FROM ({inner}) AS u
            GROUP BY u.recipient_id
        ) AS f GROUP BY 1
    """  # noqa: S608
    kinds = [k.value for k in TIMELINE_KINDS]
    found = [
        *_rows(sends, [granularity, tz, campaign.pk, DeliveryStatus.SENT.value]),
        *_rows(firsts, [granularity, tz, campaign.pk, kinds]),
        *_rows(unsubscribed, [granularity, tz, *params]),
    ]
    for bucket, name, n in found:
        if bucket in index:
            series[name][index[bucket]] += n
    return Timeline(granularity=granularity, buckets=buckets, series=series)


def campaign_report(campaign: Campaign) -> CampaignReport:
    """Everything the report page and its CSV show of one campaign."""
    by_status: dict[str, int] = defaultdict(int)
    by_reason: dict[str, int] = defaultdict(int)
    status_rows = (
        Delivery.objects.filter(campaign=campaign)
        .order_by()
        .values("status", "reason")
        .annotate(n=Count("id"), first=Min("sent_at"), last=Max("sent_at"))
    )
    first_sent = last_sent = None
    for row in status_rows:
        by_status[row["status"]] += row["n"]
        if row["status"] == DeliveryStatus.SKIPPED:
            by_reason[row["reason"]] += row["n"]
        if row["first"] is not None:
            first_sent = min(filter(None, [first_sent, row["first"]]))
            last_sent = max(filter(None, [last_sent, row["last"]]))
    total = sum(by_status.values())
    sent = by_status[DeliveryStatus.SENT]
    events = _event_counts(campaign)
    unsubscribed = unsubscribes_by_campaign([campaign.pk], campaign.unit).get(campaign.pk, 0)
    figures = [
        Figure("sent", "Sent", sent, rate(sent, sent)),
        Figure("delivered", "Delivered", events["delivered"], rate(events["delivered"], sent)),
        Figure("bounced", "Bounced", events["bounced"], rate(events["bounced"], sent)),
        Figure("hard_bounced", "Hard bounces", events["hard"], rate(events["hard"], sent)),
        Figure("soft_bounced", "Soft bounces", events["soft"], rate(events["soft"], sent)),
        Figure("complained", "Complaints", events["complained"], rate(events["complained"], sent)),
        Figure("unsubscribed", "Unsubscribed", unsubscribed, rate(unsubscribed, sent)),
        Figure("opened", "Opened", events["opened"], rate(events["opened"], sent)),
        Figure("clicked", "Clicked", events["clicked"], rate(events["clicked"], sent)),
    ]
    status_labels = dict(DeliveryStatus.choices)
    statuses = [
        Figure(s, status_labels[s], by_status[s], rate(by_status[s], total))
        for s in (
            DeliveryStatus.SENT,
            DeliveryStatus.SKIPPED,
            DeliveryStatus.FAILED,
            DeliveryStatus.DEFERRED,
            DeliveryStatus.IN_DOUBT,
            DeliveryStatus.QUEUED,
            DeliveryStatus.SENDING,
        )
    ]
    reason_labels = dict(SkipReason.choices)
    skipped = [
        Figure(f"skipped_{reason or 'unknown'}", reason_labels.get(reason, "Other"), n)
        for reason, n in sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))
    ]
    skipped = [Figure(f.key, f.label, f.count, rate(f.count, total)) for f in skipped]
    moments = [m for m in (first_sent, last_sent, events["first"], events["last"]) if m]
    return CampaignReport(
        campaign=campaign,
        deliveries=total,
        sent=sent,
        figures=figures,
        statuses=statuses,
        skipped=skipped,
        unsubscribes_by_dm_type=unsubscribes_by_dm_type(campaign),
        domains=campaign_domains(campaign),
        timeline=campaign_timeline(
            campaign, min(moments) if moments else None, max(moments) if moments else None
        ),
        tracking_enabled=unit_settings(campaign.unit).tracking_enabled,
        first_sent_at=first_sent,
        last_sent_at=last_sent,
    )


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def campaign_report_rows(report: CampaignReport) -> Iterator[list[Any]]:
    """The report as spreadsheet rows: figures, unsubscribes by DM type, domains. No personal
    data: counts only, and domains only where enough deliveries went to them."""
    campaign = report.campaign
    yield ["campaign", campaign.name]
    yield ["code", str(campaign.code)]
    yield ["DM type", campaign.dm_type.name]
    yield ["status", campaign.get_status_display()]
    yield ["generated at", timezone.localtime(timezone.now(), campaign.unit.tzinfo).isoformat()]
    yield []
    yield ["figure", "count", "rate (% of sent)"]
    for f in report.figures:
        yield [f.label, f.count, _percent(f.rate)]
    yield []
    yield ["deliveries", "count", "share (% of all deliveries)"]
    yield [
        "All deliveries",
        report.deliveries,
        _percent(rate(report.deliveries, report.deliveries)),
    ]
    for f in report.statuses:
        yield [f.label, f.count, _percent(f.rate)]
    for f in report.skipped:
        yield [f"Skipped: {f.label}", f.count, _percent(f.rate)]
    yield []
    yield ["unsubscribed from", "recipients"]
    for name, n in report.unsubscribes_by_dm_type:
        yield [name, n]
    yield []
    yield ["domain", "deliveries", "sent", "bounced", "bounce rate (% of sent)"]
    for d in report.domains:
        yield [d.domain, d.deliveries, d.sent, d.bounced, _percent(d.bounce_rate)]


# A unit's reports ---------------------------------------------------------------------------


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
