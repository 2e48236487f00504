"""Fixtures of the API tests: keys of each role for the personas' unit, keys that must fail,
and a client that sends a key.

`api_keys.editor` is a key of world.unit with the editor role; `api_keys.other_unit` an editor
key of world.other_unit (charlie's Alumni office), which must see 404 for every object of
world.unit; `api_keys.revoked` and `api_keys.expired` must get 401 everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from api.models import ApiKey, ApiRole
from api.services import api_key_create, api_key_revoke
from consent.services import dm_type_create, dm_type_update
from tests.personas import World


@dataclass
class Keys:
    """Secrets (what a caller sends) of the test keys."""

    viewer: str
    editor: str
    consent_writer: str
    other_unit: str
    revoked: str
    expired: str

    def of_role(self, role: ApiRole) -> str:
        return {
            ApiRole.VIEWER: self.viewer,
            ApiRole.EDITOR: self.editor,
            ApiRole.CONSENT_WRITER: self.consent_writer,
        }[ApiRole(role)]


def make_key(world: World, role: ApiRole, *, name: str = "", unit=None) -> str:
    _, secret = api_key_create(
        unit=unit or world.unit, name=name or f"{role} key", role=role, expires_at=None, by=None
    )
    return secret


@pytest.fixture
def api_keys(world) -> Keys:
    revoked_key, revoked = api_key_create(
        unit=world.unit, name="Old CRM", role=ApiRole.EDITOR, expires_at=None, by=None
    )
    api_key_revoke(key=revoked_key, by=None)
    expired = make_key(world, ApiRole.EDITOR, name="Last year's form")
    ApiKey.objects.filter(name="Last year's form").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    return Keys(
        viewer=make_key(world, ApiRole.VIEWER),
        editor=make_key(world, ApiRole.EDITOR),
        consent_writer=make_key(world, ApiRole.CONSENT_WRITER),
        other_unit=make_key(world, ApiRole.EDITOR, unit=world.other_unit),
        revoked=revoked,
        expired=expired,
    )


@pytest.fixture
def dm_types(world):
    """Two DM types of world.unit: events (notice at version 2) and news (internal default)."""
    events = dm_type_create(
        unit=world.unit, key="events", name="Events", notice_text="Invitations v1.", by=None
    )
    dm_type_update(
        dm_type=events,
        name="Events",
        notice_text="Invitations v2.",
        internal_default=False,
        by=None,
    )
    news = dm_type_create(
        unit=world.unit,
        key="news",
        name="News",
        notice_text="News.",
        internal_default=True,
        by=None,
    )
    return events, news


@pytest.fixture
def api():
    """api(secret) -> a REST framework test client that sends that key (None: no key)."""

    def client(secret: str | None) -> APIClient:
        made = APIClient()
        if secret is not None:
            made.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return made

    return client
