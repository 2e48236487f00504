"""Settings from the environment: refusals with clear messages, and a clean `check --deploy`."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from mlm.embedded import Paths

ROOT = Path(__file__).resolve().parents[2]


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    # The browser tests allow async-unsafe ORM calls in their own process only.
    dropped = {"DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        MLM_ADDRESS_HASH_KEY=secrets.token_urlsafe(32),
        MLM_DKIM_ENCRYPTION_KEY=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        SITE_URL="https://mlm.example.edu",
        ALLOWED_HOSTS="mlm.example.edu",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/mlm",
        REDIS_URL="redis://127.0.0.1:6379/15",
        MLM_VAR_DIR=str(tmp_path / "var"),
        DJANGO_SETTINGS_MODULE="mlm.settings",
    )
    env.update(overrides)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_without_debug_it_refuses_to_start_without_a_secret_key(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    result = run(["manage.py", "check"], env)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "refuses to start" in result.stderr


def test_without_debug_it_refuses_to_start_without_an_address_hash_key(tmp_path):
    env = production_env(tmp_path)
    del env["MLM_ADDRESS_HASH_KEY"]
    result = run(["manage.py", "check"], env)
    assert result.returncode != 0
    assert "MLM_ADDRESS_HASH_KEY is not set" in result.stderr


def test_with_debug_it_makes_and_keeps_a_local_development_key(tmp_path):
    env = production_env(tmp_path, DEBUG="1")
    del env["SECRET_KEY"]
    code = (
        "import django; from django.conf import settings; django.setup(); "
        "print(settings.SECRET_KEY)"
    )
    first = run(["-c", code], env)
    second = run(["-c", code], env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert len(first.stdout.strip()) >= 50
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o077 == 0


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(tmp_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_warns_about_a_plain_http_site_url(tmp_path):
    env = production_env(tmp_path, SITE_URL="http://mlm.example.edu")
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode != 0
    assert "mlm.W001" in result.stderr + result.stdout


def test_it_refuses_a_task_time_limit_above_the_visibility_timeout(tmp_path):
    env = production_env(tmp_path, CELERY_TASK_TIME_LIMIT="7200", CELERY_VISIBILITY_TIMEOUT="3600")
    result = run(["manage.py", "check"], env)
    assert result.returncode != 0
    assert "must be below CELERY_VISIBILITY_TIMEOUT" in result.stderr


@pytest.mark.parametrize("value", ["maybe", "2x"])
def test_it_names_a_malformed_variable(tmp_path, value):
    result = run(["manage.py", "check"], production_env(tmp_path, DEBUG=value))
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


PROBE = """
import json, django
django.setup()
from django.test import Client
r = Client(HTTP_HOST="mlm.example.edu").get("/accounts/login/", secure=True)
print(json.dumps({"status": r.status_code, "headers": dict(r.headers)}))
"""


@pytest.fixture
def scratch_database_url():
    """A database of its own on the test server, dropped afterwards."""
    import psycopg
    from django.conf import settings

    server = {k: settings.DATABASES["default"][k] for k in ("HOST", "PORT", "USER", "PASSWORD")}
    name = f"mlm_scratch_{secrets.token_hex(4)}"
    params = dict(host=server["HOST"], port=server["PORT"] or None, user=server["USER"])
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://{server['USER']}@{server['HOST']}:{server['PORT'] or 5432}/{name}"
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.system  # migrates a database of its own in another process
def test_production_responses_carry_the_security_headers(tmp_path, scratch_database_url):
    env = production_env(tmp_path, DATABASE_URL=scratch_database_url)
    assert run(["manage.py", "migrate", "--noinput"], env).returncode == 0
    result = run(["-c", PROBE], env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    headers = answer["headers"]
    assert answer["status"] == 200
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    csp = headers["Content-Security-Policy"]
    for directive in (
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp


SHOW = (
    "import django, json; from django.conf import settings; django.setup(); "
    "print(json.dumps({'db': settings.DATABASES['default'], 'redis': settings.REDIS_URL, "
    "'broker': settings.CELERY_BROKER_URL, 'site': settings.SITE_URL, "
    "'hosts': settings.ALLOWED_HOSTS}))"
)


def test_without_urls_it_uses_the_embedded_postgresql_and_redis(tmp_path):
    env = production_env(tmp_path, DEBUG="1", DATABASE_URL="", REDIS_URL="")
    result = run(["-c", SHOW], env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    sockets = str(Paths(tmp_path / "var").sockets)  # var/run, unless the path is too long
    assert shown["db"]["ENGINE"] == "django.db.backends.postgresql"
    assert shown["db"]["HOST"] == sockets
    assert shown["redis"] == f"unix://{sockets}/redis.sock?db=0"
    assert shown["broker"] == f"redis+socket://{sockets}/redis.sock?virtual_host=0"


def test_a_var_folder_too_deep_for_a_socket_gets_sockets_in_the_temporary_folder(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 40) / "var"
    env = production_env(tmp_path, DEBUG="1", DATABASE_URL="", MLM_VAR_DIR=str(deep))
    shown = json.loads(run(["-c", SHOW], env).stdout)
    assert len(shown["db"]["HOST"]) < 80
    assert not shown["db"]["HOST"].startswith(str(deep))


def test_it_refuses_a_database_that_is_not_postgresql(tmp_path):
    env = production_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    result = run(["manage.py", "check"], env)
    assert result.returncode != 0
    assert "must name a PostgreSQL database" in result.stderr


def test_without_site_url_links_follow_the_port_make_run_serves(tmp_path):
    env = production_env(tmp_path, DEBUG="1", PORT="8123", HOST="0.0.0.0")  # noqa: S104 -- what make run HOST=0.0.0.0 sets
    del env["SITE_URL"], env["ALLOWED_HOSTS"]
    shown = json.loads(run(["-c", SHOW], env).stdout)
    assert shown["site"] == "http://127.0.0.1:8123"
    assert "127.0.0.1" in shown["hosts"]
