"""Imports into the key's unit's lists: start one from an uploaded file, poll its job.

An API key adds to a list or withdraws (opt-out); it never grants consent by import, which
needs the administrator role in the browser (I2): consent arrives by API one person at a time,
with its own evidence, through the consent endpoint.
"""

from __future__ import annotations

import csv
import io
import itertools

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from api.codes import UUID_PATTERN
from api.models import ApiRole
from api.scoping import UnitScopedViewSet
from api.strict_pages import StrictCursorPagination
from consent.models import DMType
from recipients import import_services
from recipients.importing.choices import DELIMITERS, ENCODINGS, TARGETS
from recipients.models import Category, ImportJob, ImportMode, ImportStatus, RecipientList

# The rejected rows shown with a job; all of them are in the unit's import page's CSV.
REJECTED_SHOWN = 100
API_MODES = (ImportMode.ADD, ImportMode.OPT_OUT)
COUNTS = (
    "created",
    "updated",
    "added",
    "removed",
    "granted",
    "withdrawn",
    "duplicate",
    "invalid",
    "suppressed",
    "unknown",
)


class ImportStartSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The CSV or XLSX file.")
    mode = serializers.ChoiceField(
        choices=ImportMode.choices,
        default=ImportMode.ADD,
        help_text="add: put the people on the list, granting nothing; opt_out: withdraw the "
        "DM types named for the addresses in the file.",
    )
    dm_types = serializers.ListField(
        child=serializers.SlugField(max_length=60),
        required=False,
        default=list,
        help_text="Keys of the DM types to withdraw (opt_out only).",
    )
    evidence = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    # Text, not an enum: the schema already names the category choices (the recipient's).
    default_category = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text=f"The category of rows without one, one of {', '.join(Category.values)} "
        "(an internal list needs one).",
    )
    mapping = serializers.ListField(
        child=serializers.ChoiceField(choices=list(TARGETS), allow_blank=True),
        required=False,
        default=list,
        help_text="What each column becomes, in order ('' ignores it); by default as the "
        "column names suggest.",
    )
    encoding = serializers.ChoiceField(
        choices=list(ENCODINGS), required=False, allow_blank=True, default=""
    )
    delimiter = serializers.ChoiceField(
        choices=list(DELIMITERS), required=False, allow_blank=True, default=""
    )

    def validate_mode(self, mode: str) -> str:
        if mode not in API_MODES:
            raise serializers.ValidationError(
                "An API key imports with the modes add or opt_out. Granting consent by import "
                "and directory syncs need the administrator role in the browser; record each "
                "person's consent through the consent endpoint instead."
            )
        return mode

    def validate_default_category(self, category: str) -> str:
        if category and category not in Category.values:
            raise serializers.ValidationError(
                f"Unknown category {category!r}: use one of {', '.join(Category.values)}."
            )
        return category

    # Last: from here on `list` in the class body is this field, not the builtin.
    list = serializers.UUIDField(help_text="The code of the unit's list to import into.")


class RejectedRowSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="The row's line in the file.")
    reason = serializers.CharField()


class ImportJobSerializer(serializers.ModelSerializer):
    list = serializers.UUIDField(source="recipient_list.code", read_only=True)
    # Plain text in the schema: an enum would collide with the campaign's `status` enum.
    status = serializers.CharField(
        read_only=True, help_text=f"One of {', '.join(ImportStatus.values)} (failed: see error)."
    )
    counts = serializers.SerializerMethodField()
    rejected = serializers.IntegerField(source="rejected_count", read_only=True)
    rejected_rows = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = [
            "code",
            "list",
            "status",
            "mode",
            "file_name",
            "created_at",
            "started_at",
            "finished_at",
            "rows_total",
            "rows_read",
            "counts",
            "rejected",
            "rejected_rows",
            "error",
        ]

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField()))
    def get_counts(self, job: ImportJob) -> dict[str, int]:
        return {name: getattr(job, f"{name}_count") for name in COUNTS}

    @extend_schema_field(RejectedRowSerializer(many=True))
    def get_rejected_rows(self, job: ImportJob) -> list[dict]:
        """The first rejected rows: line and reason (the other columns are the file's)."""
        if not job.rejected_file or not default_storage.exists(job.rejected_file.name):
            return []
        with default_storage.open(job.rejected_file.name, "rb") as stored:
            rows = csv.reader(io.TextIOWrapper(stored, encoding="utf-8", newline=""))
            next(rows, None)  # the header
            return [
                {"line": int(row[0]), "reason": row[1]}
                for row in itertools.islice(rows, REJECTED_SHOWN)
            ]


def _start(*, recipient_list: RecipientList, data: dict, dm_types: list[DMType]) -> ImportJob:
    """Keep the file and queue its import, or neither: refused choices leave no file behind."""
    stored = ""
    try:
        with transaction.atomic():
            job, _sniffed = import_services.import_upload(
                recipient_list=recipient_list,
                upload=data["file"],
                encoding=data["encoding"],
                delimiter=data["delimiter"],
                by=None,
            )
            stored = job.file.name
            return import_services.import_start(
                job=job,
                mapping=data["mapping"] or job.mapping,
                mode=data["mode"],
                dm_types=dm_types,
                evidence=data["evidence"],
                default_category=data["default_category"],
                by=None,
            )
    except ValidationError:
        if stored:
            default_storage.delete(stored)
        raise


class ImportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, UnitScopedViewSet):
    """The unit's imports (editor, as in the browser): start one, poll its job."""

    model = ImportJob
    lookup_value_regex = UUID_PATTERN
    pagination_class = StrictCursorPagination
    serializer_class = ImportJobSerializer
    read_roles = (ApiRole.EDITOR,)
    parser_classes = [MultiPartParser, FormParser]

    def scope(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("recipient_list")

    @extend_schema(
        request={"multipart/form-data": ImportStartSerializer},
        responses={202: ImportJobSerializer},
    )
    def create(self, request: Request) -> Response:
        """Upload a file and queue its import; poll the job (Location) until it is done."""
        given = ImportStartSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        recipient_list = RecipientList.objects.for_unit(self.unit).filter(code=data["list"]).first()
        if recipient_list is None:
            raise ValidationError({"list": ["The unit has no list with this code."]})
        dm_types = list(DMType.objects.for_unit(self.unit).filter(key__in=data["dm_types"]))
        unknown = sorted(set(data["dm_types"]) - {d.key for d in dm_types})
        if unknown:
            raise ValidationError({"dm_types": [f"Unknown DM type keys: {', '.join(unknown)}."]})
        job = _start(recipient_list=recipient_list, data=data, dm_types=dm_types)
        answer = Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
        answer["Location"] = request.build_absolute_uri(f"{job.code}/")
        return answer
