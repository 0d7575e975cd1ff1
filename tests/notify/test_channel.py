"""The HTTP channel judges answers; Retry-After in both of its forms."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nis2triage.notify.channel import Delivered, HttpChannel, Rejected, RetryLater, retry_after
from nis2triage.notify.outbox import BACKOFF_MAX, backoff

from ccb_server import running_ccb, self_signed

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after("120", NOW) == NOW + timedelta(seconds=120)
    assert retry_after("Fri, 04 Dec 2026 12:05:00 GMT", NOW) == NOW + timedelta(minutes=5)
    assert retry_after("soon", NOW) is None


@pytest.mark.parametrize(
    ("status", "headers", "kind"),
    [
        pytest.param(200, {}, Delivered, id="ok"),
        pytest.param(202, {}, Delivered, id="accepted"),
        pytest.param(429, {"Retry-After": "30"}, RetryLater, id="too-many"),
        pytest.param(503, {}, RetryLater, id="unavailable"),
        pytest.param(302, {"Location": "http://elsewhere.example/"}, Rejected, id="redirect"),
        pytest.param(400, {}, Rejected, id="bad-request"),
    ],
)
def test_answers_are_judged(status: int, headers: dict, kind: type) -> None:
    with running_ccb() as ccb:
        ccb.script = [(status, headers)]
        outcome = HttpChannel(ccb.url, "tok", 5.0, []).send("key-1", {"a": 1}, NOW)

    assert isinstance(outcome, kind)
    assert ccb.received[0].headers["Idempotency-Key"] == "key-1"
    if status == 429:
        assert outcome.not_before == NOW + timedelta(seconds=30)


def test_dead_endpoint_is_retried_later() -> None:
    with running_ccb() as ccb:
        url = ccb.url
    outcome = HttpChannel(url, None, 2.0, []).send("k", {}, NOW)

    assert isinstance(outcome, RetryLater)
    assert "cannot connect" in outcome.reason


def test_backoff_grows_and_is_capped() -> None:
    assert backoff(1, lambda: 1.0) == timedelta(seconds=5)
    assert backoff(3, lambda: 1.0) == timedelta(seconds=20)
    assert backoff(30, lambda: 1.0) == BACKOFF_MAX
    # An endpoint down for a day passes attempt 45, where 5 s * 2**44 overflowed a timedelta.
    assert backoff(45, lambda: 1.0) == backoff(10_000, lambda: 1.0) == BACKOFF_MAX
    assert backoff(3, lambda: 0.0) == timedelta(seconds=10)


def test_a_drip_is_cut_off_at_the_deadline_though_no_read_times_out() -> None:
    with running_ccb() as ccb:
        ccb.drip = 0.05  # a byte every 50 ms: the 1 s read timeout never trips
        started = time.monotonic()
        outcome = HttpChannel(ccb.url, None, 1.0, [], deadline=1.5).send("k", {}, NOW)
        took = time.monotonic() - started

    assert isinstance(outcome, RetryLater)
    assert outcome.reason == "127.0.0.1 did not finish answering within 1.5 s"
    assert 1.5 <= took < 2.5


@pytest.mark.parametrize("announce", [True, False], ids=["content-length", "until-close"])
def test_an_answer_over_the_cap_is_not_read_whole(announce: bool) -> None:
    with running_ccb() as ccb:
        ccb.body, ccb.announce = b"x" * (8 << 20), announce
        outcome = HttpChannel(ccb.url, None, 5.0, [], max_answer=64 * 1024).send("k", {}, NOW)

    assert isinstance(outcome, RetryLater)
    assert outcome.reason == "127.0.0.1 answered over 65,536 bytes; not read further"


def test_an_answer_within_the_cap_is_judged_as_usual() -> None:
    with running_ccb() as ccb:
        ccb.body = b"x" * (60 * 1024)  # plus about 100 bytes of status line and headers
        outcome = HttpChannel(ccb.url, None, 5.0, [], max_answer=64 * 1024).send("k", {}, NOW)

    assert outcome == Delivered("HTTP 200")


def test_https_checks_the_certificate_against_the_trusted_cas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = self_signed(tmp_path)
    with running_ccb(tls) as ccb:
        unknown = HttpChannel(ccb.url, "tok", 5.0, []).send("k", {}, NOW)
        monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))  # OpenSSL's trust store, made ours
        trusted = HttpChannel(ccb.url, "tok", 5.0, []).send("k", {}, NOW)

    port = ccb.url.split(":")[2].split("/")[0]
    assert unknown == RetryLater(f"cannot connect to 127.0.0.1:{port}: SSLCertVerificationError")
    assert trusted == Delivered("HTTP 200")
    assert ccb.idempotency_keys == ["k"]  # nothing was sent to the unverified server


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        pytest.param({"Content-Type": "text/html; charset=utf-8"}, b"<p>Sign in</p>", id="type"),
        pytest.param({}, b"\n<!DOCTYPE html><html><body>Portal</body></html>", id="page"),
    ],
)
def test_an_html_page_answering_200_is_not_a_delivery(headers: dict, body: bytes) -> None:
    with running_ccb() as ccb:
        ccb.script, ccb.body = [(200, headers)], body
        outcome = HttpChannel(ccb.url, "tok", 5.0, []).send("k", {}, NOW)

    assert isinstance(outcome, RetryLater)
    assert "HTML page" in outcome.reason and "notifier.endpoint" in outcome.reason


def test_a_json_answer_with_its_type_is_a_delivery() -> None:
    with running_ccb() as ccb:
        ccb.script = [(201, {"Content-Type": "application/json"})]
        ccb.body = b'{"reference": "CCB-2026-0042"}'
        outcome = HttpChannel(ccb.url, "tok", 5.0, []).send("k", {}, NOW)

    assert outcome == Delivered("HTTP 201")


def test_an_endpoint_named_by_host_name_is_looked_up_and_reached() -> None:
    # `localhost` may give ::1 first, where nothing listens: the next address is tried.
    with running_ccb() as ccb:
        url = ccb.url.replace("127.0.0.1", "localhost")
        outcome = HttpChannel(url, "tok", 5.0, []).send("k-name", {"a": 1}, NOW)

    assert outcome == Delivered("HTTP 200")
    assert ccb.idempotency_keys == ["k-name"]
    assert ccb.received[0].headers["Host"].startswith("localhost:")


def test_an_empty_2xx_labelled_html_is_a_delivery() -> None:
    # Web frameworks label an empty 202 text/html by default.
    with running_ccb() as ccb:
        ccb.script, ccb.body = [(202, {"Content-Type": "text/html; charset=utf-8"})], b""
        outcome = HttpChannel(ccb.url, "tok", 5.0, []).send("k", {}, NOW)

    assert outcome == Delivered("HTTP 202")
