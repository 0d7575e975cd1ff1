"""Delivery failures meet the deadline watchdog: an endpoint down for a day, a relay refusing for
good. The early warning is escalated while it is owed, delivered once when it can be, and the
escalation stops once the CCB has it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from elasticsearch import Elasticsearch

from nis2triage.incidents.flow import IncidentFlow
from nis2triage.notify import build
from nis2triage.notify.outbox import Outbox
from nis2triage.reports.stages import BY_REPORT
from nis2triage.store import Store

from .conftest import LAB, T0, Clock, MakeFlow, alert
from ccb_server import CcbServer, running_ccb
from smtp_server import SmtpServer, running_smtp

STEP = timedelta(minutes=30)


@pytest.fixture
def ccb() -> Iterator[CcbServer]:
    with running_ccb() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server


def outbox_of(flow: IncidentFlow, es: Elasticsearch, prefix: str) -> Outbox:
    cfg = flow.desk.cfg
    return Outbox(Store(es, prefix), build.channels(cfg, "tok", flow.soc), 100)


def run_until(flow: IncidentFlow, outbox: Outbox, clock: Clock, end: datetime) -> None:
    """The agent's cycle every half hour: deliver what is due, then follow and watch."""
    while clock.now < end:
        clock.to(clock.now + STEP)
        outbox.deliver_due(clock.now)
        flow.cycle(clock.now)


def escalations(es: Elasticsearch, prefix: str, report: str) -> list[str]:
    es.indices.refresh(index=f"{prefix}-escalations")
    hits = es.search(index=f"{prefix}-escalations", query={"term": {"report": report}}, size=20)
    return sorted(h["_source"]["kind"] for h in hits["hits"]["hits"])


def soc_lines(caplog: pytest.LogCaptureFixture, report: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "nis2triage.notify.soc" and f", {report}:" in r.getMessage()
    ]


def test_an_endpoint_down_for_a_day_escalates_then_delivers_once_and_goes_quiet(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str, ccb: CcbServer,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    ccb.down = True
    flow = make_flow("send", {"endpoint": ccb.url, "timeout": "1s", "deadline": "2s"})
    outbox = outbox_of(flow, es, index_name)
    flow.take([(alert(), LAB)])  # aware at T0: the early warning is due at T0 + 24 h

    with caplog.at_level(logging.WARNING, logger="nis2triage.notify.soc"):
        run_until(flow, outbox, clock, T0 + timedelta(hours=17))
        quiet_until_near = escalations(es, index_name, "early_warning")
        run_until(flow, outbox, clock, T0 + timedelta(hours=25))
    incident = flow.desk.book.find({"match_all": {}})[0]
    tried_while_down = len(ccb.received)
    lines_while_down = soc_lines(caplog, "early_warning")

    ccb.down = False
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nis2triage.notify.soc"):
        run_until(flow, outbox, clock, T0 + timedelta(hours=30))
    after = flow.desk.book.get(incident.id)
    delivered = ccb.idempotency_keys[tried_while_down:]

    assert quiet_until_near == []
    assert escalations(es, index_name, "early_warning") == ["deadline_near", "deadline_overdue"]
    assert len(lines_while_down) == 2 and "OVERDUE" in lines_while_down[1]
    assert incident.overdue == ("early_warning",) and incident.status == "aware"
    # One try per half-hourly cycle for 25 hours: the capped backoff (15 to 30 minutes with
    # jitter) never skips one, and never overflows (it did at attempt 45).
    assert tried_while_down == 50
    assert delivered == [after.reports["early_warning"].outbox_id]
    assert after.reports["early_warning"].status == "sent"
    assert after.status == "early_warning_sent"
    assert "early_warning" not in after.pending and after.overdue == ()
    assert soc_lines(caplog, "early_warning") == []
    assert escalations(es, index_name, "early_warning") == ["deadline_near", "deadline_overdue"]


def test_a_permanent_smtp_refusal_is_not_retried_and_the_soc_is_told_to_send_it_by_hand(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str, smtp: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    smtp.script = ["550 5.7.1 relaying denied"] * 10
    relay = {"host": "127.0.0.1", "port": smtp.port, "security": "none", "timeout": "2s",
             "sender": "soc@entity.example", "recipients": ["incident@ccb.example"]}  # fmt: skip
    flow = make_flow("send", channels=("smtp",), smtp=relay)
    outbox = outbox_of(flow, es, index_name)
    flow.take([(alert(), LAB)])

    with caplog.at_level(logging.WARNING):
        run_until(flow, outbox, clock, T0 + timedelta(hours=19))
    incident = flow.desk.book.find({"match_all": {}})[0]
    refused = [
        r
        for r in caplog.records
        if r.name == "nis2triage.notify.outbox" and r.levelno >= logging.WARNING
    ]
    kinds = escalations(es, index_name, "early_warning")
    flow.reporter.submitted(incident.id, BY_REPORT["early_warning"], "alice", "CCB-2026-7")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nis2triage.notify.soc"):
        run_until(flow, outbox, clock, T0 + timedelta(hours=26))

    assert smtp.rcpt_seen == 1 and smtp.messages == []  # one try: a 5xx is not retried
    assert [r.levelname for r in refused] == ["ERROR"]
    assert "550 5.7.1 relaying denied" in refused[0].getMessage()
    assert "send it by hand" in refused[0].getMessage()
    assert incident.reports["early_warning"].status == "failed"
    # The SOC is told at once, and the deadline is still chased: the report is owed.
    assert kinds == ["deadline_near", "delivery_failed"]
    assert soc_lines(caplog, "early_warning") == []  # submitted by hand: no overdue alarm
    assert flow.desk.book.get(incident.id).reports["early_warning"].reference == "CCB-2026-7"


def test_a_report_made_in_dry_run_is_sent_once_asked_for_again_in_send_mode(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str, ccb: CcbServer
) -> None:
    trial = make_flow()  # dry-run: the early warning is made, and goes nowhere
    trial.take([(alert(), LAB)])
    incident = trial.desk.book.find({"match_all": {}})[0]
    assert incident.reports["early_warning"].status == "dry-run"

    flow = make_flow("send", {"endpoint": ccb.url})
    outbox = outbox_of(flow, es, index_name)
    waiting = flow.reporter.notifier.dry_runs(T0 - timedelta(days=31))
    run_until(flow, outbox, clock, T0 + timedelta(hours=1))
    nothing_by_itself = len(ccb.received)
    early = BY_REPORT["early_warning"]
    _, key, new = flow.reporter.queue(flow.desk.book.get(incident.id), early, "alice")
    run_until(flow, outbox, clock, T0 + timedelta(hours=2))
    _, _, again = flow.reporter.queue(flow.desk.book.get(incident.id), early, "alice")
    run_until(flow, outbox, clock, T0 + timedelta(hours=3))

    assert [w["stage"] for w in waiting] == ["early_warning"]
    assert nothing_by_itself == 0
    assert (new, again) == (True, False)
    assert ccb.idempotency_keys == [key]
    assert flow.desk.book.get(incident.id).reports["early_warning"].status == "sent"


def test_awareness_recorded_by_a_clock_that_ran_ahead_is_escalated_once_it_is_right(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str
) -> None:
    flow = make_flow()
    clock.to(T0 + timedelta(days=2))  # the clock runs two days ahead ..
    flow.take([(alert(at=clock.now), LAB)])
    clock.to(T0)  # .. and is set right

    flow.cycle(clock.now)
    flow.cycle(clock.now + STEP)

    assert escalations(es, index_name, "aware_at") == ["clock_stepped_back"]


def test_a_dry_run_report_queued_again_by_a_command_that_stopped_is_sent_once(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str, ccb: CcbServer
) -> None:
    trial = make_flow()
    trial.take([(alert(), LAB)])
    incident = trial.desk.book.find({"match_all": {}})[0]
    key = incident.reports["early_warning"].outbox_id
    flow = make_flow("send", {"endpoint": ccb.url})
    outbox = outbox_of(flow, es, index_name)
    # What `incidents report` does before it records the report on the incident.
    early = BY_REPORT["early_warning"]
    flow.reporter.notifier.requeue(key, flow.reporter.payload(incident, early, "alice", key, None))

    run_until(flow, outbox, clock, T0 + timedelta(hours=1))
    followed = flow.desk.book.get(incident.id).reports["early_warning"].status
    _, _, again = flow.reporter.queue(flow.desk.book.get(incident.id), early, "alice")
    run_until(flow, outbox, clock, T0 + timedelta(hours=2))

    assert followed == "sent"  # the agent followed it into the outbox
    assert again is False
    assert ccb.idempotency_keys == [key]


def test_a_report_submitted_by_hand_while_the_endpoint_is_down_is_not_sent_again_after(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str, ccb: CcbServer,
) -> None:  # fmt: skip
    # The log says "still failing: send it by hand if its deadline is near"; the analyst
    # did, and recorded the CCB's reference. The endpoint back, the agent sent it again.
    ccb.down = True
    flow = make_flow("send", {"endpoint": ccb.url, "timeout": "1s", "deadline": "2s"})
    outbox = outbox_of(flow, es, index_name)
    flow.take([(alert(), LAB)])
    run_until(flow, outbox, clock, T0 + timedelta(hours=2))
    incident = flow.desk.book.find({"match_all": {}})[0]
    key = incident.reports["early_warning"].outbox_id
    flow.reporter.submitted(incident.id, BY_REPORT["early_warning"], "alice", "CCB-2026-8")
    tried_while_down = len(ccb.received)

    ccb.down = False
    run_until(flow, outbox, clock, T0 + timedelta(hours=4))

    assert tried_while_down >= 1 and ccb.received[tried_while_down:] == []
    entry = flow.reporter.notifier.entry(key)
    assert entry is not None and entry["status"] == "sent"
    assert entry["deliveries"]["http"]["status"] == "submitted_by_hand"
    after = flow.desk.book.get(incident.id).reports["early_warning"]
    assert (after.status, after.channel, after.reference) == ("sent", "manual", "CCB-2026-8")


def test_a_hand_submission_recorded_while_the_agent_delivers_is_no_lost_lease(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str, ccb: CcbServer,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # The analyst records the hand submission while the agent's request is on its way:
    # the agent's save then conflicts, which it read as another agent taking its lease.
    flow = make_flow("send", {"endpoint": ccb.url})
    outbox = outbox_of(flow, es, index_name)
    flow.take([(alert(), LAB)])
    incident = flow.desk.book.find({"match_all": {}})[0]
    stage = BY_REPORT["early_warning"]
    ccb.meanwhile = lambda: flow.reporter.submitted(incident.id, stage, "alice", "CCB-2026-9")

    with caplog.at_level(logging.INFO, logger="nis2triage.notify.outbox"):
        outbox.deliver_due(clock.now)

    assert len(ccb.received) == 1 and outbox.halted is False
    key = incident.reports["early_warning"].outbox_id
    entry = flow.reporter.notifier.entry(key)
    assert entry is not None and entry["submitted_by_hand"]["reference"] == "CCB-2026-9"
    said = [r.getMessage() for r in caplog.records if key in r.getMessage()]
    assert any("submitted by hand (CCB-2026-9)" in line and "http" in line for line in said)
    assert not any("another agent" in line for line in said)
