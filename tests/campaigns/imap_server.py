"""A small IMAP4rev1 server over TLS for the bounce tests: the mail store is the outside world.

It speaks the commands `campaigns.bounces.ImapSource` uses (CAPABILITY, LOGIN, SELECT,
UID SEARCH UNSEEN, UID FETCH BODY.PEEK[], UID STORE +FLAGS, UID MOVE/COPY, EXPUNGE, CLOSE,
LOGOUT) on a real socket with a real TLS handshake, against a self-signed certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class StoredMessage:
    raw: bytes
    folder: str = "INBOX"
    flags: set[str] = field(default_factory=set)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "imap-cert.pem", directory / "imap-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class IMAPServer:
    """One mailbox account on 127.0.0.1 over TLS; `client_context()` trusts its certificate."""

    def __init__(self, directory: Path, *, user: str, password: str, move: bool = True) -> None:
        self.user, self.password, self.move = user, password, move
        self.messages: dict[int, StoredMessage] = {}
        self.commands: list[str] = []
        self.cert, key = self_signed(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def setup(self) -> None:
                self.request = context.wrap_socket(self.request, server_side=True)
                super().setup()

            def handle(self) -> None:
                server._session(self.rfile, self.wfile)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # Polled often, so that stop() does not wait half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def add(self, raw: bytes, flags: set[str] | None = None) -> int:
        uid = max(self.messages, default=0) + 1
        self.messages[uid] = StoredMessage(raw, flags=set(flags or ()))
        return uid

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def start(self) -> IMAPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- the protocol ---------------------------------------------------------------------------

    def _session(self, rfile, wfile) -> None:
        capabilities = "IMAP4rev1 MOVE" if self.move else "IMAP4rev1"
        wfile.write(b"* OK test IMAP server ready\r\n")
        selected = None
        while line := rfile.readline():
            tag, _, rest = line.decode().rstrip("\r\n").partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            self.commands.append(f"{command} {args}".strip())
            out: list[bytes] = []
            if command == "CAPABILITY":
                out.append(f"* CAPABILITY {capabilities}\r\n".encode())
            elif command == "LOGIN":
                user, password = _strings(args)
                if (user, password) != (self.user, self.password):
                    wfile.write(f"{tag} NO [AUTHENTICATIONFAILED] invalid\r\n".encode())
                    continue
            elif command == "SELECT":
                (selected,) = _strings(args)
                count = sum(1 for m in self.messages.values() if m.folder == selected)
                out.append(f"* {count} EXISTS\r\n".encode())
            elif command == "UID":
                out += self._uid(args, selected)
            elif command == "EXPUNGE":
                for uid in [u for u, m in self.messages.items() if "\\Deleted" in m.flags]:
                    del self.messages[uid]
            elif command == "LOGOUT":
                wfile.write(f"* BYE\r\n{tag} OK LOGOUT completed\r\n".encode())
                return
            elif command != "CLOSE":
                wfile.write(f"{tag} BAD unknown command\r\n".encode())
                continue
            wfile.write(b"".join(out) + f"{tag} OK {command} completed\r\n".encode())
            wfile.flush()

    def _uid(self, args: str, folder: str | None) -> list[bytes]:
        command, _, rest = args.partition(" ")
        command = command.upper()
        here = {uid: m for uid, m in self.messages.items() if m.folder == folder}
        if command == "SEARCH":
            found = [str(u) for u, m in sorted(here.items()) if "\\Seen" not in m.flags]
            return [("* SEARCH " + " ".join(found)).rstrip().encode() + b"\r\n"]
        uid_text, _, rest = rest.partition(" ")
        uid = int(uid_text)
        message = here.get(uid)
        if message is None:
            return []
        if command == "FETCH":
            raw = message.raw
            return [f"* {uid} FETCH (UID {uid} BODY[] {{{len(raw)}}}\r\n".encode(), raw, b")\r\n"]
        if command == "STORE":
            flags = re.findall(r"\\\w+", rest)
            message.flags.update(flags)
            return [f"* {uid} FETCH (UID {uid} FLAGS ({' '.join(message.flags)}))\r\n".encode()]
        if command in {"MOVE", "COPY"}:
            (target,) = _strings(rest)
            if command == "MOVE":
                message.folder = target
            else:
                self.add(message.raw, message.flags)
                self.messages[max(self.messages)].folder = target
        return []


def _strings(args: str) -> list[str]:
    """The atoms and quoted strings of a command's arguments."""
    found = re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', args)
    return [re.sub(r"\\(.)", r"\1", quoted) if quoted else atom for quoted, atom in found]
