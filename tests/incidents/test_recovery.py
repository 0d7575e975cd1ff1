"""A report queued in the outbox but never recorded on its incident (a crash in between)."""

from __future__ import annotations

from nis2triage.incidents.reporting import report_key
from nis2triage.reports.stages import BY_REPORT

from .conftest import LAB, Clock, MakeFlow, alert


def test_the_next_cycle_records_a_report_the_outbox_holds(
    make_flow: MakeFlow, clock: Clock
) -> None:
    flow = make_flow(auto_early_warning=False)
    flow.take([(alert(), LAB)])
    incident = flow.desk.book.find({"match_all": {}})[0]
    stage = BY_REPORT["early_warning"]
    _, key = report_key(incident.id, stage, None, flow.reporter.secret)
    # What Reporter.queue does before it records the report on the incident, and no more.
    body = flow.reporter.payload(incident, stage, "nis2triage", key, None)
    flow.reporter.notifier.queue(key, "incident_report", body, {"incident_id": incident.id})

    flow.cycle(clock())
    flow.cycle(clock())

    recovered = flow.desk.book.get(incident.id)
    assert recovered.reports["early_warning"].outbox_id == key
    assert [t.action for t in recovered.history].count("report queued") == 1


def test_an_early_warning_owed_but_never_queued_is_queued_at_the_next_cycle(
    make_flow: MakeFlow, clock: Clock
) -> None:
    flow = make_flow()
    # What Desk.take does before IncidentFlow queues the early warning, and no more.
    [incident] = flow.desk.take([(alert(), LAB)])
    assert incident.status == "aware" and incident.reports == {}

    flow.cycle(clock())
    flow.cycle(clock())

    _, key = report_key(incident.id, BY_REPORT["early_warning"], None, flow.reporter.secret)
    assert flow.desk.book.get(incident.id).reports["early_warning"].outbox_id == key
    assert flow.reporter.notifier.entry(key) is not None


def test_a_report_queued_in_dry_run_then_recovered_in_send_mode_can_be_sent(
    make_flow: MakeFlow, clock: Clock
) -> None:
    trial = make_flow()
    # What Desk.take and Reporter.queue do in dry-run before the report is recorded.
    [incident] = trial.desk.take([(alert(), LAB)])
    stage = BY_REPORT["early_warning"]
    _, key = report_key(incident.id, stage, None, trial.reporter.secret)
    body = trial.reporter.payload(incident, stage, "nis2triage", key, None)
    trial.reporter.notifier.queue(key, "incident_report", body, {"incident_id": incident.id})
    flow = make_flow("send", {"endpoint": "http://127.0.0.1:9/ccb"})

    flow.cycle(clock())
    recorded = flow.desk.book.get(incident.id).reports["early_warning"].status
    _, _, new = flow.reporter.queue(flow.desk.book.get(incident.id), stage, "alice")

    entry = flow.reporter.notifier.entry(key)
    assert recorded == "dry-run"  # as the outbox holds it, not "queued"
    assert new and entry is not None and entry["status"] == "pending"


def test_a_report_sent_after_a_dry_run_carries_none_of_the_dry_runs_fields(
    make_flow: MakeFlow, clock: Clock
) -> None:
    trial = make_flow()
    trial.take([(alert(), LAB)])
    incident = trial.desk.book.find({"match_all": {}})[0]
    key = incident.reports["early_warning"].outbox_id
    stale = {"impact": {"stale_field": 1}, "stale_top": "x"}
    trial.reporter.notifier.store.es.update(
        index=trial.reporter.notifier.store.index("outbox"), id=key,
        doc={"payload": stale}, refresh=True,
    )  # fmt: skip
    flow = make_flow("send", {"endpoint": "http://127.0.0.1:9/ccb"})

    flow.reporter.queue(flow.desk.book.get(incident.id), BY_REPORT["early_warning"], "alice")

    entry = flow.reporter.notifier.entry(key)
    assert entry is not None and entry["status"] == "pending"
    assert "stale_top" not in entry["payload"]
    assert "stale_field" not in entry["payload"].get("impact", {})
    assert entry["payload"]["report_type"] == "early_warning"
