"""Suppressions of the key's unit: list, look up an address, add one. No hash is ever shown: a
suppression kept as a hash alone (an erased person's) says so, without the hash (I9)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.codes import UUID_PATTERN
from api.models import ApiRole
from api.scoping import UnitScopedViewSet
from api.strict_pages import StrictCursorPagination
from consent.models import Suppression, SuppressionReason
from consent.selectors import address_suppressions
from consent.services import UNIT_SUPPRESSION_REASONS, suppression_add
from recipients.addresses import InvalidAddress, normalise_address


class SuppressionSerializer(serializers.ModelSerializer):
    """A suppression as the API shows it: never its hash."""

    address = serializers.SerializerMethodField(
        help_text="The address, or null when it is kept as a hash alone."
    )
    kept_as_hash = serializers.SerializerMethodField(
        help_text="True when only a keyed hash of the address is kept (after erasure)."
    )
    scope = serializers.SerializerMethodField(help_text="unit: this unit's; global: every unit's.")
    note = serializers.SerializerMethodField(help_text="The unit's own note; null if global.")

    class Meta:
        model = Suppression
        fields = ["code", "address", "kept_as_hash", "scope", "reason", "note", "created_at"]

    def get_address(self, suppression: Suppression) -> str | None:
        return suppression.email or None

    def get_kept_as_hash(self, suppression: Suppression) -> bool:
        return not suppression.email

    def get_scope(self, suppression: Suppression) -> str:
        return "unit" if suppression.unit_id else "global"

    def get_note(self, suppression: Suppression) -> str | None:
        # A global suppression's note was written for operations or another unit.
        return suppression.note if suppression.unit_id else None


class SuppressionAddSerializer(serializers.Serializer):
    address = serializers.CharField(max_length=320)
    reason = serializers.ChoiceField(
        choices=[(r.value, r.label) for r in UNIT_SUPPRESSION_REASONS],
        default=SuppressionReason.MANUAL,
    )
    note = serializers.CharField(max_length=1000, allow_blank=True, default="")


class LookupRequestSerializer(serializers.Serializer):
    address = serializers.CharField(max_length=320)


class LookupSerializer(serializers.Serializer):
    address = serializers.CharField(help_text="The address looked up, in its normal form.")
    suppressed = serializers.BooleanField(help_text="True if mail to it is stopped for the unit.")
    suppressions = SuppressionSerializer(many=True)


class SuppressionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, UnitScopedViewSet):
    """The unit's own suppressions (viewer), an address's suppressions including the global
    ones (viewer), and a suppression added (editor)."""

    model = Suppression
    action_roles = {"lookup": (ApiRole.VIEWER,)}
    lookup_value_regex = UUID_PATTERN
    pagination_class = StrictCursorPagination
    serializer_class = SuppressionSerializer

    @extend_schema(
        request=SuppressionAddSerializer,
        responses={200: SuppressionSerializer, 201: SuppressionSerializer},
    )
    def create(self, request: Request) -> Response:
        """Suppress an address for the unit: 201 if new, 200 with the one it already had."""
        given = SuppressionAddSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        suppression, created = suppression_add(
            unit=self.unit, email=data["address"], reason=data["reason"], note=data["note"], by=None
        )
        return Response(
            SuppressionSerializer(suppression).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        request=LookupRequestSerializer,
        responses=LookupSerializer,
        operation_id="suppressions_lookup",
    )
    @action(detail=False, methods=["post"], pagination_class=None)
    def lookup(self, request: Request) -> Response:
        """Whether an address is suppressed for the unit, and by which suppressions (the
        unit's and the global ones), matched in any case of its letters. A POST, so that the
        address stays out of URLs and so out of access logs."""
        given = LookupRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        address = given.validated_data["address"]
        try:
            normalised = normalise_address(address)
            found = address_suppressions(unit=self.unit, email=normalised)
        except InvalidAddress as error:
            raise ValidationError({"address": [str(error)]}) from None
        return Response(
            {
                "address": normalised,
                "suppressed": bool(found),
                "suppressions": SuppressionSerializer(found, many=True).data,
            }
        )
