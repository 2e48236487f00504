"""`make run` on a clean copy, as a newcomer runs it: the helpers the system tests share."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def fresh_clone() -> Iterator[Path]:
    """A clean copy of the project in a folder of its own, removed afterwards.

    Not under pytest's tmp_path: pytest prunes older numbered temporary folders when another
    session starts, and this copy holds a running database's programs for minutes.
    """
    folder = Path(tempfile.mkdtemp(prefix="mlm-clone-"))
    try:
        workdir = folder / "mlm"
        workdir.mkdir()
        clean_copy(workdir)
        yield workdir
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def clean_copy(target: Path) -> None:
    """The files a fresh clone would have (tracked and new, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


class Output:
    """Collects a process's output lines with the time each arrived."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.lines: list[tuple[float, str]] = []
        os.set_blocking(process.stdout.fileno(), False)
        self._buffer = b""

    def pump(self) -> None:
        chunk = self.process.stdout.read() or b""
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        now = time.monotonic()
        self.lines += [(now, line.decode(errors="replace")) for line in complete]

    def wait_for(self, pattern: str, timeout: float) -> tuple[float, re.Match]:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            self.pump()
            for when, line in self.lines[seen:]:
                match = re.search(pattern, line)
                if match:
                    return when, match
            seen = len(self.lines)
            if self.process.poll() is not None:
                self.pump()
                break
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} not printed; output:\n{self.text()[-5000:]}")

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def make_run_env() -> dict[str, str]:
    """The environment of a newcomer: nothing of the suite's services or settings."""
    dropped = {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "MLM_ADDRESS_HASH_KEY", "DEBUG",
               "VIRTUAL_ENV", "SITE_URL", "ALLOWED_HOSTS", "CELERY_BROKER_URL", "EMAIL_BACKEND",
               "MLM_VAR_DIR", "DJANGO_SETTINGS_MODULE", "HOST", "PORT"}  # fmt: skip
    return {k: v for k, v in os.environ.items() if k not in dropped}


@contextlib.contextmanager
def make_run(workdir: Path, port: int, **extra_env: str) -> Iterator[Output]:
    """`make run PORT=port` in `workdir`, stopped with Ctrl-C (SIGINT) at the end."""
    process = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=workdir, env={**make_run_env(), **extra_env}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    output = Output(process)
    try:
        yield output
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        output.pump()


def wait_for_page(url: str, timeout: float) -> float:
    """Seconds until `url` answers 200."""
    started = time.monotonic()
    while True:
        try:
            if urllib.request.urlopen(url, timeout=5).status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        assert time.monotonic() - started < timeout, f"{url} not served within {timeout} s"
        time.sleep(0.2)
