"""Environment variables read by the settings, recorded so docs and deploy files can be checked."""

from __future__ import annotations

import os
from dataclasses import dataclass

# A tiny reader rather than django-environ: we need the list of every variable the settings read,
# with its meaning, so that a test can hold the README table and docker-compose.yml to it.


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str | None
    help: str
    production: bool  # must be set explicitly in a production deployment


REGISTRY: dict[str, EnvVar] = {}


def _register(name: str, default: object, help: str, production: bool) -> str | None:
    REGISTRY[name] = EnvVar(name, None if default is None else str(default), help, production)
    return os.environ.get(name)


def env_str(name: str, default: str | None, help: str, *, production: bool = False) -> str | None:
    value = _register(name, default, help, production)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool, help: str, *, production: bool = False) -> bool:
    value = _register(name, "1" if default else "0", help, production)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), not {value!r}")


def env_int(name: str, default: int, help: str, *, production: bool = False) -> int:
    value = _register(name, default, help, production)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {value!r}") from None


def env_list(name: str, default: list[str], help: str, *, production: bool = False) -> list[str]:
    value = _register(name, ",".join(default), help, production)
    if value is None or value.strip() == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]
