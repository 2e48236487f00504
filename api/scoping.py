"""The one place where an API view resolves its unit: the key's (I8).

Every API view derives from `UnitScopedMixin`: its queryset is the model's rows of the key's
unit, through the model's `for_unit`, so an object of another unit is 404 like a missing one.
"""

from __future__ import annotations

from django.db.models import Model, QuerySet
from rest_framework import viewsets
from rest_framework.views import APIView

from api.models import ApiKey
from mlm.models import SenderUnit


class UnitScopedMixin:
    """`unit` is the key's unit; `get_queryset` is `model.objects.for_unit(unit)`."""

    model: type[Model]
    lookup_field = "code"
    lookup_url_kwarg = "code"

    @property
    def key(self) -> ApiKey:
        return self.request.auth

    @property
    def unit(self) -> SenderUnit:
        return self.request.auth.unit

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reads the schema
            return self.model.objects.none()
        return self.scope(self.model.objects.for_unit(self.unit))

    def scope(self, queryset: QuerySet) -> QuerySet:
        """Narrow or annotate the unit's rows (select_related…); the unit filter stays."""
        return queryset


class UnitScopedViewSet(UnitScopedMixin, viewsets.GenericViewSet):
    """Base of the API's viewsets: add the mixins (List, Retrieve…) and actions you need."""


class UnitScopedAPIView(UnitScopedMixin, APIView):
    """Base of the API's plain views (one action, no queryset of their own)."""
