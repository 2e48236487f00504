"""Reads for a campaign's report: its figures, timeline, unsubscribes by DM type and recipient
domains, and the same as spreadsheet rows.

Everything is aggregated in PostgreSQL (GROUP BY, date_trunc in the unit's time zone) over the
indexed columns: deliveries by (campaign, status), events by (campaign, kind, occurred_at). Rates
are shares of the deliveries sent. An event kind counts each delivery once (two opens of one mail
are one opened delivery); a timeline puts each delivery in the bucket of its first event of the
kind, so a series adds up to the figure beside it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Count,
    F,
    Func,
    Max,
    Min,
    Q,
    Value,
    When,
)
from django.db.models.functions import Lower
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
from campaigns.reports.buckets import (
    bucket_label,
    bucket_tick,
    buckets_between,
    choose_granularity,
    rate,
)
from campaigns.selectors import unit_settings
from consent.models import Action, ConsentEvent
from mlm.models import SenderUnit
from recipients.models import RecipientStatus

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


# Queries ------------------------------------------------------------------------------------


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
