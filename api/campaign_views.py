"""Campaigns of the key's unit, read-only: status, sending progress and the report's figures."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.codes import UUID_PATTERN
from api.scoping import UnitScopedViewSet
from api.strict_pages import StrictCursorPagination
from campaigns.models import Campaign, CampaignStatus
from campaigns.reports.campaign import CampaignReport, Figure, campaign_report
from campaigns.selectors import Progress, campaign_progress


class CampaignSerializer(serializers.ModelSerializer):
    # Text, not an enum: `status` names the recipient's statuses in the schema already.
    status = serializers.CharField(
        read_only=True, help_text=f"One of {', '.join(CampaignStatus.values)}."
    )
    dm_type = serializers.SlugRelatedField(slug_field="key", read_only=True)
    lists = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)

    class Meta:
        model = Campaign
        fields = [
            "code",
            "name",
            "status",
            "dm_type",
            "audience",
            "lists",
            "subject",
            "scheduled_at",
            "created_at",
            "started_at",
            "paused_at",
            "finished_at",
            "cancelled_at",
            "pause_reason",
        ]


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Deliveries of the campaign (one per recipient).")
    queued = serializers.IntegerField()
    sending = serializers.IntegerField()
    sent = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Not sent, with a reason (see the report).")
    deferred = serializers.IntegerField()
    failed = serializers.IntegerField()
    in_doubt = serializers.IntegerField(
        help_text="Handed to the mail backend by a worker that died: maybe sent, never resent."
    )
    done_percent = serializers.FloatField()
    rate = serializers.FloatField(help_text="Messages a second over the last minute.")


class CampaignDetailSerializer(CampaignSerializer):
    progress = serializers.SerializerMethodField()

    class Meta(CampaignSerializer.Meta):
        fields = [*CampaignSerializer.Meta.fields, "progress"]

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, campaign: Campaign) -> dict:
        return progress_data(campaign_progress(campaign))


def progress_data(progress: Progress) -> dict:
    """The progress counts as JSON-ready data."""
    return {
        "total": progress.total,
        "queued": progress.queued,
        "sending": progress.sending,
        "sent": progress.sent,
        "skipped": progress.skipped,
        "deferred": progress.deferred,
        "failed": progress.failed,
        "in_doubt": progress.in_doubt,
        "done_percent": progress.done_percent,
        "rate": progress.rate,
    }


class FigureSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    count = serializers.IntegerField()
    rate = serializers.FloatField(
        allow_null=True, help_text="Percent of the base the group names; null without a base."
    )


class DMTypeUnsubscribesSerializer(serializers.Serializer):
    dm_type = serializers.CharField(help_text="The DM type's name, or All DM types.")
    count = serializers.IntegerField()


class DomainSerializer(serializers.Serializer):
    domain = serializers.CharField()
    deliveries = serializers.IntegerField()
    sent = serializers.IntegerField()
    bounced = serializers.IntegerField()


class ReportSerializer(serializers.Serializer):
    campaign = serializers.UUIDField()
    status = serializers.CharField()
    deliveries = serializers.IntegerField()
    sent = serializers.IntegerField()
    figures = FigureSerializer(many=True, help_text="Rates are percent of the mails sent.")
    statuses = FigureSerializer(many=True, help_text="Rates are percent of all deliveries.")
    skipped = FigureSerializer(many=True, help_text="By reason; percent of all deliveries.")
    unsubscribes_by_dm_type = DMTypeUnsubscribesSerializer(many=True)
    domains = DomainSerializer(
        many=True, help_text="Recipient domains with the most deliveries; rare ones are pooled."
    )
    tracking_enabled = serializers.BooleanField()
    first_sent_at = serializers.DateTimeField(allow_null=True)
    last_sent_at = serializers.DateTimeField(allow_null=True)


def _figures(figures: list[Figure]) -> list[dict]:
    return [{"key": f.key, "label": f.label, "count": f.count, "rate": f.rate} for f in figures]


def report_data(report: CampaignReport) -> dict:
    """The report's figures as JSON-ready data (its timeline is the report page's)."""
    return {
        "campaign": report.campaign.code,
        "status": report.campaign.status,
        "deliveries": report.deliveries,
        "sent": report.sent,
        "figures": _figures(report.figures),
        "statuses": _figures(report.statuses),
        "skipped": _figures(report.skipped),
        "unsubscribes_by_dm_type": [
            {"dm_type": name, "count": count} for name, count in report.unsubscribes_by_dm_type
        ],
        "domains": [
            {"domain": d.domain, "deliveries": d.deliveries, "sent": d.sent, "bounced": d.bounced}
            for d in report.domains
        ],
        "tracking_enabled": report.tracking_enabled,
        "first_sent_at": report.first_sent_at,
        "last_sent_at": report.last_sent_at,
    }


class CampaignViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, UnitScopedViewSet):
    """The unit's campaigns (viewer): the list, one with its progress, and its report."""

    model = Campaign
    lookup_value_regex = UUID_PATTERN
    pagination_class = StrictCursorPagination

    def scope(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("dm_type").prefetch_related("lists")

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return CampaignDetailSerializer if self.action == "retrieve" else CampaignSerializer

    @extend_schema(responses=ReportSerializer, operation_id="campaigns_report")
    @action(detail=True, methods=["get"])
    def report(self, request: Request, code: str) -> Response:
        """The report's figures: sent, delivered, bounces, complaints, unsubscribes, opens and
        clicks; deliveries by status and skip reason; unsubscribes by DM type; domains."""
        campaign = self.get_object()
        return Response(ReportSerializer(report_data(campaign_report(campaign))).data)
