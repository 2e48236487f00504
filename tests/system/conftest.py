"""Real processes for system tests: Celery workers on Redis against the test database, and SMTP
sinks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import Worker
from tests.system.sink_process import SinkProcess
from tests.system.smtp_sink import SMTPSink

BATCH = 20  # the dispatch workers' batch size
LEASE = 20  # and their lease, in seconds


@pytest.fixture
def celery_worker(transactional_db, flushed_broker, tmp_path) -> Iterator[Worker]:
    worker = Worker(tmp_path / "worker.log")
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


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


# --- dispatch workers pointed at a sink (tests/system/test_dispatch*.py) ------------------------


@pytest.fixture
def sink() -> Iterator[SMTPSink]:
    """A sink that keeps envelopes and Message-IDs only: thousands of mails stay light."""
    found = SMTPSink(keep_raw=False).start()
    try:
        yield found
    finally:
        found.stop()


class Workers:
    """Start dispatch workers pointed at the sink; stop every one at the end."""

    def __init__(self, tmp_path: Path, sink: SMTPSink) -> None:
        self.tmp_path, self.sink, self.started = tmp_path, sink, []

    def start(self, concurrency: int = 2, **env: str) -> Worker:
        values = {
            **self.sink.email_env(),
            "EMAIL_TIMEOUT": "3",
            "MLM_DISPATCH_BATCH_SIZE": str(BATCH),
            "MLM_DISPATCH_PARALLEL": "4",
            "MLM_DISPATCH_LEASE_SECONDS": str(LEASE),
            "MLM_DISPATCH_RETRY_SECONDS": "1",
            **env,
        }
        worker = Worker(self.tmp_path / f"worker{len(self.started)}.log", concurrency, **values)
        self.started.append(worker)
        worker.wait_ready()
        return worker

    def logs(self) -> str:
        return "\n".join(w.log()[-3000:] for w in self.started)

    def succeeded(self, task: str) -> int:
        """How many runs of `task` the workers have finished, by their logs."""
        done = re.compile(rf"Task {re.escape(task)}\[[^\]]+\] succeeded")
        return sum(len(done.findall(w.log())) for w in self.started)

    def stop(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture
def workers(tmp_path, sink) -> Iterator[Workers]:
    found = Workers(tmp_path, sink)
    try:
        yield found
    finally:
        found.stop()
