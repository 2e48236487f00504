"""Real processes for system tests: a Celery worker on Redis against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests.system.smtp_sink import SinkProcess, SMTPSink

ROOT = Path(__file__).resolve().parents[2]


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

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture
def flushed_broker() -> None:
    """An empty Redis database for the broker, so no task of an earlier test is consumed."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture
def celery_worker(transactional_db, flushed_broker, tmp_path) -> Iterator[Worker]:
    worker = Worker(tmp_path / "worker.log")
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


def wait_for(predicate, timeout: float = 30, interval: float = 0.2, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(message or "condition not met in time")


# --- a real SMTP sink (tests/system/smtp_sink.py) ------------------------------------------------


@pytest.fixture
def smtp_sink(tmp_path) -> Iterator[SMTPSink]:
    """An SMTP server on loopback in this process, recording to memory and `tmp_path/sink`;
    switch its faults at run time (`smtp_sink.transient(451)`, `.reject(addr)`, `.hang()`…) and
    point a worker at it with `Worker(..., **smtp_sink.email_env())`."""
    sink = SMTPSink(directory=tmp_path / "sink").start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def smtp_sink_process(tmp_path) -> Iterator[SinkProcess]:
    """The same sink as a separate process (records and faults through `tmp_path/sink-process`)."""
    sink = SinkProcess(tmp_path / "sink-process").start()
    try:
        yield sink
    finally:
        sink.stop()
