"""A real SMTP server on loopback (aiosmtpd) standing in for a mail relay the tests control."""

from __future__ import annotations

import asyncio
import email
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class SmtpServer:
    """Keeps every accepted message; answers RCPT and DATA from their scripts in order."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Message] = field(default_factory=list)
    script: list[str] = field(default_factory=list)
    data_script: list[str] = field(default_factory=list)
    # Seconds to sit on each RCPT before answering (a relay that stalls mid-session).
    stall: float = 0.0
    rcpt_seen: int = 0
    controller: Controller | None = field(default=None, repr=False)
    # Implicit TLS (SMTPS, port 465 style) with this server context.
    tls: ssl.SSLContext | None = field(default=None, repr=False)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.rcpt_seen += 1
        if self.stall:
            await asyncio.sleep(self.stall)
        if self.script:
            return self.script.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_script:
            return self.data_script.pop(0)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    @property
    def keys(self) -> list[str]:
        return [str(m["X-Idempotency-Key"]) for m in self.messages]

    def start(self) -> None:
        """Listen on `port` (again, after `stop`): the relay is back."""
        self.controller = Controller(self, hostname=self.host, port=self.port, ssl_context=self.tls)
        self.controller.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until `start`."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def free_port() -> int:
    # aiosmtpd checks its server by connecting to the port it was given, so port 0 will not do.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_smtp(tls: ssl.SSLContext | None = None) -> Iterator[SmtpServer]:
    server = SmtpServer(port=free_port(), tls=tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def dripping_smtp(interval: float) -> Iterator[int]:
    """A listener that greets one byte every `interval` seconds, in endless `220-` lines."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # so the accept loop sees `stop`
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            line = b"220-slow.example still greeting\r\n"
            while not stop.is_set():
                for i in range(len(line)):
                    if stop.wait(interval):
                        return
                    try:
                        conn.sendall(line[i : i + 1])
                    except OSError:
                        return  # the client gave up

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        listener.close()
