"""The SMTP channel against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nis2triage.config import SmtpConfig
from nis2triage.notify.channel import Delivered, Rejected, RetryLater
from nis2triage.notify.smtp import SmtpChannel

from ccb_server import self_signed
from report_sample import sample_payload
from smtp_server import SmtpServer, free_port, running_smtp

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def report_payload() -> dict[str, object]:
    return sample_payload("early_warning")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server


def channel(port: int) -> SmtpChannel:
    cfg = SmtpConfig(host="127.0.0.1", port=port, security="none", sender="soc@entity.example",
                     recipients=["incident@ccb.example"], timeout=5)  # fmt: skip
    return SmtpChannel(cfg, None)


def test_a_report_arrives_once_with_its_key_the_pdf_and_the_json(
    smtp: SmtpServer, report_payload: dict[str, object]
) -> None:
    outcome = channel(smtp.port).send("k-123", report_payload, NOW)

    message = smtp.messages[0]
    parts = {p.get_filename(): p for p in message.walk() if p.get_filename()}
    assert isinstance(outcome, Delivered)
    assert smtp.keys == ["k-123"]
    assert message["Message-ID"] == "<k-123@entity.example>"
    assert "NIS2 Early warning: Test Entity NV" in message["Subject"]
    assert sorted(name.rsplit(".", 1)[1] for name in parts) == ["json", "pdf"]
    pdf = next(p for n, p in parts.items() if n.endswith(".pdf"))
    assert pdf.get_payload(decode=True).startswith(b"%PDF")
    body = next(p for n, p in parts.items() if n.endswith(".json")).get_payload(decode=True)
    assert json.loads(body)["report_type"] == "early_warning"


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        pytest.param("550 5.1.1 mailbox unknown", Rejected, id="550-permanent"),
        pytest.param("451 4.3.0 try again later", RetryLater, id="451-transient"),
    ],
)
def test_smtp_reply_codes_decide_whether_to_retry(
    smtp: SmtpServer, report_payload: dict[str, object], reply: str, outcome: type
) -> None:
    smtp.script = [reply]

    assert isinstance(channel(smtp.port).send("k", report_payload, NOW), outcome)
    assert smtp.messages == []


def test_no_server_listening_is_retried_later(report_payload: dict[str, object]) -> None:
    result = channel(free_port()).send("k", report_payload, NOW)

    assert isinstance(result, RetryLater)
    assert "ConnectionRefusedError" in result.reason


def test_a_relay_named_by_host_name_is_looked_up_and_reached(
    smtp: SmtpServer, report_payload: dict[str, object]
) -> None:
    cfg = SmtpConfig(host="localhost", port=smtp.port, security="none",
                     sender="soc@entity.example", recipients=["incident@ccb.example"],
                     timeout=5)  # fmt: skip

    outcome = SmtpChannel(cfg, None).send("k-name", report_payload, NOW)

    assert isinstance(outcome, Delivered)
    assert smtp.keys == ["k-name"]


def test_implicit_tls_checks_the_relay_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, report_payload: dict[str, object]
) -> None:
    cert, key = self_signed(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)

    with running_smtp(tls=server_side) as relay:
        cfg = SmtpConfig(host="127.0.0.1", port=relay.port, security="tls",
                         sender="soc@entity.example", recipients=["incident@ccb.example"],
                         timeout=5)  # fmt: skip
        unknown = SmtpChannel(cfg, None).send("k-tls", report_payload, NOW)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # OpenSSL's trust store, made ours
        trusted = SmtpChannel(cfg, None).send("k-tls", report_payload, NOW)

    assert isinstance(unknown, RetryLater)
    assert "SSLCertVerificationError" in unknown.reason
    assert isinstance(trusted, Delivered)
    assert relay.keys == ["k-tls"]


def test_a_report_that_cannot_render_is_refused_for_good_and_nothing_is_sent(
    smtp: SmtpServer, report_payload: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nis2triage.reports import render as render_module

    def broken(*_: object) -> bytes:
        raise ValueError("The row with index 3 is too high")

    monkeypatch.setattr(render_module, "pdf", broken)

    outcome = channel(smtp.port).send("k-broken", report_payload, NOW)

    # Retried, it would fail the same way until the deadline passed.
    assert isinstance(outcome, Rejected)
    assert "smtp channel: the early-warning report cannot be rendered" in outcome.reason
    assert smtp.messages == []
