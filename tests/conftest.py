"""Fixtures shared by every test folder."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.db import close_old_connections, connection
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from playwright.sync_api import Browser, sync_playwright

from recipients.models import Audience, RecipientList
from recipients.services import list_create
from tests.personas import World, make_world

TESTS = Path(__file__).resolve().parent
FOLDER_MARKERS = ("system", "e2e")  # tests/system is marked `system`, tests/e2e `e2e`


def pytest_collection_modifyitems(config, items) -> None:
    """Mark the slow folders' tests by folder; `make test-fast` leaves them out."""
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(folder)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """The personas' passwords are not what is tested; PBKDF2 would cost seconds per test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _static_files_found_per_request(settings) -> None:
    """Every test client loads the middleware anew, and WhiteNoise would list all static files
    each time; it looks them up per request instead, as under `make run` (DEBUG)."""
    settings.WHITENOISE_AUTOREFRESH = True


@pytest.fixture(autouse=True)
def fresh_rate_limits(settings) -> None:
    """Every test counts its own hits: a fresh key prefix instead of flushing a shared Redis."""
    settings.MLM_RATE_LIMIT_PREFIX = f"rl:test:{uuid.uuid4().hex}:"


@pytest.fixture(autouse=True)
def media_folder(settings, tmp_path) -> Path:
    """Uploaded files and reports go to the test's own temporary folder."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def flushed_broker() -> None:
    """An empty Redis database for the broker, so no task of an earlier test is consumed
    (each xdist worker has a database of its own: tests/redis_per_worker.py)."""
    redis.Redis.from_url(django_settings.REDIS_URL).flushdb()


@pytest.fixture
def world(db) -> World:
    return make_world()


@pytest.fixture
def visitors(world) -> RecipientList:
    """An external list of the unit."""
    return list_create(unit=world.unit, name="Visitors", audience=Audience.EXTERNAL, by=None)


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


# A connection that died between two requests ------------------------------------------------


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _terminate(pid: int) -> None:
    """End a session from another connection, as a database restart or a proxy would."""
    other = connection.copy()
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()


@pytest.fixture
def new_request_on_a_dead_connection():
    """An open connection whose session the server ended, at the start of a request (what
    Django's request_started signal does), with health checks on as in settings."""
    assert connection.settings_dict["CONN_HEALTH_CHECKS"], "settings turn health checks on"
    assert connection.settings_dict["CONN_MAX_AGE"], "connections are kept between requests"
    connection.close()  # a fresh one: an older one could pass CONN_MAX_AGE and close anyway
    pid = backend_pid()
    _terminate(pid)
    close_old_connections()
    assert connection.connection is not None, "the connection is kept for the next request"
    yield pid
    connection.close()
