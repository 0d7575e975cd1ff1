"""Ids that leave the organisation are keyed: the incident id and the report's idempotency key
are plain hashes of the entity (address) and the window, which a dictionary would undo. The
operator still names the incident by its local id, or by the reference the report carries."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from nis2triage.errors import IncidentError
from nis2triage.incidents.reporting import Names
from nis2triage.records import stable_id
from nis2triage.reports.stages import BY_REPORT

from .conftest import LAB, Clock, MakeFlow, alert


def test_the_report_carries_a_keyed_incident_reference_the_operator_can_use(
    make_flow: MakeFlow, clock: Clock
) -> None:
    flow = make_flow()
    flow.take([(alert(), LAB)])
    incident = flow.desk.book.find({"match_all": {}})[0]
    report = incident.reports["early_warning"]
    entry = flow.reporter.notifier.entry(report.outbox_id)
    assert entry is not None
    outgoing = entry["payload"]["incident_id"]

    assert outgoing.startswith("incident-") and incident.id not in json.dumps(entry["payload"])
    assert report.outbox_id != stable_id("report", incident.id, "early_warning")
    assert flow.desk.book.get(outgoing).id == incident.id
    sent = flow.reporter.submitted(outgoing, BY_REPORT["early_warning"], "alice", "CCB-9")
    assert sent.id == incident.id and sent.reports["early_warning"].reference == "CCB-9"


def test_without_pseudonyms_the_ids_stay_plain(make_flow: MakeFlow, clock: Clock) -> None:
    flow = make_flow(notifier={"pseudonymise": False})
    flow.take([(alert(), LAB)])
    incident = flow.desk.book.find({"match_all": {}})[0]
    entry = flow.reporter.notifier.entry(incident.reports["early_warning"].outbox_id)

    assert entry is not None and entry["payload"]["incident_id"] == incident.id
    assert incident.reports["early_warning"].outbox_id == stable_id(
        "report", incident.id, "early_warning"
    )


@pytest.mark.parametrize(
    ("names", "sent", "done"),
    [
        ("keep", "the Oracle account left open", "sent in clear"),  # --names-ok
        ("replace", "the {oracle} account left open", "replaced by pseudonyms"),  # the agent
    ],
)
def test_names_the_analyst_wrote_leave_as_the_caller_chose_and_are_said(
    make_flow: MakeFlow, clock: Clock, caplog: pytest.LogCaptureFixture,
    names: Names, sent: str, done: str,
) -> None:  # fmt: skip
    flow = make_flow(auto_early_warning=False)
    flow.take([(alert(users=("root", "oracle")), LAB)])
    incident = flow.desk.book.find({"match_all": {}})[0]
    root_cause = "The root cause: the Oracle account left open; mail ops@lab.example"
    flow.desk.record_impact(incident.id, "alice", {}, {"root_cause": root_cause})

    with caplog.at_level(logging.WARNING, logger="nis2triage.incidents.reporting"):
        _, key, _ = flow.reporter.queue(
            flow.desk.book.get(incident.id), BY_REPORT["early_warning"], "alice", names=names
        )

    entry = flow.reporter.notifier.entry(key)
    assert entry is not None
    pseudonymiser = flow.reporter.notifier.pseudonymiser
    assert pseudonymiser is not None
    oracle = pseudonymiser.pseudonym("oracle", "user")
    assert sent.format(oracle=oracle) in entry["payload"]["root_cause"]
    assert "ops@lab.example" not in json.dumps(entry["payload"])
    # The timeline says what the impact step recorded, not the text again.
    [step] = [t for t in entry["payload"]["timeline"] if t["action"] == "impact recorded"]
    assert step["why"] == "recorded root_cause"
    [said] = [r.getMessage() for r in caplog.records if "names" in r.getMessage()]
    assert f"root_cause names oracle, root, {done}" in said


def test_names_the_analyst_wrote_are_refused_before_queuing_until_reworded(
    make_flow: MakeFlow, clock: Clock
) -> None:
    flow = make_flow(auto_early_warning=False)
    flow.take([(alert(users=("root", "oracle")), LAB)])
    incident = flow.desk.book.find({"match_all": {}})[0]
    flow.desk.record_impact(incident.id, "alice", {}, {"root_cause": "Oracle account left open"})
    early = BY_REPORT["early_warning"]

    with pytest.raises(IncidentError, match="nothing queued: the report's root_cause names oracle"):
        flow.reporter.queue(flow.desk.book.get(incident.id), early, "alice", names="refuse")
    assert flow.desk.book.get(incident.id).reports == {}

    flow.desk.record_impact(incident.id, "alice", {}, {"root_cause": "a database account"})
    _, key, new = flow.reporter.queue(
        flow.desk.book.get(incident.id), early, "alice", names="refuse"
    )

    entry = flow.reporter.notifier.entry(key)
    assert new and entry is not None
    assert "racle" not in json.dumps(entry["payload"])


def test_names_written_without_their_domain_or_decomposed_are_refused_too(
    make_flow: MakeFlow, clock: Clock
) -> None:
    flow = make_flow(auto_early_warning=False)
    users = ("CORP\\jan.peeters", "jos\u00e9")
    seen = dataclasses.replace(alert(users=users), related_hosts=("jan-laptop.corp.example",))
    flow.take([(seen, LAB)])
    incident = flow.desk.book.find({"match_all": {}})[0]
    text = "jan-laptop was reimaged; jan.peeters and jose\u0301 were told"
    flow.desk.record_impact(incident.id, "alice", {}, {"description": text})

    with pytest.raises(IncidentError) as refused:
        flow.reporter.queue(
            flow.desk.book.get(incident.id), BY_REPORT["early_warning"], "alice", names="refuse"
        )

    assert "description names jan-laptop, jan.peeters, jos\u00e9" in str(refused.value)


def test_a_dry_run_report_asked_for_again_is_made_again_and_checked_again(
    make_flow: MakeFlow, clock: Clock
) -> None:
    flow = make_flow(auto_early_warning=False)
    flow.take([(alert(users=("root", "oracle")), LAB)])
    incident = flow.desk.book.find({"match_all": {}})[0]
    early = BY_REPORT["early_warning"]

    def ask(root_cause: str, remake: bool = True) -> tuple[str, bool]:
        flow.desk.record_impact(incident.id, "alice", {}, {"root_cause": root_cause})
        current = flow.desk.book.get(incident.id)
        _, key, new = flow.reporter.queue(current, early, "alice", names="refuse", remake=remake)
        return key, new

    def sent(key: str) -> str:
        entry = flow.reporter.notifier.entry(key)
        assert entry is not None and entry["status"] == "dry-run"
        return str(entry["payload"]["root_cause"])

    key, new = ask("a database account")
    assert new and sent(key) == "a database account"
    # Reworded with an account's name: refused as the first time, the report left as it was.
    with pytest.raises(IncidentError, match="root_cause names oracle"):
        ask("the Oracle account left open")
    assert sent(key) == "a database account"
    again, new = ask("a phishing mail")
    assert (again, new) == (key, False) and sent(key) == "a phishing mail"
    actions = [t.action for t in flow.desk.book.get(incident.id).history]
    assert actions.count("report made again") == 1
    # The agent's own path (no remake) leaves a made report as it is.
    ask("a weak password", remake=False)
    assert sent(key) == "a phishing mail"
