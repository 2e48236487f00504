"""The SMTP sink of tests/system/smtp_sink.py as a process of its own (`python -m
tests.system.sink_process --dir D`), for tests that kill or starve the processes around it: it
records into D, and takes its faults through `D/faults.json`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.processes import wait_for
from tests.system.smtp_sink import (
    ROOT,
    Faults,
    FaultSwitches,
    Received,
    SMTPSink,
    read_records,
    write_atomic,
)


class SinkProcess(FaultSwitches):
    """The sink in its own process; faults switch through `<directory>/faults.json`."""

    def __init__(self, directory: Path, *, port: int = 0) -> None:
        self.directory = directory
        self.host = "127.0.0.1"
        self.port = port
        self.faults = Faults()
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> SinkProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "port").unlink(missing_ok=True)
        self._log = (self.directory / "sink.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.system.sink_process", "--dir", str(self.directory),
             "--port", str(self.port)],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        port_file = self.directory / "port"
        wait_for(
            lambda: port_file.exists() or self.process.poll() is not None,
            timeout=timeout,
            interval=0.05,
            message=lambda: f"the sink did not start: {self.log()[-2000:]}",
        )
        if not port_file.exists():
            raise AssertionError(f"the sink exited: {self.log()[-2000:]}")
        self.port = int(port_file.read_text())
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self._log.close()

    def __enter__(self) -> SinkProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self) -> str:
        path = self.directory / "sink.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _change(self, **changes) -> None:
        # A numbered change; the sink polls every 20 ms and writes the number it applied.
        self._version = getattr(self, "_version", 0) + 1
        change = {"version": self._version, "changes": changes}
        write_atomic(self.directory / "faults.json", json.dumps(change).encode())
        wait_for(
            lambda: self._applied() >= self._version,
            timeout=10,
            interval=0.01,
            message=lambda: f"the sink did not take the faults: {self.log()[-2000:]}",
        )

    def _applied(self) -> int:
        """The number of the last fault change the sink applied (0: none yet)."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int((self.directory / "faults.applied").read_text())
        return 0

    @property
    def messages(self) -> list[Received]:
        return read_records(self.directory)

    def message_ids(self) -> list[str | None]:
        return [m.message_id for m in self.messages]

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        wait_for(
            lambda: len(self.messages) >= count,
            timeout=timeout,
            interval=0.05,
            message=lambda: f"{len(self.messages)} of {count} messages arrived",
        )
        return self.messages

    email_env = SMTPSink.email_env


async def _watch_faults(sink: SMTPSink, directory: Path) -> None:
    path, applied = directory / "faults.json", directory / "faults.applied"
    seen = 0
    while True:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            change = json.loads(path.read_text())
            if change["version"] > seen:
                await sink._apply(change["changes"])
                seen = change["version"]
                write_atomic(applied, str(seen).encode())
        await asyncio.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sink = SMTPSink(host=args.host, port=args.port, directory=args.dir).start()
    asyncio.run_coroutine_threadsafe(_watch_faults(sink, args.dir), sink._loop)
    write_atomic(args.dir / "port", str(sink.port).encode())
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    sink.stop()


if __name__ == "__main__":
    main()
