"""A real HTTP server on loopback standing in for the CCB's endpoint."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
            status, headers = server.respond()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_ccb() -> Iterator[CcbServer]:
    placeholder = CcbServer(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(placeholder))
    placeholder.url = f"http://127.0.0.1:{httpd.server_address[1]}/notifications"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield placeholder
    finally:
        httpd.shutdown()
        httpd.server_close()
