"""Delivery channels. Each one sends one outbox entry and says what happened.

A channel never decides whether to retry; it reports `Delivered`, `RetryLater`
(with the earliest time worth trying again, when the other side said),
`Rejected` (trying again cannot help) or `HandedOver` (a person must submit it;
nothing reached the authority yet), and the outbox does the rest.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

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
    """POSTs JSON with a bearer token and an idempotency key; follows no redirect."""

    name = "http"

    def __init__(
        self,
        endpoint: str,
        token: str | None,
        timeout: float,
        allowed_hosts: list[str],
        session: requests.Session | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.token = token
        self.timeout = timeout
        host = urlsplit(endpoint).hostname
        self.allowed = {h.lower() for h in [*allowed_hosts, host or ""] if h}
        self.session = session or requests.Session()

    def send(self, key: str, payload: dict[str, Any], now: datetime) -> Outcome:
        host = (urlsplit(self.endpoint).hostname or "").lower()
        if host not in self.allowed:
            return Rejected(f"host {host!r} is not an allowed notification host")
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            resp = self.session.post(
                self.endpoint,
                data=json.dumps(payload, sort_keys=True),
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            return RetryLater(f"no answer from {host} within {self.timeout:g} s")
        except requests.ConnectionError as exc:
            return RetryLater(f"cannot connect to {host}: {type(exc).__name__}")
        return self._judge(resp, now)

    def _judge(self, resp: requests.Response, now: datetime) -> Outcome:
        status = resp.status_code
        if 200 <= status < 300:
            return Delivered(f"HTTP {status}")
        if 300 <= status < 400:
            # Following a redirect could hand the report (and the token) to another host.
            where = resp.headers.get("Location", "?")
            return Rejected(f"HTTP {status} redirect to {where} refused")
        if status == 429 or status >= 500:
            return RetryLater(f"HTTP {status}", retry_after(resp.headers.get("Retry-After"), now))
        if status == 408:
            return RetryLater("HTTP 408")
        return Rejected(f"HTTP {status}: {resp.text[:200]}")


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
