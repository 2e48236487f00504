"""A Redis database of its own for each pytest-xdist worker (loaded with `-p`, before Django's
settings are read): tests that flush the broker or run a Celery worker never meet another
worker's tasks. Worker gwN uses database (base + N) mod 16, base being REDIS_URL's."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import pytest

DATABASES = 16  # Redis's default number of databases


def worker_redis_url(url: str, worker: str) -> str:
    """`url` with the database of xdist worker `worker` ("gw3")."""
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    database = (base + int(worker.removeprefix("gw"))) % DATABASES
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = worker_redis_url(os.environ["REDIS_URL"], worker)
