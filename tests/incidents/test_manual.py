"""The manual channel: files for a person and a SOC notification; sent only once submitted."""

from __future__ import annotations

import shlex
from datetime import timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from nis2triage.cli import build_parser
from nis2triage.errors import IncidentError
from nis2triage.notify.manual import ManualChannel
from nis2triage.notify.outbox import Outbox
from nis2triage.reports.stages import BY_REPORT

from .conftest import LAB, Clock, MakeFlow, alert


def test_a_manual_report_waits_for_the_person_who_submits_it(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str, tmp_path: Path
) -> None:
    flow = make_flow("send", channels=["manual"], auto_early_warning=False)
    flow.take([(alert(), LAB)])
    incident = flow.desk.book.find({"match_all": {}})[0]
    flow.reporter.queue(incident, BY_REPORT["early_warning"], "alice")
    outbox = Outbox(
        flow.desk.book.store, {"manual": ManualChannel(tmp_path, flow.soc, index_name)}, 3
    )

    assert outbox.deliver_due(clock()).handed_over == 1
    flow.cycle(clock())
    waiting = flow.desk.book.get(incident.id)
    files = sorted(p.suffix for p in (tmp_path / incident.id).iterdir())
    es.indices.refresh(index=f"{index_name}-escalations")
    told = es.search(
        index=f"{index_name}-escalations", query={"term": {"kind": "manual_submission"}}
    )
    flow.reporter.submitted(incident.id, BY_REPORT["early_warning"], "alice", "CCB-2026-17")
    sent = flow.desk.book.get(incident.id)

    assert files == [".json", ".md", ".pdf", ".png"]
    command = told["hits"]["hits"][0]["_source"]["message"].split("`")[1]
    filled = command.replace("<configuration file>", "agent.yml").replace("<CCB reference>", "R")
    args = build_parser().parse_args(shlex.split(filled)[1:])  # as the SOC would type it
    assert (args.id, args.stage, args.config) == (incident.id, "early-warning", "agent.yml")
    assert waiting.reports["early_warning"].status == "awaiting_submission"
    assert "early_warning" in waiting.pending
    assert (sent.reports["early_warning"].status, sent.reports["early_warning"].reference) == (
        "sent",
        "CCB-2026-17",
    )
    assert "early_warning" not in sent.pending
    assert sent.status == "early_warning_sent"


def test_a_submission_recorded_days_later_counts_from_when_it_was_made(
    make_flow: MakeFlow, clock: Clock
) -> None:
    # The notification submitted on the CCB's platform on Monday and recorded here on
    # Friday: the month to the final (or progress) report runs from Monday (Art. 23(4)(d)).
    flow = make_flow("send", channels=["manual"], auto_early_warning=False)
    flow.take([(alert(), LAB)])
    incident = flow.desk.book.find({"match_all": {}})[0]
    flow.reporter.queue(incident, BY_REPORT["early_warning"], "alice")
    flow.reporter.submitted(incident.id, BY_REPORT["early_warning"], "alice", "CCB-1")
    flow.reporter.queue(flow.desk.book.get(incident.id), BY_REPORT["incident_notification"], "al")
    made = clock() + timedelta(hours=2)
    clock.to(made + timedelta(days=4))

    stage = BY_REPORT["incident_notification"]
    flow.reporter.submitted(incident.id, stage, "alice", "CCB-2", at=made)
    flow.cycle(clock())
    after = flow.desk.book.get(incident.id)

    assert after.reports["incident_notification"].sent_at == made
    assert after.history[-1].at == made + timedelta(days=4)  # recorded when it was
    assert f"submitted at {made.isoformat()}" in after.history[-1].why
    # Still open: a progress report, in place of the final one, a month after submission.
    (closing,) = [d for d in after.deadlines if d.report == "progress_report"]
    assert closing.basis.startswith("one month after the notification sent")
    # A month from Monday, not from Friday's recording (which would be 32 days or more).
    assert made + timedelta(days=28) <= closing.due <= made + timedelta(days=31)


def test_a_submission_cannot_be_dated_before_the_report_was_made_or_after_now(
    make_flow: MakeFlow, clock: Clock
) -> None:
    flow = make_flow("send", channels=["manual"], auto_early_warning=False)
    flow.take([(alert(), LAB)])
    incident = flow.desk.book.find({"match_all": {}})[0]
    stage = BY_REPORT["early_warning"]
    flow.reporter.queue(incident, stage, "alice")

    for at, said in ((clock() - timedelta(hours=1), "before it was made"),
                     (clock() + timedelta(hours=1), "later than now")):  # fmt: skip
        with pytest.raises(IncidentError, match=said):
            flow.reporter.submitted(incident.id, stage, "alice", "CCB-3", at=at)

    assert flow.desk.book.get(incident.id).reports["early_warning"].status != "sent"


def test_the_submitted_command_takes_a_past_moment_with_its_offset_only() -> None:
    parser = build_parser()
    base = ["incidents", "submitted", "abc", "--stage", "early-warning", "--reference", "R"]

    args = parser.parse_args([*base, "--at", "2026-12-01T09:30+01:00"])

    assert args.at.isoformat() == "2026-12-01T09:30:00+01:00"
    for wrong in ("2026-12-01T09:30", "2999-01-01T00:00Z", "48h"):
        with pytest.raises(SystemExit):
            parser.parse_args([*base, "--at", wrong])


def test_each_requested_intermediate_report_is_said_with_the_command_that_records_it(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str, tmp_path: Path
) -> None:
    # Both were said as one escalation (incident, intermediate_report): the second request's
    # files were written and the SOC never told; and the command said left out --request,
    # so it answered that no intermediate report was made.
    flow = make_flow("send", channels=["manual"], auto_early_warning=False)
    flow.take([(alert(), LAB)])
    incident = flow.desk.book.find({"match_all": {}})[0]
    stage = BY_REPORT["intermediate_report"]
    outbox = Outbox(
        flow.desk.book.store, {"manual": ManualChannel(tmp_path, flow.soc, index_name)}, 3
    )
    for ref in ("CCB/2026/1", "CCB 2026/2"):
        flow.desk.request(incident.id, ref, clock() + timedelta(hours=48), "alice")
        flow.reporter.queue(flow.desk.book.get(incident.id), stage, "alice", ref)
        assert outbox.deliver_due(clock()).handed_over == 1

    es.indices.refresh(index=f"{index_name}-escalations")
    told = es.search(
        index=f"{index_name}-escalations", query={"term": {"kind": "manual_submission"}}
    )["hits"]["hits"]
    commands = [hit["_source"]["message"].split("`")[1] for hit in told]
    assert len(commands) == 2
    for command in commands:
        filled = command.replace("<configuration file>", "a.yml").replace("<CCB reference>", "R")
        args = build_parser().parse_args(shlex.split(filled)[1:])  # as the SOC would type it
        assert args.stage == "intermediate"
        flow.reporter.submitted(args.id, stage, "alice", args.reference, args.request)
    reports = flow.desk.book.get(incident.id).reports
    assert [reports[f"intermediate_report:{r}"].status for r in ("CCB/2026/1", "CCB 2026/2")] == [
        "sent",
        "sent",
    ]
