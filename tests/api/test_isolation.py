"""I8 over the API: every route under /api/v1/ (including later ones, found by walking the URL
resolver) answers another unit's key with 404 for this unit's objects, and revoked, expired or
missing keys with 401."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView

from consent.models import DMType
from recipients.models import Recipient, RecipientList
from tests.url_objects import api_urls


def call(client, method: str, url: str):
    if method in ("get", "delete"):
        return getattr(client, method)(url)
    return getattr(client, method)(url, {}, format="json")


def unit_codes(world) -> set[str]:
    """Codes and addresses of world.unit's objects that no other key may see."""
    codes = set()
    for model in (Recipient, RecipientList, DMType):
        codes |= {
            str(code) for code in model.objects.for_unit(world.unit).values_list("code", flat=True)
        }
    codes |= set(Recipient.objects.for_unit(world.unit).values_list("email", flat=True))
    return codes


def test_the_walk_finds_the_api_routes(world):
    routes = {r.route for r in api_urls(world)}
    assert "api/v1/consent/" in routes
    assert "api/v1/recipients/(?P<code>[^/.]+)/erase/$" in routes
    assert len(routes) >= 6


@pytest.mark.parametrize("which", ["revoked", "expired", None])
def test_keys_that_do_not_work_get_401_everywhere(world, api_keys, api, which):
    client = api(getattr(api_keys, which) if which else None)
    for route in api_urls(world):
        for method in route.methods:
            response = call(client, method, route.url)
            assert response.status_code == 401, f"{method.upper()} {route.url}"


def test_another_units_key_gets_404_for_every_object(world, api_keys, api):
    """I8: every object URL of unit A answers 404 to unit B's key, whatever the method; the
    unit's collections answer B with B's own objects only."""
    client = api(api_keys.other_unit)
    routes = api_urls(world)
    secrets_of_a = unit_codes(world)
    assert secrets_of_a
    for route in routes:
        for method in route.methods:
            response = call(client, method, route.url)
            where = f"{method.upper()} {route.url}"
            if route.names_object:
                assert response.status_code == 404, where
            else:
                assert response.status_code < 500, where
                leaked = [s for s in secrets_of_a if s in response.content.decode()]
                assert not leaked, f"{where} shows {leaked}"


def test_the_units_own_key_reaches_the_same_objects(world, api_keys, api):
    """I8: the other key's 404 comes from scoping: this unit's editor key reads each object."""
    client = api(api_keys.editor)
    readable = [r for r in api_urls(world) if r.names_object and "get" in r.methods]
    assert readable
    for route in readable:
        response = client.get(route.url)
        assert response.status_code == 200, f"GET {route.url}"


class _Unscoped(APIView):  # pragma: no cover - never called, only checked
    def get(self, request):
        return Response({})


urlpatterns = [
    path("api/v1/leak/", _Unscoped.as_view()),
    path("api/", include("api.urls")),
]


@override_settings(ROOT_URLCONF=__name__)
def test_the_system_check_refuses_an_unscoped_api_view():
    """I8: an API view that does not take its unit from the key fails `check`."""
    with pytest.raises(SystemCheckError, match=r"api\.E001"):
        call_command("check")
