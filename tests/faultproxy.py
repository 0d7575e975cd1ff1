"""A fault-injecting TCP proxy on loopback, between the agent and Elasticsearch.

Modes, switched while it runs: `pass` (forward bytes), `refuse` (accept and
close at once: Elasticsearch looks down), `reset` (accept, then reset the
connection), `http429` (answer every request with 429 Too Many Requests) and
`slow` (forward, after a delay on every chunk).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

REJECTED = b'{"error":{"type":"es_rejected_execution_exception"},"status":429}'
TOO_MANY = (
    b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
    b"X-elastic-product: Elasticsearch\r\ncontent-length: %d\r\n\r\n%s"
) % (len(REJECTED), REJECTED)


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    mode: str = "pass"
    delay: float = 0.5
    port: int = 0
    connections: int = 0
    _server: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        mode = self.mode
        if mode == "refuse":
            client.close()
            return
        if mode == "reset":
            # SO_LINGER with a zero timeout turns close() into a TCP reset.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        if mode == "http429":
            with client:
                client.recv(65536)
                client.sendall(TOO_MANY)
            return
        upstream = socket.create_connection(self.upstream)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                if self.mode == "slow":
                    time.sleep(self.delay)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            # Both directions end together; each pipe closes what it holds.
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            src.close()


@contextmanager
def fault_proxy(upstream_url: str) -> Iterator[FaultProxy]:
    host_port = upstream_url.split("//", 1)[1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    proxy = FaultProxy((host, int(port)))
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    proxy._server, proxy.port = server, server.getsockname()[1]
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.close()
