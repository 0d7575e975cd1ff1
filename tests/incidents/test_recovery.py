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
