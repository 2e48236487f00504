"""Run the embedded default: the web server and a Celery worker (with beat) side by side."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Start the web server and a background worker; Ctrl-C stops both."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host: str, port: int, **options) -> None:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                raise CommandError(
                    f"Port {port} on {host} is in use. Stop what runs there, or choose another "
                    f"port: make run PORT={port + 1}"
                ) from None
        python = sys.executable
        worker = subprocess.Popen(
            [python, "-m", "celery", "-A", "mlm", "worker", "--beat", "--pool=solo",
             "--loglevel=INFO", "--without-mingle", "--without-gossip",
             "--schedule", str(settings.VAR_DIR / "celerybeat-schedule")],
        )  # fmt: skip
        web = subprocess.Popen(
            [python, "manage.py", "runserver", "--noreload", f"{host}:{port}"],
            cwd=settings.BASE_DIR,
        )
        url = f"http://{host}:{port}/"
        self._announce_when_up(host, port, url, web)

        def stop(*_args) -> None:
            for proc in (web, worker):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while web.poll() is None and worker.poll() is None:
                time.sleep(0.5)
        finally:
            stop()
            for proc in (web, worker):
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.stdout.write("MLM stopped.")

    def _announce_when_up(self, host: str, port: int, url: str, web: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and web.poll() is None:
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        login = settings.VAR_DIR / "demo-login.txt"
        who = f"  Log in as demo / {login.read_text().strip()}" if login.exists() else ""
        self.stdout.write(self.style.SUCCESS(f"MLM is running at {url}{who}  (Ctrl-C stops it)"))
