"""POST /api/v1/consent/: a grant or withdrawal collected by another system."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from api import idempotency, services
from api.models import ApiRole
from api.scoping import UnitScopedAPIView
from api.serializers import ConsentAnswerSerializer, ConsentSerializer
from consent.models import Action
from recipients.selectors import recipient_is_suppressed


class ConsentView(UnitScopedAPIView):
    """Record a grant or a withdrawal for an address and a DM type, with its evidence."""

    write_roles = (ApiRole.CONSENT_WRITER, ApiRole.EDITOR)
    extra_problems = {
        "422": "The Idempotency-Key was used before with a different body.",
    }

    @extend_schema(
        operation_id="consent_record",
        request=ConsentSerializer,
        responses={201: ConsentAnswerSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Send the same key when retrying: the first answer comes back and "
                "nothing is recorded twice (kept 24 hours).",
            )
        ],
    )
    def post(self, request: Request) -> Response:
        key = idempotency.check_key(request.headers.get("Idempotency-Key"))
        serializer = ConsentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if key is None:
            status, answer = self._record(data)
            return Response(answer, status=status)
        status, answer, replayed = idempotency.once(
            api_key=self.key, key=key, body=request.data, run=lambda: self._record(data)
        )
        response = Response(answer, status=status)
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    def _record(self, data: dict) -> tuple[int, dict]:
        evidence = services.Evidence(**data["evidence"])
        recorded = services.consent_record(
            key=self.key,
            email=data["email"],
            action=Action(data["action"]),
            dm_type_key=data.get("dm_type"),
            category=data.get("category"),
            evidence=evidence,
        )
        event = recorded.events[0]
        answer = {
            "recipient": recorded.recipient.code,
            "recipient_created": recorded.created,
            "action": event.action,
            "dm_type": event.dm_type.key if event.dm_type else None,
            "notice_version": event.notice.version if event.notice else None,
            "recorded_at": event.created_at,
            "suppressed": recipient_is_suppressed(recorded.recipient),
        }
        return 201, ConsentAnswerSerializer(answer).data
