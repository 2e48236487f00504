"""Report pages of a unit: one campaign's report (and its CSV), the unit's reports. HTTP and
charts only: the figures come from campaigns.reports."""

from __future__ import annotations

from uuid import UUID

from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from campaigns import reports
from campaigns.models import Campaign
from campaigns.segments import segment_shown
from mlm.charts import (
    Chart,
    ReferenceLine,
    Series,
    bar_chart,
    format_percent,
    line_chart,
)
from mlm.models import Role
from mlm.scoping import UnitRequest, unit_view
from recipients.exports import csv_lines

TIMELINE_NAMES = {
    "sent": "Sent",
    "delivered": "Delivered",
    "opened": "Opened",
    "clicked": "Clicked",
    "bounced": "Bounced",
    "complained": "Complaints",
    "unsubscribed": "Unsubscribed",
}
COMPLAINT_LINES = [
    ReferenceLine(reports.COMPLAINT_WARNING, "0.1% warning"),
    ReferenceLine(reports.COMPLAINT_LIMIT, "0.3% limit"),
]


def _campaign(request: UnitRequest, code: UUID) -> Campaign:
    return get_object_or_404(
        Campaign.objects.for_unit(request.unit).select_related("dm_type", "unit"), code=code
    )


def _timeline_chart(timeline: reports.Timeline) -> Chart:
    # Series that stayed at zero (opens when nothing tracks them) only clutter the chart.
    series = [
        Series(TIMELINE_NAMES[name], values)
        for name, values in timeline.series.items()
        if name == "sent" or any(values)
    ]
    return line_chart(
        title=f"Sends and events per {timeline.granularity}",
        description="Deliveries sent, and each delivery's first event of every kind, per "
        f"{timeline.granularity} in the unit's time zone.",
        labels=timeline.labels,
        tick_labels=timeline.tick_labels,
        series=series,
        value_label=timeline.granularity.capitalize(),
    )


@unit_view(Role.VIEWER)
@require_GET
def campaign_report(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_code)
    report = reports.campaign_report(campaign)
    context = {
        "campaign": campaign,
        "report": report,
        "timeline_chart": _timeline_chart(report.timeline),
        "domain_minimum": reports.DOMAIN_MIN_DELIVERIES,
        "segment": segment_shown(campaign),
    }
    return render(request, "campaigns/report.html", context)


@unit_view(Role.VIEWER)
@require_GET
def campaign_report_csv(request: UnitRequest, campaign_code: UUID) -> HttpResponse:
    campaign = _campaign(request, campaign_code)
    rows = reports.campaign_report_rows(reports.campaign_report(campaign))
    response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    filename = f"{slugify(campaign.name) or 'campaign'}-report.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _weekly_chart(title: str, description: str, weekly) -> Chart:
    """A line a series of a report's weekly figures (grants, withdrawals, list members)."""
    return line_chart(
        title=title,
        description=description,
        labels=weekly.labels,
        tick_labels=weekly.tick_labels,
        series=[Series(name, values) for name, values in weekly.series.items()],
        value_label="Week",
    )


def _unit_charts(report: reports.UnitReport) -> dict[str, Chart]:
    consent, growth, trend = report.consent, report.lists, report.complaints
    history = list(reversed(report.campaigns[:12]))
    return {
        "grants": _weekly_chart(
            "Grants per week by DM type",
            f"Consent grants recorded each week of the last {report.weeks} weeks.",
            consent.grants,
        ),
        "withdrawals": _weekly_chart(
            "Withdrawals per week by DM type",
            "Withdrawals recorded each week; “All DM types” is an unsubscribe from everything "
            "the unit sends.",
            consent.withdrawals,
        ),
        "lists": _weekly_chart(
            "Members per list",
            "Members of each list at the end of every week, by when today's members were added.",
            growth.members,
        ),
        "complaints_weekly": line_chart(
            title="Complaint rate per week",
            description="Complaints as a share of the mail sent each week, against the 0.1% "
            "warning and the 0.3% limit of the large mailbox providers.",
            labels=[f"week of {w:%Y-%m-%d}" for w in trend.weeks],
            tick_labels=[f"{w:%m-%d}" for w in trend.weeks],
            series=[Series("Complaint rate", trend.rates)],
            value_format=format_percent,
            value_label="Week",
            references=COMPLAINT_LINES,
        ),
        "complaints_by_campaign": bar_chart(
            title="Complaint rate per campaign",
            description="Complaints as a share of the mail sent, for the latest campaigns, "
            "against the 0.1% warning and the 0.3% limit.",
            labels=[c.name for c in history],
            tick_labels=[c.name[:12] for c in history],
            series=[Series("Complaint rate", [c.complaint_rate for c in history])],
            value_format=format_percent,
            value_label="Campaign",
            references=COMPLAINT_LINES,
        ),
    }


@unit_view(Role.VIEWER)
@require_GET
def unit_reports(request: UnitRequest) -> HttpResponse:
    report = reports.unit_report(request.unit)
    context = {"report": report, "charts": _unit_charts(report)}
    return render(request, "campaigns/unit_reports.html", context)
