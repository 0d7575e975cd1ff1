"""The manual channel: files for a person and a SOC notification; sent only once submitted."""

from __future__ import annotations

import shlex
from pathlib import Path

from elasticsearch import Elasticsearch

from nis2triage.cli import build_parser
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
    outbox = Outbox(flow.desk.book.store, {"manual": ManualChannel(tmp_path, flow.soc)}, 3)

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
