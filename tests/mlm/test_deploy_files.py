"""docker-compose.yml, README and .ci/run stay true to the settings (Docker cannot run here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from mlm.env import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_production_services():
    services = compose()["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "mailpit"} <= set(services)
    assert "gunicorn" in " ".join(services["web"]["command"])
    assert "worker" in services["worker"]["command"]
    assert "beat" in services["beat"]["command"]
    assert services["mailpit"]["image"].startswith("axllent/mailpit")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")


def test_every_app_service_sets_every_variable_production_needs():
    services = compose()["services"]
    needed = {name for name, var in REGISTRY.items() if var.production}
    assert needed >= {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "SITE_URL", "ALLOWED_HOSTS"}
    for name in ("web", "worker", "beat"):
        environment = services[name]["environment"]
        missing = needed - set(environment)
        assert not missing, f"{name} lacks {sorted(missing)}"
        assert environment["DEBUG"] in ("0", 0, False, "false")


def test_app_services_wait_for_their_databases():
    services = compose()["services"]
    for name in ("web", "worker", "beat"):
        assert {"postgres", "redis"} <= set(services[name]["depends_on"])


def test_the_readme_tables_every_environment_variable():
    readme = (ROOT / "README.md").read_text()
    for name in REGISTRY:
        assert re.search(rf"^\| `{name}` \|", readme, re.M), f"README lacks a row for {name}"


def test_the_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make run" in quick and "make test" in quick
    assert quick.index("make run") < quick.index("make test")


def test_ci_runs_make_test():
    script = (ROOT / ".ci" / "run").read_text()
    assert "make test" in script
    assert "pg_ctlcluster" in script and "redis-server" in script
