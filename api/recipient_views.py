"""Recipients through the API: upsert, look-up by address, consent per DM type, and the
person's rights (export, erasure), all in the key's unit."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from api.models import ApiRole
from api.scoping import UnitScopedViewSet
from api.serializers import (
    DMTypeStateSerializer,
    ErasedSerializer,
    LookupSerializer,
    RecipientSerializer,
    RecipientWithConsentSerializer,
    dm_type_states,
)
from api.services import key_label
from consent.selectors import recipient_dm_type_states
from mlm.services import acting_as
from recipients import rights, services
from recipients.addresses import address_hash
from recipients.models import Recipient


class RecipientViewSet(mixins.RetrieveModelMixin, UnitScopedViewSet):
    """The unit's recipients, by code; look-up by address is a POST (the address stays out of
    URLs and so out of access logs)."""

    model = Recipient
    serializer_class = RecipientWithConsentSerializer
    action_roles = {
        "lookup": (ApiRole.VIEWER,),
        "export": (ApiRole.EDITOR,),
        "erase": (ApiRole.EDITOR,),
    }

    def _answer(self, recipient: Recipient, status: int = 200) -> Response:
        states = recipient_dm_type_states(recipient)
        data = RecipientWithConsentSerializer(recipient, context={"states": states}).data
        return Response(data, status=status)

    @extend_schema(responses=RecipientWithConsentSerializer)
    def retrieve(self, request: Request, code: str) -> Response:
        return self._answer(self.get_object())

    @extend_schema(
        request=RecipientSerializer,
        responses={200: RecipientWithConsentSerializer, 201: RecipientWithConsentSerializer},
        description="Create the recipient of this address, or update its profile (201: made, "
        "200: updated). Grants nothing: consent goes through /consent/.",
    )
    def create(self, request: Request) -> Response:
        serializer = RecipientSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with acting_as(key_label(self.key)):
            recipient, created = services.recipient_upsert(
                unit=self.unit, by=None, **serializer.validated_data
            )
        return self._answer(recipient, 201 if created else 200)

    @extend_schema(request=LookupSerializer, responses=RecipientWithConsentSerializer)
    @action(detail=False, methods=["post"])
    def lookup(self, request: Request) -> Response:
        """The recipient of an address, with its consent per DM type (404: none in this unit)."""
        serializer = LookupSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        recipient = (
            self.get_queryset()
            .filter(email_hash=address_hash(serializer.validated_data["email"]))
            .first()
        )
        if recipient is None:
            raise NotFound("This unit has no recipient with this address.")
        return self._answer(recipient)

    @extend_schema(responses=DMTypeStateSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def consent(self, request: Request, code: str) -> Response:
        """The recipient's current consent per DM type of the unit."""
        return Response(dm_type_states(recipient_dm_type_states(self.get_object())))

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["post"])
    def export(self, request: Request, code: str) -> Response:
        """Everything held about the person (I9), as the recipient page's export gives it."""
        with acting_as(key_label(self.key)):
            data = rights.recipient_export(recipient=self.get_object(), by=None)
        return Response(data)

    @extend_schema(request=None, responses=ErasedSerializer)
    @action(detail=True, methods=["post"])
    def erase(self, request: Request, code: str) -> Response:
        """Erase the person's data for good (I9); the address stays only as a keyed hash."""
        recipient = self.get_object()
        with acting_as(key_label(self.key)):
            rights.recipient_erase(recipient=recipient, by=None)
        return Response({"code": recipient.code, "status": recipient.status})
