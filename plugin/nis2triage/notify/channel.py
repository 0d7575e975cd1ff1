"""Delivery channels. Each one sends one outbox entry and says what happened.

A channel never decides whether to retry; it reports `Delivered`, `RetryLater`
(with the earliest time worth trying again, when the other side said),
`Rejected` (trying again cannot help) or `HandedOver` (a person must submit it;
nothing reached the authority yet), and the outbox does the rest.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import SplitResult, urlsplit

from nis2triage import __version__
from nis2triage.notify.deadline import (
    AnswerTooLarge,
    Deadline,
    LookupTimeout,
    connect_within,
    read_within,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivered:
    detail: str


@dataclass(frozen=True)
class RetryLater:
    reason: str
    not_before: datetime | None = None


@dataclass(frozen=True)
class Rejected:
    reason: str


@dataclass(frozen=True)
class HandedOver:
    """Ready for a person to submit by hand; the report counts as sent only once they say so."""

    detail: str


Outcome = Delivered | RetryLater | Rejected | HandedOver


class Channel(Protocol):
    name: str

    def send(self, key: str, payload: dict[str, Any], now: datetime) -> Outcome: ...


class HttpChannel:
    """POSTs JSON with a bearer token and an idempotency key; follows no redirect.

    Each attempt has a total `deadline` (connect to last byte) on top of the per-read
    `timeout`, and reads at most `max_answer` bytes of answer (status line, headers and
    body). It speaks HTTP/1.1 through the standard library's `http.client`, where the
    channel owns the socket: requests and urllib3 bound each read only (urllib3's own
    documentation suggests a watcher thread for a wall-clock limit).
    """

    name = "http"

    def __init__(
        self,
        endpoint: str,
        token: str | None,
        timeout: float,
        allowed_hosts: list[str],
        deadline: float = 30.0,
        max_answer: int = 64 * 1024,
    ) -> None:
        self.endpoint = endpoint
        self.token = token
        self.timeout = timeout
        self.deadline = deadline
        self.max_answer = max_answer
        host = urlsplit(endpoint).hostname
        self.allowed = {h.lower() for h in [*allowed_hosts, host or ""] if h}

    def send(self, key: str, payload: dict[str, Any], now: datetime) -> Outcome:
        url = urlsplit(self.endpoint)
        host = (url.hostname or "").lower()
        if host not in self.allowed:
            return Rejected(f"host {host!r} is not an allowed notification host")
        if url.scheme not in ("http", "https"):
            return Rejected(f"endpoint {self.endpoint!r} is not an http(s) URL")
        body = json.dumps(payload, sort_keys=True).encode()
        deadline = Deadline(self.deadline)
        try:
            answer = self._post(url, self._headers(key), body, deadline)
        except AnswerTooLarge:
            return RetryLater(f"{host} answered over {self.max_answer:,} bytes; not read further")
        except LookupTimeout as exc:
            return RetryLater(f"{exc}: check the DNS resolver of this machine")
        except TimeoutError:
            # The last wait is cut to what is left of the deadline, so look at the clock.
            if deadline.passed:
                return RetryLater(f"{host} did not finish answering within {self.deadline:g} s")
            return RetryLater(f"no answer from {host} within {self.timeout:g} s")
        except http.client.HTTPException as exc:
            return RetryLater(f"broken answer from {host}: {type(exc).__name__}")
        except ConnectionLost as exc:
            cause = type(exc.__cause__).__name__
            return RetryLater(
                f"{host} broke the connection during the exchange ({cause}), perhaps after "
                "taking the report: tried again with the same Idempotency-Key"
            )
        except socket.gaierror as exc:
            return RetryLater(
                f"the name {host} does not resolve ({exc.strerror}): check notifier.endpoint "
                "and this machine's DNS"
            )
        except OSError as exc:
            port = url.port or (443 if url.scheme == "https" else 80)
            return RetryLater(f"cannot connect to {host}:{port}: {type(exc).__name__}")
        return judge(answer, now)

    def _headers(self, key: str) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "User-Agent": f"nis2triage/{__version__}",
            "Connection": "close",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _post(
        self, url: SplitResult, headers: dict[str, str], body: bytes, deadline: Deadline
    ) -> Answer:
        # Environment proxy variables are not used: reports go straight to the endpoint.
        conn = _connection(url, min(self.timeout, deadline.left()))
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        return post_bounded(conn, target, headers, body, deadline, self.timeout, self.max_answer)


def post_bounded(
    conn: http.client.HTTPConnection,
    target: str,
    headers: dict[str, str],
    body: bytes,
    deadline: Deadline,
    timeout: float,
    max_answer: int,
) -> Answer:
    """POST over `conn` within `deadline` in all (`timeout` per read), reading at most
    `max_answer` bytes of answer: a server that drips or floods its answer cannot hold
    the caller or fill its memory (the notification channel, setup's Kibana import)."""
    # The name lookup within the deadline too, which a socket timeout does not bound;
    # the Host header and the certificate check still use the URL's name.
    conn._create_connection = lambda address, *_: connect_within(  # type: ignore[attr-defined]
        address[0], address[1], deadline, timeout
    )
    conn.response_class = capped_response(deadline, timeout, max_answer)
    try:
        conn.connect()
        assert conn.sock is not None
        deadline.bound(conn.sock, timeout)
        try:
            conn.request("POST", target, body, headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
        except ConnectionError as exc:
            raise ConnectionLost(str(exc)) from exc
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, text)
    finally:
        conn.close()


class ConnectionLost(ConnectionError):
    """The peer reset or closed the connection after it was made: the request may have
    reached it whole, so it is not said as a connection that could not be made."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    text: str


def _connection(url: SplitResult, timeout: float) -> http.client.HTTPConnection:
    host, port = url.hostname or "", url.port
    if url.scheme == "https":
        return http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl.create_default_context()
        )
    return http.client.HTTPConnection(host, port, timeout=timeout)


def capped_response(
    deadline: Deadline, per_read: float, cap: int
) -> type[http.client.HTTPResponse]:
    """An HTTPResponse reading through the deadline and the cap (see notify.deadline)."""

    class CappedResponse(http.client.HTTPResponse):
        def __init__(
            self, sock: socket.socket, debuglevel: int = 0, method: str | None = None,
            url: str | None = None,
        ) -> None:  # fmt: skip
            super().__init__(sock, debuglevel, method, url)
            self.fp.close()
            self.fp = read_within(sock, deadline, per_read, cap)

        def _read_status(self) -> tuple[str, int, str]:
            # An interim answer (102 Processing, 103 Early Hints) comes before the real
            # one: http.client skips 100 only, and would take a 103 for the answer, so a
            # report the endpoint then accepts would count as refused.
            while True:
                version, status, reason = super()._read_status()  # type: ignore[misc]
                if status in (100, 101) or not 100 <= status < 200:
                    return version, status, reason
                _skip_headers(self.fp)

    return CappedResponse


_MAX_LINE = 65_536  # as http.client reads a header line


def _skip_headers(fp: Any) -> None:
    """Read an interim answer's header lines, up to the blank line that ends them."""
    while fp.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
        pass


def judge(answer: Answer, now: datetime) -> Outcome:
    status = answer.status
    if 200 <= status < 300 and _is_html(answer):
        # A login portal, a proxy's page or a web site's front page answers 200 to
        # anything: taking that as delivery would miss a legal deadline without a word.
        return RetryLater(
            f"HTTP {status} with an HTML page, not the endpoint's answer: is "
            "notifier.endpoint the reporting API's URL, and is no portal or proxy in the way?"
        )
    if 200 <= status < 300:
        return Delivered(f"HTTP {status}")
    if status < 200:
        # Interim answers are skipped: this one came with no answer after it.
        return RetryLater(f"HTTP {status} and no final answer")
    if 300 <= status < 400:
        # Following a redirect could hand the report (and the token) to another host.
        where = answer.headers.get("location", "?")
        return Rejected(f"HTTP {status} redirect to {where} refused")
    if status == 429 or status >= 500:
        return RetryLater(f"HTTP {status}", retry_after(answer.headers.get("retry-after"), now))
    if status == 408:
        return RetryLater("HTTP 408")
    if status == 409:
        # What an endpoint honouring Idempotency-Key answers while an earlier try of the
        # same key is still processed (draft-ietf-httpapi-idempotency-key-header, 2.6): a
        # try cut at the deadline is often one. Given up, the report was marked failed and
        # the SOC told to send by hand one that the endpoint was about to accept.
        return RetryLater(
            "HTTP 409: the endpoint still processes an earlier try of this key",
            retry_after(answer.headers.get("retry-after"), now),
        )
    return Rejected(f"HTTP {status}: {answer.text[:200]}")


def _is_html(answer: Answer) -> bool:
    """Whether the answer is a web page. An empty body is not one, whatever its type:
    web frameworks label an empty 202 or 204 text/html by default."""
    kind = answer.headers.get("content-type", "").partition(";")[0].strip().lower()
    # A byte order mark, an XML declaration and comments may come before the first tag.
    start = answer.text.lstrip("\ufeff \t\r\n")[:20_000].lower()
    while start.startswith(("<!--", "<?")):
        end = "-->" if start.startswith("<!--") else "?>"
        if end not in start:
            break
        start = start.split(end, 1)[1].lstrip()
    if not start or start.startswith(("{", "[")):
        return False  # JSON, whatever the label says
    return kind in ("text/html", "application/xhtml+xml") or start.startswith(
        ("<!doctype html", "<html", "<head", "<body", "<meta", "<title")
    )


RETRY_AFTER_MAX = timedelta(hours=1)


def retry_after(value: str | None, now: datetime) -> datetime | None:
    """RFC 9110 §10.2.3: Retry-After is either seconds or an HTTP date.

    Capped at an hour: a server asking for days would shelve a report with a legal
    deadline; a value that does not parse is ignored.
    """
    if not value:
        return None
    value = value.strip()
    try:
        when = now + timedelta(seconds=int(value)) if value.isdigit() else _http_date(value)
    except (OverflowError, ValueError):
        return now + RETRY_AFTER_MAX
    if when is None:
        return None
    return min(when, now + RETRY_AFTER_MAX)


def _http_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
