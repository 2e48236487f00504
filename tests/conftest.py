"""Fixtures shared by every test folder."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from playwright.sync_api import Browser, sync_playwright

from tests.personas import World, make_world


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """The personas' passwords are not what is tested; PBKDF2 would cost seconds per test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(db) -> World:
    return make_world()


@pytest.fixture
def client_for(client):
    """Log a persona in: client_for(world.alice)."""

    def login(user):
        client.force_login(user)
        return client

    return login


@receiver(connection_created)
def _allow_test_flushes(sender, connection, **kwargs) -> None:
    """Transactional tests empty the database with TRUNCATE; the ledger trigger refuses it
    unless this session flag is on. The application never sets it; the I4 tests turn it off."""
    with connection.cursor() as cursor:
        cursor.execute("SET mlm.ledger_maintenance = 'on'")


# One Chromium for the session, shared by the browser tests (tests/e2e) and the system tests
# that drive one: Playwright's sync API runs a single event loop per thread.
CHROMIUM = os.environ.get("MLM_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()
