"""The outbox on the real node: one key per report, each channel on its own schedule."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from nis2triage.notify.channel import Delivered, HandedOver, Outcome, Rejected, RetryLater
from nis2triage.notify.notifier import Notifier
from nis2triage.notify.outbox import Outbox
from nis2triage.store import Store

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@dataclass
class Scripted:
    """A channel answering from a script of outcomes, then Delivered; records the keys sent."""

    name: str
    script: list[Outcome] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def send(self, key: str, payload: dict[str, Any], now: datetime) -> Outcome:
        self.keys.append(key)
        return self.script.pop(0) if self.script else Delivered("ok")


def outbox_with(es: Elasticsearch, prefix: str, *channels: Scripted) -> tuple[Outbox, Store]:
    store = Store(es, prefix)
    store.ensure_indices()
    names = [c.name for c in channels]
    Notifier(store, "send", names, None, lambda: NOW).queue(
        "key-1", "incident_report", {"a": 1}, {}
    )
    return Outbox(store, {c.name: c for c in channels}, max_attempts=3), store


def test_a_failed_channel_is_retried_alone_while_the_other_has_delivered(
    es: Elasticsearch, index_name: str
) -> None:
    http, smtp = Scripted("http", [RetryLater("HTTP 503")]), Scripted("smtp")
    outbox, store = outbox_with(es, index_name, http, smtp)

    first = outbox.deliver_due(NOW)
    entry = store.get("outbox", "key-1")
    outbox.deliver_due(NOW + timedelta(seconds=1))
    outbox.deliver_due(NOW + timedelta(hours=1))

    assert (first.sent, first.retrying) == (1, 1)
    assert entry is not None and entry["status"] == "pending"
    assert entry["sent_at"] == "2026-03-02T09:00:00Z"
    assert smtp.keys == ["key-1"]
    assert http.keys == ["key-1", "key-1"]
    assert store.get("outbox", "key-1")["status"] == "sent"  # type: ignore[index]


@pytest.mark.parametrize(
    ("outcomes", "status", "sent"),
    [
        pytest.param([Rejected("HTTP 400"), Delivered("250")], "sent", True, id="one-refused"),
        pytest.param([Rejected("HTTP 400"), Rejected("550")], "failed", False, id="all-refused"),
        pytest.param([HandedOver("files written")], "handed_over", False, id="manual-only"),
    ],
)
def test_an_entry_is_sent_only_when_a_channel_confirmed(
    es: Elasticsearch, index_name: str, outcomes: list[Outcome], status: str, sent: bool
) -> None:
    channels = [Scripted(f"c{i}", [o]) for i, o in enumerate(outcomes)]
    outbox, store = outbox_with(es, index_name, *channels)

    outbox.deliver_due(NOW)

    entry = store.get("outbox", "key-1")
    assert entry is not None
    assert entry["status"] == status
    assert bool(entry["sent_at"]) is sent


def test_an_outbox_told_to_stop_sends_no_more_and_keeps_what_it_sent(
    es: Elasticsearch, index_name: str
) -> None:
    # The agent's lease was taken between two sends: the new holder delivers the rest.
    first, second = Scripted("http"), Scripted("smtp")
    outbox, store = outbox_with(es, index_name, first, second)
    answers = iter([True, False])
    outbox.may_send = lambda: next(answers)

    report = outbox.deliver_due(NOW)

    assert outbox.halted is True
    assert (first.keys, second.keys, report.sent) == (["key-1"], [], 1)
    deliveries = store.get("outbox", "key-1")["deliveries"]  # type: ignore[index]
    assert deliveries["http"]["status"] == "sent"
    assert deliveries["smtp"]["status"] == "pending"


def test_an_entry_another_agent_updated_meanwhile_halts_this_outbox_with_a_warning(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    @dataclass
    class Overtaken(Scripted):
        """Delivers while another agent (which took the lease) records the same entry."""

        def send(self, key: str, payload: dict[str, Any], now: datetime) -> Outcome:
            index = store.index("outbox")
            es.update(index=index, id=key, doc={"status": "sent"}, refresh=True)
            return super().send(key, payload, now)

    outbox, store = outbox_with(es, index_name, Overtaken("http"))

    with caplog.at_level(logging.WARNING, logger="nis2triage.notify.outbox"):
        outbox.deliver_due(NOW)

    [said] = [r.getMessage() for r in caplog.records]
    assert outbox.halted
    assert said.startswith("notification key-1 was updated by another agent")
    assert said.endswith("not recorded: sent")
    entry = store.get("outbox", "key-1")
    assert entry is not None and entry["attempts"] == 0  # the other agent's record stands


def test_a_stop_asked_between_entries_leaves_the_rest_pending(
    es: Elasticsearch, index_name: str
) -> None:
    http = Scripted("http")
    outbox, store = outbox_with(es, index_name, http)
    second = Notifier(store, "send", ["http"], None, lambda: NOW + timedelta(seconds=1))
    second.queue("key-2", "incident_report", {}, {})
    later = NOW + timedelta(minutes=1)
    asked = iter([True, False])
    outbox.keep_going = lambda: next(asked)  # the stop signal comes after the first send

    report = outbox.deliver_due(later)

    assert (report.sent, http.keys) == (1, ["key-1"])
    assert store.get("outbox", "key-2")["status"] == "pending"  # type: ignore[index]
    outbox.keep_going = lambda: True  # the next holder, or this agent restarted
    assert outbox.deliver_due(later).sent == 1 and http.keys == ["key-1", "key-2"]


def test_a_channel_taken_out_of_the_configuration_hands_its_entries_to_the_others(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    down = Scripted("http", [RetryLater("HTTP 503")])
    outbox, store = outbox_with(es, index_name, down)
    outbox.deliver_due(NOW)
    manual = Scripted("manual", [HandedOver("files written")])
    switched = Outbox(store, {"manual": manual}, max_attempts=3)

    with caplog.at_level(logging.WARNING, logger="nis2triage.notify.outbox"):
        report = switched.deliver_due(NOW + timedelta(hours=1))

    entry = store.get("outbox", "key-1")
    assert entry is not None and report.handed_over == 1
    assert (entry["status"], entry["channels"]) == ("handed_over", ["http", "manual"])
    assert entry["deliveries"]["http"]["status"] == "replaced"
    assert manual.keys == ["key-1"] and down.keys == ["key-1"]
    assert "queued for http, which incidents.channels no longer lists" in caplog.text


def test_a_channel_taken_out_leaves_the_entry_to_its_other_configured_channel(
    es: Elasticsearch, index_name: str
) -> None:
    outbox, store = outbox_with(
        es, index_name, Scripted("http", [RetryLater("503")]), Scripted("smtp", [RetryLater("421")])
    )
    outbox.deliver_due(NOW)
    smtp, manual = Scripted("smtp"), Scripted("manual")

    Outbox(store, {"smtp": smtp, "manual": manual}, max_attempts=3).deliver_due(
        NOW + timedelta(hours=1)
    )

    entry = store.get("outbox", "key-1")
    assert entry is not None and entry["status"] == "sent"
    assert entry["channels"] == ["http", "smtp"] and manual.keys == []
    assert entry["deliveries"]["http"]["status"] == "replaced"


def test_an_attempt_set_by_a_clock_that_ran_ahead_is_made_once_the_clock_is_right(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A bad hardware clock after a reboot, two days ahead, then set right by NTP.
    http = Scripted("http", [RetryLater("HTTP 503")])
    outbox, store = outbox_with(es, index_name, http)
    outbox.deliver_due(NOW)  # queued and tried at NOW ..
    store.es.update(index=store.index("outbox"), id="key-1", refresh=True, doc={
        "next_attempt": "2026-03-04T09:00:05Z",  # .. as if tried while the clock ran ahead
        "deliveries": {"http": {"status": "pending", "attempts": 1,
                                "next_attempt": "2026-03-04T09:00:05Z"}},
    })  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="nis2triage.notify.outbox"):
        report = outbox.deliver_due(NOW + timedelta(minutes=10))

    assert report.sent == 1 and http.keys == ["key-1", "key-1"]
    assert "the clock was ahead and has been set back" in caplog.text


def test_a_channel_configured_again_takes_its_delivery_back(
    es: Elasticsearch, index_name: str
) -> None:
    # http down, then smtp instead (down too), then http again, now up.
    outbox, store = outbox_with(es, index_name, Scripted("http", [RetryLater("503")]))
    outbox.deliver_due(NOW)
    smtp = Scripted("smtp", [RetryLater("421")])
    Outbox(store, {"smtp": smtp}, max_attempts=3).deliver_due(NOW + timedelta(hours=1))
    http = Scripted("http")

    Outbox(store, {"http": http}, max_attempts=3).deliver_due(NOW + timedelta(hours=2))

    entry = store.get("outbox", "key-1")
    assert entry is not None and entry["status"] == "sent"
    assert http.keys == ["key-1"] and smtp.keys == ["key-1"]
    assert {n: d["status"] for n, d in entry["deliveries"].items()} == {
        "http": "sent",
        "smtp": "replaced",
    }


def test_a_queued_report_is_logged_by_its_stage_and_incident(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # "incident_report <key> queued (dry-run)" read as the incident notification when it
    # was the early warning.
    store = Store(es, index_name)
    store.ensure_indices()
    meta = {"incident_id": "38928b0c1d2e3f4a5b6c", "stage": "early_warning"}

    with caplog.at_level(logging.INFO, logger="nis2triage.notify.notifier"):
        Notifier(store, "dry-run", ["manual"], None, lambda: NOW).queue(
            "key-9", "incident_report", {}, meta
        )

    assert caplog.messages == [
        "early_warning of incident 38928b0c1d2e (incident_report key-9) queued (dry-run) for manual"
    ]
