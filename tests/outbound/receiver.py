"""A receiver of outbound events on loopback: it verifies every Standard Webhooks signature,
records what it got, and misbehaves on request (500s, hangs longer than the client waits).

In a thread of the test (`Receiver(...).start()`), or in a process of its own for the
benchmark (`python -m tests.outbound.receiver`), which prints its port and, when stopped with
SIGTERM, writes one JSON line per event received to stdout.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    event_id: str
    recipient: str
    payload: dict


@dataclass
class Faults:
    """What share of requests answer 500, and what share hang for `hang_seconds`."""

    error_rate: float = 0.0
    hang_rate: float = 0.0
    hang_seconds: float = 0.0
    hang_all: bool = False
    seed: int = 17


@dataclass
class Receiver:
    secrets: list[str]
    faults: Faults = field(default_factory=Faults)
    received: list[Received] = field(default_factory=list)
    refused: int = 0
    requests: int = 0

    def start(self) -> Receiver:
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._random = random.Random(self.faults.seed)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = receiver.handle(body, dict(self.headers.items()))
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up waiting (a hang)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # Polled often, so that stop() (once per test) does not wait half a second.
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/events"

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        """Verify, record, then answer as the faults say."""
        payload = None
        for secret in self.secrets:
            try:
                payload = Webhook(secret).verify(body, headers)
                break
            except WebhookVerificationError:
                continue
        with self._lock:
            self.requests += 1
            if payload is None:
                self.refused += 1
                return 401
            if payload["id"] != headers.get("webhook-id", headers.get("Webhook-Id")):
                self.refused += 1
                return 400
            self.received.append(
                Received(payload["id"], payload["data"]["recipient"]["code"], payload)
            )
            roll = self._random.random()
        if self.faults.hang_all or roll < self.faults.hang_rate:
            self._release.wait(self.faults.hang_seconds)
            return 200
        if roll < self.faults.hang_rate + self.faults.error_rate:
            return 500
        return 200

    def heal(self) -> None:
        """No more faults; hung requests end now."""
        self.faults = Faults()
        self._release.set()

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    """Serve until SIGTERM with the secret of argv[1]; print the port, then what was received."""
    receiver = Receiver(secrets=[sys.argv[1]]).start()
    print(receiver.server.server_port, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    receiver.stop()
    for r in receiver.received:
        print(json.dumps({"id": r.event_id, "recipient": r.recipient}))
    print(json.dumps({"refused": receiver.refused}), flush=True)


if __name__ == "__main__":
    main()
