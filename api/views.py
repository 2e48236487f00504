"""API views of the framework itself: the calling key, and 404 for unknown API URLs."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.models import ApiKey, ApiRole
from api.scoping import UnitScopedAPIView


class KeySerializer(serializers.ModelSerializer):
    unit = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = ApiKey
        fields = ["prefix", "name", "role", "unit", "created_at", "expires_at"]


class CurrentKeyView(UnitScopedAPIView):
    """The key of the request: its unit and role (a cheap way to check a key)."""

    read_roles = tuple(ApiRole)

    @extend_schema(responses=KeySerializer, operation_id="key_current")
    def get(self, request: Request) -> Response:
        return Response(KeySerializer(self.key).data)


class NotFoundView(APIView):
    """Any other URL under /api/: a problem, not the HTML 404 page."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []
    schema = None

    def handle(self, request: Request, *args, **kwargs) -> Response:
        hint = "" if request.path.endswith("/") else " (API URLs end with a slash)"
        raise NotFound(f"There is no such API URL{hint}; see /api/docs/.")

    get = post = put = patch = delete = head = options = handle
