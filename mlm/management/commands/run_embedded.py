"""Run the embedded default: PostgreSQL, Redis, the web server, a Celery worker and beat, each a
supervised child that is restarted, with backoff, when it dies."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mlm import embedded

# Restart delays: doubled for each death in a row, back to the first after a minute of life.
FIRST_DELAY = 1.0
MAX_DELAY = 30.0
HEALTHY_AFTER = 60.0
# Worth a line on the console although the rest goes to the log file; at most one such line
# per child per ECHO_EVERY seconds, so a retry storm cannot bury the login line.
_NOTEWORTHY = re.compile(r"\b(ERROR|CRITICAL|FATAL|PANIC)\b|^Traceback")
ECHO_EVERY = 10.0


try:  # loaded here, not in the forked child: a child only calls an already-loaded function
    import ctypes

    _PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None  # not Linux: the stale-server check at the next start covers it


def _die_with_parent(sig: int):
    """Linux: the child gets `sig` when this supervisor dies, even by SIGKILL, so no server
    outlives it and holds the data folder or the port."""

    def set_it() -> None:
        if _PRCTL is not None:
            _PRCTL(1, sig)  # PR_SET_PDEATHSIG

    return set_it


@dataclass
class Child:
    """One supervised process, its log file, and its restart state."""

    name: str
    argv: list[str]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    user: int | None = None
    group: int | None = None
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    deaths_in_a_row: int = 0
    restart_at: float | None = None
    tail: deque = field(default_factory=lambda: deque(maxlen=12))
    last_echo: float = 0.0

    def start(self, console: TextIO, lock: threading.Lock) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=settings.BASE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops us in order
            preexec_fn=_die_with_parent(self.stop_signal),
            user=self.user,
            group=self.group,
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        threading.Thread(target=self._pump, args=(self.proc, console, lock), daemon=True).start()

    def _pump(self, proc: subprocess.Popen, console: TextIO, lock: threading.Lock) -> None:
        """Copy the child's output to its log; echo what a person must see."""
        with self.log_path.open("a", encoding="utf-8", errors="replace") as log:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                log.write(line + "\n")
                log.flush()
                self.tail.append(line)
                now = time.monotonic()
                if _NOTEWORTHY.search(line) and now - self.last_echo >= ECHO_EVERY:
                    self.last_echo = now
                    with lock:
                        console.write(f"  [{self.name}] {line[:300]}  (more in {self.log_path})\n")
                        console.flush()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def why_it_died(self) -> str:
        code = self.proc.returncode
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def stop(self, timeout: float) -> None:
        if not self.alive():
            return
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Command(BaseCommand):
    help = (
        "Start the embedded default (PostgreSQL, Redis, web server, worker, beat) and keep it "
        "running; Ctrl-C stops it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host: str, port: int, **options) -> None:
        self._check_port(host, port)
        self.lock = threading.Lock()
        self.paths = embedded.Paths(Path(settings.VAR_DIR))
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        self.stopping = False
        signal.signal(signal.SIGTERM, self._ask_to_stop)
        signal.signal(signal.SIGINT, self._ask_to_stop)
        # The children's settings: links in mails follow the address served here.
        os.environ.setdefault("HOST", host)
        os.environ.setdefault("PORT", str(port))
        self.services: list[Child] = []
        self.apps: list[Child] = []
        try:
            self._start_services()
            if self.stopping:
                return
            logins = self._prepare()
            self._start_apps(host, port)
            self._announce(host, port, logins)
            self._supervise()
        finally:
            self._stop_all()
        self.say("MLM stopped.")

    # Start-up ------------------------------------------------------------------------------

    def _check_port(self, host: str, port: int) -> None:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                raise CommandError(
                    f"Port {port} on {host} is in use. Stop what runs there, or choose another "
                    f"port: make run PORT={port + 1}"
                ) from None

    def _start_services(self) -> None:
        """The embedded PostgreSQL and Redis, unless DATABASE_URL or REDIS_URL name others."""
        if not os.environ.get("DATABASE_URL"):
            _stop_stale(str(self.paths.pgdata), signal.SIGINT)
            database = embedded.prepare_postgres(self.paths)
            child = self._child(database.name, database.argv, signal.SIGINT)
            child.user, child.group = database.user, database.group
            self.services.append(child)
            child.start(self.stdout, self.lock)
            self._wait(child, self._database_ready, "the database", timeout=60)
            embedded.ensure_database(self.paths)
        if not os.environ.get("REDIS_URL"):
            _stop_stale(str(self.paths.redis_socket), signal.SIGTERM)
            redis = embedded.prepare_redis(self.paths)
            child = self._child(redis.name, redis.argv)
            self.services.append(child)
            child.start(self.stdout, self.lock)
            self._wait(child, self._redis_ready, "Redis", timeout=30)

    def _prepare(self) -> list[str]:
        """Migrate, and create the demo data; the demo logins, to print last."""
        self.say("Preparing the database (migrations)...")
        self._manage("migrate", "--noinput")
        return [
            line.strip()
            for line in self._manage("demo_setup").splitlines()
            if "user name" in line and "password" in line
        ]

    def _start_apps(self, host: str, port: int) -> None:
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "mlm"]
        web = [python, "manage.py", "runserver", "--noreload", f"{host}:{port}"]
        worker = [*celery, "worker", "--pool=solo", "--loglevel=INFO", "--without-mingle",
                  "--without-gossip", "--hostname", "embedded@%h"]  # fmt: skip
        schedule = str(Path(settings.VAR_DIR) / "celerybeat-schedule")
        beat = [*celery, "beat", "--loglevel=INFO", "--schedule", schedule]
        self.apps = [
            self._child("web", web),
            self._child("worker", worker),
            self._child("beat", beat),
        ]
        for child in self.apps:
            child.start(self.stdout, self.lock)
        self._wait(self.apps[0], lambda: _can_connect(host, port), "the web server", timeout=60)
        self._write_pids()

    def _announce(self, host: str, port: int, logins: list[str]) -> None:
        """The one block a newcomer needs, printed last so that nothing scrolls it away."""
        lines = [
            "",
            f"MLM is running at http://{host}:{port}/  (Ctrl-C stops it)",
            *[f"  {login}" for login in logins],
            "  Mail is not sent anywhere: read it on the Outbox page.",
            f"  Logs: {self.paths.logs}/",
            "",
        ]
        with self.lock:
            self.stdout.write(self.style.SUCCESS("\n".join(lines)))

    # Supervision ---------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self.stopping:
            now = time.monotonic()
            for child in [*self.services, *self.apps]:
                if child.alive() or self.stopping:
                    continue
                if child.restart_at is None:
                    self._report_death(child, now)
                elif now >= child.restart_at:
                    child.start(self.stdout, self.lock)
                    self._write_pids()
                    self.say(f"Restarted the {child.name} (pid {child.proc.pid}).")
            time.sleep(0.2)

    def _report_death(self, child: Child, now: float) -> None:
        if now - child.started_at >= HEALTHY_AFTER:
            child.deaths_in_a_row = 0
        delay = min(MAX_DELAY, FIRST_DELAY * 2**child.deaths_in_a_row)
        child.deaths_in_a_row += 1
        child.restart_at = now + delay
        last = "\n".join(f"    {line}" for line in list(child.tail)[-6:])
        with self.lock:
            self.stderr.write(
                f"The {child.name} stopped ({child.why_it_died()}); restarting it in "
                f"{delay:g} s. Its last lines (all in {child.log_path}):\n{last}"
            )

    def _ask_to_stop(self, *_args) -> None:
        self.stopping = True

    def _stop_all(self) -> None:
        self.stopping = True
        for child in reversed(self.apps):
            child.stop(timeout=20)
        for child in reversed(self.services):
            child.stop(timeout=30)

    # Helpers -------------------------------------------------------------------------------

    def _child(self, name: str, argv: list[str], stop_signal=signal.SIGTERM) -> Child:
        return Child(name, argv, self.paths.logs / f"{name}.log", stop_signal)

    def _wait(self, child: Child, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.stopping:
                return
            if not child.alive():
                raise CommandError(
                    f"{what[0].upper()}{what[1:]} did not start ({child.why_it_died()}). "
                    f"Its last lines (all in {child.log_path}):\n" + "\n".join(child.tail)
                )
            if time.monotonic() > deadline:
                raise CommandError(
                    f"{what} did not answer within {timeout:g} s; see {child.log_path}."
                )
            time.sleep(0.1)

    def _database_ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(
                host=str(self.paths.sockets), user=embedded.DATABASE_USER, dbname="postgres",
                connect_timeout=2,
            ).close()  # fmt: skip
        except psycopg.OperationalError:
            return False
        return True

    def _redis_ready(self) -> bool:
        import redis

        try:
            return redis.Redis(unix_socket_path=str(self.paths.redis_socket)).ping()
        except redis.RedisError:
            return False

    def _manage(self, *args: str) -> str:
        """Run a management command in its own process; its output, or a clear failure."""
        log = self.paths.logs / "setup.log"
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=settings.BASE_DIR, capture_output=True, text=True,
        )  # fmt: skip
        with log.open("a", encoding="utf-8") as file:
            file.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise CommandError(
                f"`manage.py {' '.join(args)}` failed:\n{result.stderr[-3000:]}\n(see {log})"
            )
        return result.stdout

    def _write_pids(self) -> None:
        """Which process is which, for operators (and the tests that kill them)."""
        pids = {c.name: c.proc.pid for c in [*self.services, *self.apps] if c.proc}
        (self.paths.var_dir / "embedded.json").write_text(json.dumps(pids))

    def say(self, message: str) -> None:
        with self.lock:
            self.stdout.write(message)


def _can_connect(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def _stop_stale(marker: str, sig: int) -> None:
    """Stop a server left running by an earlier run that could not stop it (its data folder
    or socket is named on its command line)."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.pid != os.getpid() and any(marker in part for part in cmdline):
            try:
                proc.send_signal(sig)
                proc.wait(timeout=20)
            except psutil.TimeoutExpired:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
