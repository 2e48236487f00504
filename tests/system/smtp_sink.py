"""A real SMTP server on loopback for system tests: it records every message and fails on demand.

`SMTPSink` runs aiosmtpd's SMTP protocol on its own event loop in a thread of the test process;
`SinkProcess` (tests/system/sink_process.py) runs the same sink as a separate process, for tests
that kill or starve the processes around it. Both record each accepted message (envelope
sender, recipients, raw bytes, Message-ID, time) in memory and, given a directory, as files
another process can read (`read_records`), and both take the same faults at run time:

- `transient(code=451, stage="rcpt" | "data", seconds=…, count=…)`: 421 or 451 answers for a
  while (421 also closes the connection, as RFC 5321 §3.8 says);
- `reject(*addresses)`: 550 at RCPT for those addresses, the others are accepted;
- `refuse_connections()`: the listening socket is closed (clients get ECONNREFUSED) and open
  connections are dropped, until `refuse_connections(False)`;
- `hang("connect" | "data")`: accept a connection and never greet, or take a message and never
  answer the end of DATA (the client's timeout must fire);
- `slow(ms)`: wait that long before answering each message (other connections go on);
- `reset_faults()`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.smtp import MISSING, SMTP

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Received:
    """One message the sink accepted."""

    seq: int
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message_id: str | None
    received_at: float  # time.time(), comparable across processes


@dataclass
class Faults:
    """What the sink does wrong, as JSON so another process can switch it."""

    transient_code: int = 0  # 421 or 451; 0: off
    transient_stage: str = "rcpt"  # "rcpt" or "data"
    transient_until: float = 0.0  # time.time() when the transient answers stop
    transient_count: int = 0  # or: this many transient answers, then normal again
    reject: list[str] = field(default_factory=list)  # answered 550 at RCPT
    refuse: bool = False
    hang: str = ""  # "connect" or "data"
    delay_ms: int = 0

    def transient_now(self, stage: str) -> int:
        if not self.transient_code or self.transient_stage != stage:
            return 0
        if self.transient_count > 0:
            self.transient_count -= 1
            return self.transient_code
        return self.transient_code if time.time() < self.transient_until else 0


_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", re.I | re.M)


def message_id_of(raw: bytes) -> str | None:
    """The Message-ID header's value, unfolded (the header block only, not parsed as MIME)."""
    match = _MESSAGE_ID.search(raw.split(b"\r\n\r\n", 1)[0])
    return None if match is None else " ".join(match.group(1).decode("ascii", "replace").split())


class FaultSwitches:
    """The run-time fault API, shared by the in-process sink and the sink process."""

    def _change(self, **changes) -> None:
        raise NotImplementedError

    def transient(
        self,
        code: int = 451,
        *,
        stage: str = "rcpt",
        seconds: float | None = None,
        count: int | None = None,
    ) -> None:
        """Answer `code` (421 or 451) at RCPT or at the end of DATA, for `seconds` or `count`
        answers (without either: until `reset_faults()`)."""
        if code not in (421, 451) or stage not in ("rcpt", "data"):
            raise ValueError("transient faults are 421 or 451, at rcpt or data")
        forever = seconds is None and count is None
        self._change(
            transient_code=code,
            transient_stage=stage,
            transient_until=time.time() + (seconds or 0) + (10**9 if forever else 0),
            transient_count=count or 0,
        )

    def reject(self, *addresses: str) -> None:
        """Answer 550 at RCPT for these addresses from now on."""
        self._change(reject=[a.lower() for a in addresses])

    def refuse_connections(self, refuse: bool = True) -> None:
        self._change(refuse=refuse)

    def hang(self, mode: str | None = "connect") -> None:
        if mode not in (None, "", "connect", "data"):
            raise ValueError("hang is 'connect' or 'data'")
        self._change(hang=mode or "")

    def slow(self, ms: int) -> None:
        self._change(delay_ms=ms)

    def reset_faults(self) -> None:
        self._change(**dataclasses.asdict(Faults()))


class _Silent(asyncio.Protocol):
    """Takes a connection and never says a word."""

    def __init__(self, sink: SMTPSink) -> None:
        self.sink = sink

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.sink._transports.add(transport)

    def connection_lost(self, exc) -> None:
        self.sink._transports.discard(self.transport)


_ANGLE_ADDR = re.compile(r"\s*<([^<>\s\"(),:;@\[\]\\]*@[A-Za-z0-9.-]+|)>(.*)")


class _SinkSMTP(SMTP):
    def __init__(self, sink: SMTPSink) -> None:
        super().__init__(
            sink,
            hostname="sink.test",
            ident="MLM test sink",
            data_size_limit=None,
            enable_SMTPUTF8=True,
            loop=sink._loop,
        )
        self.sink = sink

    def connection_made(self, transport) -> None:
        self.sink._transports.add(transport)
        self.sink.stats["connections"] += 1
        super().connection_made(transport)

    def connection_lost(self, error) -> None:
        self.sink._transports.discard(self.transport)
        super().connection_lost(error)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """`<address> params` of MAIL FROM and RCPT TO, without aiosmtpd's full RFC 5322
        address parser (most of its time per message); anything else goes to that parser."""
        match = _ANGLE_ADDR.fullmatch(arg)
        if match is None:
            return super()._getaddr(arg)
        return match.group(1), match.group(2)

    async def smtp_DATA(self, arg: str) -> None:
        """DATA read in large chunks up to the final dot, instead of aiosmtpd's line-by-line
        loop (an await per line: a few hundred messages a second at most), so that the sink is
        not what a dispatch test or benchmark measures. Same answers and hook."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        reader, buffer = self._reader, bytearray()
        reader._limit = 1 << 20  # let the transport fill the buffer while we wait
        while not buffer.startswith(b".\r\n"):
            searched = max(0, len(buffer) - 4)
            chunk = await reader.read(1 << 20)
            if not chunk:
                return  # the client went away mid-message: nothing was delivered
            buffer += chunk
            end = buffer.find(b"\r\n.\r\n", searched)
            if end >= 0:
                content, rest = bytes(buffer[: end + 2]), buffer[end + 5 :]
                break
        else:
            content, rest = b"", buffer[3:]
        reader._limit = self.line_length_limit
        if rest:  # pipelined commands after the final dot: leave them for the command loop
            reader._buffer[:0] = rest
        if content.startswith(b"."):  # undo dot-stuffing (RFC 5321 §4.5.2)
            content = content[1:]
        content = content.replace(b"\r\n.", b"\r\n")
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)


class SMTPSink(FaultSwitches):
    """An SMTP server on 127.0.0.1 in a thread of this process."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        directory: Path | None = None,
        keep_raw: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.directory = directory
        self.keep_raw = keep_raw  # off for big campaigns: Message-IDs and envelopes only
        self.faults = Faults()
        self.stats = {
            "connections": 0,
            "transactions": 0,
            "accepted": 0,
            "transient": 0,
            "rejected": 0,
            "unanswered": 0,
        }
        self._messages: list[Received] = []
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        if directory is not None:
            (directory / "messages").mkdir(parents=True, exist_ok=True)

    # --- life -----------------------------------------------------------------------------------

    def start(self) -> SMTPSink:
        self._thread.start()
        self._call(self._listen)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._close_all)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> SMTPSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _call(self, coroutine_function, *args):
        return asyncio.run_coroutine_threadsafe(coroutine_function(*args), self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await self._loop.create_server(
            self._protocol, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_all(self) -> None:
        """Stop listening, drop every connection, end every hanging answer."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for transport in list(self._transports):
            transport.close()
        for task in asyncio.all_tasks(self._loop):
            if task is not asyncio.current_task():
                task.cancel()

    def _protocol(self) -> asyncio.Protocol:
        if self.faults.hang == "connect":
            return _Silent(self)
        return _SinkSMTP(self)

    # --- faults ---------------------------------------------------------------------------------

    def _change(self, **changes) -> None:
        self._call(self._apply, changes)

    async def _apply(self, changes: dict) -> None:
        was_refusing = self.faults.refuse
        self.faults = dataclasses.replace(self.faults, **changes)
        if self.faults.refuse and not was_refusing:
            if self._server is not None:
                self._server.close()
                self._server = None
            for transport in list(self._transports):
                transport.abort()
        elif not self.faults.refuse and was_refusing:
            await self._listen()

    # --- the SMTP handler (aiosmtpd hooks, on the loop thread) ----------------------------------

    async def handle_MAIL(self, server, session, envelope, address, mail_options) -> str:
        self.stats["transactions"] += 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        code = self.faults.transient_now("rcpt")
        if code:
            return self._transient(server, code)
        if address.lower() in self.faults.reject:
            self.stats["rejected"] += 1
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.faults.hang == "data":
            self.stats["unanswered"] += 1
            await asyncio.sleep(10**6)
        if self.faults.delay_ms:
            await asyncio.sleep(self.faults.delay_ms / 1000)
        code = self.faults.transient_now("data")
        if code:
            return self._transient(server, code)
        self._record(envelope)
        return "250 2.0.0 Ok: queued"

    def _transient(self, server, code: int) -> str:
        self.stats["transient"] += 1
        if code == 421:
            # After the answer is written: `push` writes before it first yields.
            self._loop.call_soon(server.transport.close)
            return "421 4.3.2 Service not available, closing transmission channel"
        return "451 4.3.0 Temporary failure, please try again later"

    def _record(self, envelope) -> None:
        raw = envelope.original_content
        with self._cond:
            received = Received(
                seq=len(self._messages) + 1,
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                raw=raw if self.keep_raw else b"",
                message_id=message_id_of(raw),
                received_at=time.time(),
            )
            self._messages.append(received)
            self.stats["accepted"] += 1
            self._cond.notify_all()
        if self.directory is not None:
            write_record(self.directory, dataclasses.replace(received, raw=raw))

    # --- what tests read ------------------------------------------------------------------------

    @property
    def messages(self) -> list[Received]:
        with self._cond:
            return list(self._messages)

    def message_ids(self) -> list[str | None]:
        return [m.message_id for m in self.messages]

    def recipients(self) -> list[str]:
        return [r for m in self.messages for r in m.rcpt_tos]

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        """Wait until at least `count` messages arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self._messages)} of {count} messages arrived")
                self._cond.wait(left)
            return list(self._messages)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def email_env(self) -> dict[str, str]:
        """Environment that points a worker's Django SMTP backend here."""
        return {
            "EMAIL_BACKEND": "smtp",
            "EMAIL_HOST": self.host,
            "EMAIL_PORT": str(self.port),
            "EMAIL_USE_TLS": "0",
            "EMAIL_USE_SSL": "0",
        }


# --- records on disk, for other processes -------------------------------------------------------


def write_record(directory: Path, received: Received) -> None:
    """`<seq>.eml` with the raw bytes, then `<seq>.json`: a record exists once its JSON does."""
    folder = directory / "messages"
    stem = f"{received.seq:08d}"
    write_atomic(folder / f"{stem}.eml", received.raw)
    meta = {f.name: getattr(received, f.name) for f in dataclasses.fields(received)}
    del meta["raw"]
    write_atomic(folder / f"{stem}.json", json.dumps(meta).encode())


def read_records(directory: Path) -> list[Received]:
    """Every message a sink (in any process) recorded in `directory`, in arrival order."""
    records = []
    for meta_path in sorted((directory / "messages").glob("*.json")):
        meta = json.loads(meta_path.read_text())
        raw = meta_path.with_suffix(".eml").read_bytes()
        records.append(Received(raw=raw, **meta))
    return records


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def duplicates(records: list[Received]) -> dict[str | None, int]:
    """Message-IDs that arrived more than once, with how many times (I7: should be empty)."""
    counts = Counter(record.message_id for record in records)
    return {message_id: n for message_id, n in counts.items() if n > 1}
