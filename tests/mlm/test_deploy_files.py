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


def test_app_services_wait_for_their_databases_and_the_migrations():
    services = compose()["services"]
    assert services["migrate"]["command"][-2:] == ["migrate", "--noinput"]
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert {"postgres", "redis", "migrate"} <= set(depends)
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert "migrate" not in " ".join(services[name]["command"])


def test_every_image_is_pinned():
    """Images pulled from a registry name their version (ours is built from this tree)."""
    for name, service in compose()["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), name
    mailpit = compose()["services"]["mailpit"]["image"]
    assert re.fullmatch(r"axllent/mailpit:v\d+\.\d+\.\d+", mailpit)


def _build_context() -> set[str]:
    """The files `docker build .` sends, by the rules of .dockerignore (patterns relative to
    the context root; `**` any depth), applied to a tree that holds local state."""
    import fnmatch

    patterns = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(
            fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.replace("**/", ""))
            for pattern in patterns
            for prefix in prefixes
        )

    tree = [
        "manage.py", "mlm/settings/core.py", "var/postgres/PG_VERSION", "var/secret_key",
        "var/dkim_encryption_key", "var/media/imports/list.csv", ".venv/bin/python",
        ".git/HEAD", "mlm/settings/__pycache__/core.cpython-311.pyc",
    ]  # fmt: skip
    return {path for path in tree if not ignored(path)}


def test_the_build_context_leaves_out_local_state():
    assert _build_context() == {"manage.py", "mlm/settings/core.py"}


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


def test_the_lock_files_pin_only_packages_from_the_index():
    """A lock line naming a local path installs on the machine that compiled it and nowhere
    else; a fresh clone must install from the index alone."""
    for name in ("run.lock", "dev.lock"):
        lines = (ROOT / "requirements" / name).read_text().splitlines()
        requirements = [line for line in lines if line and not line.startswith((" ", "#"))]
        assert requirements, name
        unpinned = [line for line in requirements if not re.fullmatch(r"[\w.-]+==[\w.!+-]+", line)]
        assert not unpinned, f"{name}: {unpinned}"
