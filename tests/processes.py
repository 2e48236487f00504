"""Real processes for tests: a `celery worker` on Redis against the test database, and a
deadline poll for what another process does."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]


def test_database_url() -> str:
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=test_database_url(),
        REDIS_URL=settings.REDIS_URL,
        EMAIL_BACKEND="outbox",
        DEBUG="0",
    )
    env.update(extra)
    return env


class Worker:
    """A `celery worker` subprocess; its log is kept for assertions and failure reports."""

    def __init__(
        self, log_path: Path, concurrency: int = 1, loglevel: str = "INFO", **env: str
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "mlm", "worker", f"--loglevel={loglevel}",
             f"--concurrency={concurrency}", "--without-mingle", "--without-gossip",
             "-n", f"test-{os.getpid()}-{time.monotonic_ns()}@%h"],
            cwd=ROOT, env=worker_env(**env), stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"worker did not start:\n{self.log()[-4000:]}")

    def kill_hard(self) -> None:
        """SIGKILL the worker and its pool processes at once (a machine dying)."""
        pids = [self.process.pid]
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            children = (task / "children").read_text().split()
            pids.extend(int(pid) for pid in children)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def wait_for(
    predicate, timeout: float = 30, interval: float = 0.2, message: str | Callable[[], str] = ""
) -> None:
    """Poll `predicate` until it holds; fail with `message` (or what it returns when called,
    such as a log read at that moment) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    text = message() if callable(message) else message
    raise AssertionError(text or "condition not met in time")
