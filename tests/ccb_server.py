"""A real HTTP server on loopback standing in for the CCB's endpoint."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CcbServer:
    """Records every request; answers from `script` (status, headers) in order, then 200."""

    url: str
    received: list[Received] = field(default_factory=list)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    # The crash harness sets this: the next POST kills that process before it is answered.
    kill_pid: int | None = None
    # Seconds to sit on each request before answering (a stalled endpoint).
    stall: float = 0.0
    # Hang up on every request without answering (an endpoint that is down).
    down: bool = False
    # Seconds between the bytes of the answer, status line included (a dripping endpoint).
    drip: float = 0.0
    # The body of every answer, and whether Content-Length announces it.
    body: bytes = b"{}"
    announce: bool = True
    # Called once a request is taken, before it is answered (something done meanwhile).
    meanwhile: Callable[[], None] | None = None

    def respond(self) -> tuple[int, dict[str, str]]:
        return self.script.pop(0) if self.script else (200, {})

    @property
    def idempotency_keys(self) -> list[str]:
        return [r.headers.get("Idempotency-Key", "") for r in self.received]


def _handler(server: CcbServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            server.received.append(Received(self.path, dict(self.headers.items()), body))
            if server.kill_pid is not None:
                os.kill(server.kill_pid, signal.SIGKILL)
                server.kill_pid = None
            if server.down:
                self.close_connection = True
                self.connection.close()
                return
            if server.stall:
                time.sleep(server.stall)
            if server.meanwhile is not None:
                server.meanwhile()
            status, headers = server.respond()
            # The agent hangs up on a drip or a flood, as it should.
            with contextlib.suppress(OSError):
                self.answer(status, headers)

        def answer(self, status: int, headers: dict[str, str]) -> None:
            lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('?',))[0]}"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            if server.announce:
                lines.append(f"Content-Length: {len(server.body)}")
            lines.append("Connection: close")
            self.close_connection = True
            data = ("\r\n".join(lines) + "\r\n\r\n").encode() + server.body
            if not server.drip:
                self.wfile.write(data)
                return
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                time.sleep(server.drip)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key: (cert, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ccb-test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = folder / "ccb.crt", folder / "ccb.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_file, key_file


@contextmanager
def running_ccb(tls: tuple[Path, Path] | None = None) -> Iterator[CcbServer]:
    """The server on a free loopback port; over HTTPS with `tls` (cert file, key file)."""
    placeholder = CcbServer(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(placeholder))
    scheme = "http"
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        scheme = "https"
    placeholder.url = f"{scheme}://127.0.0.1:{httpd.server_address[1]}/notifications"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield placeholder
    finally:
        httpd.shutdown()
        httpd.server_close()
