"""I8 tenant isolation, walked over every URL under /units/<slug>/ — including later ones."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.urls import path, reverse

from tests.url_objects import unit_urls


def test_the_walk_finds_the_unit_pages(world):
    routes = [route for route, _ in unit_urls(world)]
    assert "units/<slug:unit_slug>/" in routes
    assert len(routes) >= 5


def test_it_answers_404_to_members_of_another_unit(world, client):
    """I8: every object URL of unit A answers 404 to a member of unit B, for GET and POST."""
    client.force_login(world.charlie)
    for route, url in unit_urls(world):
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 404, f"{method.__name__.upper()} {url} ({route})"


def test_it_serves_the_same_urls_to_the_unit_admin(world, client):
    """I8: the outsider's 404 comes from scoping: the unit's own admin reaches every page."""
    client.force_login(world.alice)
    for route, url in unit_urls(world):
        response = client.get(url)
        assert response.status_code in {200, 302, 405}, f"GET {url} ({route})"


def test_it_redirects_anonymous_visitors_to_login(world, client):
    login = reverse("login")
    for route, url in unit_urls(world):
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302, f"{method.__name__.upper()} {url} ({route})"
            assert response["Location"].startswith(login + "?next=")


def test_an_unknown_unit_is_404_like_a_foreign_one(world, client):
    client.force_login(world.alice)
    assert client.get("/units/no-such-unit/").status_code == 404


def _unguarded(request, unit_slug):  # pragma: no cover - never called, only checked
    raise AssertionError


urlpatterns = [path("units/<slug:unit_slug>/leak/", _unguarded)]


@override_settings(ROOT_URLCONF=__name__)
def test_the_system_check_refuses_an_unscoped_unit_view():
    """I8: scoping happens in one place; a view under /units/ that skips it fails `check`."""
    with pytest.raises(SystemCheckError, match=r"mlm\.E001"):
        call_command("check")


def test_the_real_urlconf_passes_the_check():
    call_command("check")
