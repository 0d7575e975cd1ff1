"""An answer that drips or floods, through the outbox on the real node: one failed try, logged
once with what happened, retried, and the report reaches the receiver under one key."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from nis2triage import logs
from nis2triage.notify.channel import Delivered, HttpChannel, RetryLater
from nis2triage.notify.notifier import Notifier
from nis2triage.notify.outbox import DeliveryReport, Outbox
from nis2triage.store import Store

from ccb_server import running_ccb

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

FAULTS = [
    # 50 ms a byte: the 1 s read timeout never trips, the answer would take about 5 s.
    pytest.param({"drip": 0.05}, "127.0.0.1 did not finish answering within 1.5 s", id="drip"),
    pytest.param({"body": b"x" * (8 << 20)}, "127.0.0.1 answered over 65,536 bytes",
                 id="flood-content-length"),
    pytest.param({"body": b"x" * (8 << 20), "announce": False},
                 "127.0.0.1 answered over 65,536 bytes", id="flood-until-close"),
]  # fmt: skip


def queued(es: Elasticsearch, prefix: str, channel: HttpChannel) -> tuple[Outbox, Store]:
    store = Store(es, prefix)
    store.ensure_indices()
    notifier = Notifier(store, "send", ["http"], None, lambda: NOW)
    notifier.queue("key-1", "incident_report", {"report_type": "early_warning"}, {})
    return Outbox(store, {"http": channel}, max_attempts=3), store


def warnings(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    """WARNING and worse from `logger` (an earlier test may leave the agent's loggers at INFO)."""
    return [r for r in caplog.records if r.name == logger and r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("fault", "reason"), FAULTS)
def test_a_dripping_or_flooding_answer_is_retried_and_delivered_once(
    es: Elasticsearch,
    index_name: str,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, Any],
    reason: str,
) -> None:
    with running_ccb() as ccb:
        channel = HttpChannel(ccb.url, "tok", 1.0, [], deadline=1.5, max_answer=64 * 1024)
        outbox, store = queued(es, index_name, channel)
        for name, value in fault.items():
            setattr(ccb, name, value)
        with caplog.at_level(logging.WARNING, logger="nis2triage.notify.outbox"):
            first = outbox.deliver_due(NOW)
        ccb.drip, ccb.body, ccb.announce = 0.0, b"{}", True
        second = outbox.deliver_due(NOW + timedelta(hours=1))
        third = outbox.deliver_due(NOW + timedelta(hours=2))

    [line] = [r.getMessage() for r in warnings(caplog, "nis2triage.notify.outbox")]
    entry = store.get("outbox", "key-1")
    assert (first.retrying, second.sent, third) == (1, 1, DeliveryReport())
    assert reason in line and "attempt 1" in line
    assert entry is not None and entry["status"] == "sent"
    assert entry["deliveries"]["http"]["attempts"] == 2
    # The try that was cut off and the one confirmed, under the same key; nothing after.
    assert ccb.idempotency_keys == ["key-1", "key-1"]


@contextmanager
def answering_raw(answer: bytes) -> Iterator[str]:
    """A loopback server that reads one request per connection and sends `answer` as is."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            with client:
                # The whole request: closed with its body unread, the socket sends a reset,
                # which the agent may read before the answer (1 try in 6 under load).
                _whole_request(client)
                client.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/notify"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_an_answer_no_handler_foresaw_is_a_retry_not_a_crash(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A chunk size past any integer: http.client raises OverflowError, not an HTTPException.
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nx"
    with answering_raw(answer) as url:
        channel = HttpChannel(url, "tok", 2.0, [], deadline=5.0)
        outbox, store = queued(es, index_name, channel)
        with caplog.at_level(logging.WARNING, logger="nis2triage.notify.outbox"):
            report = outbox.deliver_due(NOW)

    [line] = [r.getMessage() for r in warnings(caplog, "nis2triage.notify.outbox")]
    entry = store.get("outbox", "key-1")
    assert report.retrying == 1
    assert "http channel failed: OverflowError" in line
    assert entry is not None and entry["deliveries"]["http"]["status"] == "pending"


def _then_ok(interim: bytes) -> bytes:
    return interim + b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        # Interim answers before the real one: the report was accepted.
        (_then_ok(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"),
         Delivered("HTTP 201")),
        (_then_ok(b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"),
         Delivered("HTTP 201")),
        (b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n",
         RetryLater("HTTP 101 and no final answer")),
        # A portal's page behind a byte order mark or a comment is no delivery.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\nConnection: close\r\n\r\n"
         + "\ufeff<!DOCTYPE html><title>Login</title>".encode().ljust(40), None),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
         b"<!-- sso --> <!-- v2 --><html><body>Sign in</body></html>", None),
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nConnection: close\r\n\r\n"
         b'<?xml version="1.0"?>\n<!DOCTYPE html><html>Sign in</html>', None),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n<head><title>Sign in</title></head>",
         None),
        # JSON is the endpoint's answer, even labelled as a page.
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n"
         b'{"received": true}', Delivered("HTTP 200")),
    ],
    ids=["103-then-201", "102-twice-then-201", "no-final-answer", "bom-page", "comment-page",
         "xml-page", "head-page", "json-labelled-html"],
)  # fmt: skip
def test_interim_answers_are_skipped_and_pages_are_not_deliveries(
    answer: bytes, outcome: Delivered | RetryLater | None
) -> None:
    with answering_raw(answer) as url:
        got = HttpChannel(url, "tok", 2.0, [], deadline=5.0).send("key-1", {"a": 1}, NOW)

    if outcome is None:
        assert isinstance(got, RetryLater) and "HTML page" in got.reason
    else:
        assert got == outcome


def test_a_registered_secret_stays_out_of_the_outboxs_error(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A token the header cannot carry: http.client's error quotes it, escaped.
    token = "ccb-token-S3CRET-in-header\n"
    logs.register_secret(token)
    with running_ccb() as ccb:
        outbox, store = queued(es, index_name, HttpChannel(ccb.url, token, 2.0, [], 5.0))
        with caplog.at_level(logging.WARNING, logger="nis2triage.notify.outbox"):
            report = outbox.deliver_due(NOW)

    entry = store.get("outbox", "key-1")
    assert report.retrying == 1 and entry is not None
    assert "Invalid header value" in entry["last_error"]
    assert "S3CRET" not in entry["last_error"] and "S3CRET" not in caplog.text


class HeldFirstTry:
    """An endpoint honouring Idempotency-Key: it holds the first try of a key until
    `release`, answering 409 to a try of that key meanwhile and 201 once it is done."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.done = threading.Event()
        self.answers: list[int] = []
        self.started: set[str] = set()

    def status_for(self, key: str) -> int:
        if key not in self.started:
            self.started.add(key)
            self.release.wait(timeout=30)
            self.done.set()
            return 201
        return 201 if self.done.is_set() else 409


@contextmanager
def holding_first_try(endpoint: HeldFirstTry) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = endpoint.status_for(self.headers["Idempotency-Key"])
            endpoint.answers.append(status)
            with contextlib.suppress(OSError):  # the agent hung up on the held try
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/notifications"
    finally:
        endpoint.release.set()
        httpd.shutdown()
        httpd.server_close()


def test_a_409_while_an_earlier_try_is_processed_is_retried_and_delivered_once(
    es: Elasticsearch, index_name: str
) -> None:
    endpoint = HeldFirstTry()
    with holding_first_try(endpoint) as url:
        channel = HttpChannel(url, "tok", 0.5, [], deadline=0.5)
        outbox, store = queued(es, index_name, channel)

        cut = outbox.deliver_due(NOW)
        in_progress = outbox.deliver_due(NOW + timedelta(hours=1))
        endpoint.release.set()
        endpoint.done.wait(timeout=10)
        last = outbox.deliver_due(NOW + timedelta(hours=2))

    entry = store.get("outbox", "key-1")
    assert (cut.retrying, in_progress.retrying, last.sent) == (1, 1, 1)
    # The held try's 201 (which the agent no longer waited for) may come before or after the last.
    assert sorted(endpoint.answers) == [201, 201, 409]
    assert entry is not None and entry["status"] == "sent"
    assert entry["deliveries"]["http"]["attempts"] == 3


@contextmanager
def reset_then_accepted() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback server that takes each request whole and records it; the first it answers
    with half a status line and a reset, the next with 201."""
    server = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def serve() -> None:
        for answer in (b"HTTP/1.1 201 Cre", b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"):
            client, _ = server.accept()
            with client:
                requests.append(_whole_request(client))
                client.sendall(answer)
                # A zero linger turns the close into a reset.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/notify", requests
    finally:
        server.close()
        thread.join(timeout=5)


def _whole_request(client: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += client.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += client.recv(65536)
    return body


def test_a_connection_reset_after_the_report_went_is_not_said_as_one_never_made(
    es: Elasticsearch, index_name: str
) -> None:
    # It was said "cannot connect to 127.0.0.1:port", though the endpoint had the report whole.
    with reset_then_accepted() as (url, requests):
        outbox, store = queued(es, index_name, HttpChannel(url, "tok", 2.0, [], deadline=5.0))
        outbox.deliver_due(NOW)
        cut = store.get("outbox", "key-1")
        outbox.deliver_due(NOW + timedelta(hours=1))

    entry = store.get("outbox", "key-1")
    assert cut is not None and cut["deliveries"]["http"]["last_error"] == (
        "127.0.0.1 broke the connection during the exchange (ConnectionResetError), perhaps "
        "after taking the report: tried again with the same Idempotency-Key"
    )
    assert entry is not None and entry["status"] == "sent"
    assert len(requests) == 2 and requests[0] == requests[1]
