"""The final report and the incident's handling (NIS2 Art. 23(4)(d)-(e)), on the real node."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nis2triage.errors import IncidentError
from nis2triage.incidents.flow import IncidentFlow
from nis2triage.incidents.record import Incident
from nis2triage.reports.stages import BY_REPORT

from .conftest import LAB, T0, Clock, MakeFlow, alert


def notified(flow: IncidentFlow, clock: Clock) -> Incident:
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})
    clock.to(T0 + timedelta(hours=10))
    stage = BY_REPORT["incident_notification"]
    flow.reporter.queue(incident, stage, "alice")
    return flow.reporter.submitted(incident.id, stage, "alice", "CCB-2026-0042")


def test_a_final_report_is_refused_while_the_incident_runs_on(
    make_flow: MakeFlow, clock: Clock
) -> None:
    # Art. 23(4)(e): still ongoing at the final-report date, the entity sends a progress
    # report, and the final report within a month of the end of handling. A "final"
    # report made while open discharged both, so none was asked after handling ended.
    flow = make_flow()
    incident = notified(flow, clock)
    clock.to(T0 + timedelta(days=20))

    with pytest.raises(IncidentError, match=r"still open.*progress report.*close"):
        flow.reporter.queue(incident, BY_REPORT["final_report"], "alice")

    after = flow.desk.book.get(incident.id)
    assert "final_report" not in after.reports
    assert after.pending == ("progress_report",)


def test_the_final_report_is_made_once_the_incident_is_closed(
    make_flow: MakeFlow, clock: Clock
) -> None:
    flow = make_flow()
    incident = notified(flow, clock)
    clock.to(T0 + timedelta(days=40))
    closed = flow.desk.close(incident.id, "alice", "handled")

    made, _, new = flow.reporter.queue(closed, BY_REPORT["final_report"], "alice")

    assert new
    assert made.reports["final_report"].status == "dry-run"
    final = next(d for d in made.deadlines if d.key == "final_report")
    assert final.due == T0 + timedelta(days=70)
