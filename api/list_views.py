"""Lists of the key's unit, and their members added or removed in bulk by address (I3)."""

from __future__ import annotations

from collections import Counter

from django.db.models import Count, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.codes import UUID_PATTERN
from api.scoping import UnitScopedViewSet
from api.strict_pages import StrictCursorPagination
from recipients.memberships import (
    MOST_ADDRESSES,
    MembershipResult,
    Outcome,
    list_members_add,
    list_members_remove,
)
from recipients.models import RecipientList


class ListSerializer(serializers.ModelSerializer):
    member_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = RecipientList
        fields = ["code", "name", "audience", "description", "member_count", "created_at"]


class AddressesSerializer(serializers.Serializer):
    addresses = serializers.ListField(
        child=serializers.CharField(max_length=320, allow_blank=True, trim_whitespace=False),
        min_length=1,
        max_length=MOST_ADDRESSES,
        error_messages={
            "min_length": "Give at least one address.",
            "max_length": f"One request takes at most {MOST_ADDRESSES:,} addresses; split them "
            "into several requests.",
        },
        help_text=f"Mail addresses of the unit's recipients, 1 to {MOST_ADDRESSES:,}.",
    )


class MembershipResultSerializer(serializers.Serializer):
    address = serializers.CharField(help_text="As given in the request.")
    result = serializers.ChoiceField(choices=Outcome.choices)
    detail = serializers.CharField()


class MembershipAnswerSerializer(serializers.Serializer):
    counts = serializers.DictField(
        child=serializers.IntegerField(), help_text="How many addresses had each result."
    )
    results = MembershipResultSerializer(many=True, help_text="One per address, in order.")


def _answer(results: list[MembershipResult]) -> Response:
    counts = Counter(str(r.outcome) for r in results)
    return Response(
        {
            "counts": dict(sorted(counts.items())),
            "results": [
                {"address": r.address, "result": str(r.outcome), "detail": r.detail}
                for r in results
            ],
        }
    )


class ListViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, UnitScopedViewSet):
    """The unit's lists (viewer); members added or removed in bulk (editor)."""

    model = RecipientList
    lookup_value_regex = UUID_PATTERN
    pagination_class = StrictCursorPagination
    serializer_class = ListSerializer

    def scope(self, queryset: QuerySet) -> QuerySet:
        return queryset.annotate(member_count=Count("memberships"))

    def _addresses(self, request: Request) -> list[str]:
        given = AddressesSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        return given.validated_data["addresses"]

    @extend_schema(
        request=AddressesSerializer,
        responses=MembershipAnswerSerializer,
        operation_id="lists_members_add",
    )
    @action(detail=True, methods=["post"], url_path="members")
    def members_add(self, request: Request, code: str) -> Response:
        """Put recipients of the unit on the list by address; each address gets its result
        (added, already, not_recipient, invalid_address, audience_mismatch)."""
        recipient_list = self.get_object()
        addresses = self._addresses(request)
        return _answer(
            list_members_add(recipient_list=recipient_list, addresses=addresses, by=None)
        )

    @extend_schema(
        request=AddressesSerializer,
        responses=MembershipAnswerSerializer,
        operation_id="lists_members_remove",
    )
    @action(detail=True, methods=["post"], url_path="members/remove")
    def members_remove(self, request: Request, code: str) -> Response:
        """Take recipients off the list by address; consent history is untouched. Each
        address gets its result (removed, not_member, not_recipient, invalid_address)."""
        recipient_list = self.get_object()
        addresses = self._addresses(request)
        return _answer(
            list_members_remove(recipient_list=recipient_list, addresses=addresses, by=None)
        )
