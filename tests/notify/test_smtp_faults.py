"""The SMTP channel through the outbox on the real node, against a relay on loopback (aiosmtpd)
that is down, answers 4xx or stalls: retried, then delivered once when it recovers (counted by
Message-ID and X-Idempotency-Key at the server). A relay that drips its greeting is cut off at
the session's deadline."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from elasticsearch import Elasticsearch

from nis2triage.config import SmtpConfig
from nis2triage.notify.channel import Delivered, RetryLater
from nis2triage.notify.notifier import Notifier
from nis2triage.notify.outbox import Outbox
from nis2triage.notify.smtp import SmtpChannel
from nis2triage.notify.soc import Soc
from nis2triage.store import Store

from report_sample import sample_payload
from smtp_server import SmtpServer, dripping_smtp, running_smtp

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KEY = "report-key-1"


def channel(port: int, deadline: float = 30.0) -> SmtpChannel:
    cfg = SmtpConfig(host="127.0.0.1", port=port, security="none", sender="soc@entity.example",
                     recipients=["incident@ccb.example"], timeout=1, deadline=deadline)  # fmt: skip
    return SmtpChannel(cfg, None)


def queued(es: Elasticsearch, prefix: str, smtp: SmtpServer) -> tuple[Outbox, Store]:
    store = Store(es, prefix)
    store.ensure_indices()
    notifier = Notifier(store, "send", ["smtp"], None, lambda: NOW)
    notifier.queue(KEY, "incident_report", sample_payload("early_warning"), {})
    return Outbox(store, {"smtp": channel(smtp.port)}, max_attempts=3), store


def warnings(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    """WARNING and worse from `logger` (an earlier test may leave the agent's loggers at INFO)."""
    return [r for r in caplog.records if r.name == logger and r.levelno >= logging.WARNING]


def down(smtp: SmtpServer) -> Callable[[], None]:
    smtp.stop()
    return smtp.start


def busy(smtp: SmtpServer) -> Callable[[], None]:
    smtp.script = ["451 4.3.0 try again later"] * 4  # one RCPT per try: four tries refused
    return lambda: None


def stalled(smtp: SmtpServer) -> Callable[[], None]:
    smtp.stall = 2.5  # past the 1 s timeout, at RCPT: the connection was accepted and greeted

    def recover() -> None:
        smtp.stall = 0.0

    return recover


@pytest.mark.parametrize(
    ("trouble", "reason"),
    [
        pytest.param(down, "ConnectionRefusedError", id="down-connection-refused"),
        pytest.param(busy, "SMTP 451: incident@ccb.example: 451 4.3.0 try again later",
                     id="4xx-then-accepted"),
        pytest.param(stalled, "no reply within 1 s", id="stall-timeout"),
    ],
)  # fmt: skip
def test_a_relay_in_trouble_gets_the_report_once_after_it_recovers(
    es: Elasticsearch,
    index_name: str,
    caplog: pytest.LogCaptureFixture,
    trouble: Callable[[SmtpServer], Callable[[], None]],
    reason: str,
) -> None:
    with running_smtp() as smtp:
        outbox, store = queued(es, index_name, smtp)
        recover = trouble(smtp)
        with caplog.at_level(logging.WARNING, logger="nis2triage.notify.outbox"):
            tries = [outbox.deliver_due(NOW + timedelta(minutes=10 * i)) for i in range(4)]
        recover()
        after = [outbox.deliver_due(NOW + timedelta(hours=1 + i)) for i in range(3)]

    lines = warnings(caplog, "nis2triage.notify.outbox")
    entry = store.get("outbox", KEY)
    assert [t.retrying for t in tries] == [1, 1, 1, 1]
    assert [a.sent for a in after] == [1, 0, 0]
    assert len(lines) == 4 and all(reason in r.getMessage() for r in lines)
    # max_attempts (3) reached: one ERROR saying to send it by hand, while retrying goes on.
    assert [r.levelname for r in lines].count("ERROR") == 1
    assert "send it by hand" in lines[2].getMessage()
    assert entry is not None and entry["status"] == "sent"
    assert smtp.keys == [KEY]
    assert [m["Message-ID"] for m in smtp.messages] == [f"<{KEY}@entity.example>"]


def test_a_greeting_dripped_a_byte_at_a_time_is_cut_off_at_the_deadline() -> None:
    with dripping_smtp(interval=0.05) as port:  # each byte well within the 1 s timeout
        started = time.monotonic()
        outcome = channel(port, deadline=2.0).send(KEY, sample_payload("early_warning"), NOW)
        took = time.monotonic() - started

    assert outcome == RetryLater(
        f"SMTP 127.0.0.1:{port}: session not finished within the 2 s deadline"
    )
    # Rendering the PDF takes a second or two first; without the deadline, never returns.
    assert 2.0 <= took < 10.0


def test_a_recipient_refused_while_another_accepted_is_escalated_not_resent(
    es: Elasticsearch, index_name: str
) -> None:
    store = Store(es, index_name)
    store.ensure_indices()
    with running_smtp() as smtp:
        smtp.script = ["550 5.1.1 mailbox unknown"]  # the first RCPT only
        cfg = SmtpConfig(host="127.0.0.1", port=smtp.port, security="none",
                         sender="soc@entity.example",
                         recipients=["incident@ccb.example", "ciso@entity.example"])  # fmt: skip
        relay = SmtpChannel(cfg, None, Soc(store, lambda: NOW))
        payload = {**sample_payload("early_warning"), "incident_id": "inc-1"}
        outcome = relay.send(KEY, payload, NOW)

    store.refresh("escalations")
    [hit] = es.search(index=f"{index_name}-escalations")["hits"]["hits"]
    assert outcome == Delivered("SMTP accepted for 1 of 2 recipient(s)")
    assert smtp.keys == [KEY]
    assert (hit["_source"]["kind"], hit["_source"]["incident_id"]) == ("recipient_refused", "inc-1")
    assert "incident@ccb.example: 550 5.1.1 mailbox unknown" in hit["_source"]["message"]
    assert "by hand" in hit["_source"]["message"]


def test_a_recipient_refused_is_escalated_for_each_requested_intermediate_report(
    es: Elasticsearch, index_name: str
) -> None:
    # Both were one escalation (incident, intermediate_report): the second request's
    # report, refused too, was never said to the SOC.
    store = Store(es, index_name)
    store.ensure_indices()
    with running_smtp() as smtp:
        cfg = SmtpConfig(host="127.0.0.1", port=smtp.port, security="none",
                         sender="soc@entity.example",
                         recipients=["incident@ccb.example", "ciso@entity.example"])  # fmt: skip
        relay = SmtpChannel(cfg, None, Soc(store, lambda: NOW))
        for n, ref in enumerate(("CCB-1", "CCB-2")):
            smtp.script = ["550 5.1.1 mailbox unknown"]  # the first RCPT only
            payload = sample_payload("intermediate_report")
            relay.send(f"key-{n}", {**payload, "incident_id": "inc-1", "request_ref": ref}, NOW)

    store.refresh("escalations")
    hits = es.search(index=f"{index_name}-escalations")["hits"]["hits"]
    said = sorted((h["_source"]["report"], h["_source"]["details"]["key"]) for h in hits)
    assert said == [("intermediate_report:CCB-1", "key-0"), ("intermediate_report:CCB-2", "key-1")]
