"""The watchdog in the agent's cycle, with a clock the test moves: each deadline escalates once
when near (6 h before), then is marked overdue once past."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from elasticsearch import Elasticsearch

from nis2triage.incidents.flow import IncidentFlow
from nis2triage.incidents.record import Incident
from nis2triage.reports.stages import BY_REPORT

from .conftest import LAB, T0, Clock, MakeFlow, alert

Setup = Callable[[IncidentFlow, Incident, Clock], None]


def nothing(flow: IncidentFlow, incident: Incident, clock: Clock) -> None:
    pass


def notified_then_closed(flow: IncidentFlow, incident: Incident, clock: Clock) -> None:
    stage = BY_REPORT["incident_notification"]
    clock.to(T0 + timedelta(hours=10))
    flow.reporter.queue(incident, stage, "alice")
    flow.reporter.submitted(incident.id, stage, "alice", "CCB-2026-0042")
    clock.to(T0 + timedelta(days=2))
    flow.desk.close(incident.id, "alice", "attacker blocked, passwords rotated")


def requested(flow: IncidentFlow, incident: Incident, clock: Clock) -> None:
    flow.desk.request(incident.id, "CCB-1", T0 + timedelta(hours=48), "alice")


def personal_data(flow: IncidentFlow, incident: Incident, clock: Clock) -> None:
    clock.to(T0 + timedelta(hours=2))
    flow.desk.record_impact(incident.id, "alice", {"personal_data_involved": True}, {})


CASES = [
    pytest.param("early_warning", nothing, T0 + timedelta(hours=24), id="early-warning-24h"),
    pytest.param("incident_notification", nothing, T0 + timedelta(hours=72), id="notification-72h"),
    # One month after the notification's latest moment (5 March 09:00 UTC), across the
    # 29 March change to summer time: 30 elapsed days, 4 April 09:00 UTC... minus the hour
    # the Brussels wall clock skips, 08:00 UTC, the earliest reading.
    pytest.param("progress_report", nothing, datetime.fromisoformat("2026-04-04T08:00:00+00:00"),
                 id="progress-one-month"),
    # Notification sent 2 March 19:00 UTC; handled 4 March, so the final report is due one
    # month after the submission: 1 April 20:00 Brussels summer time = 18:00 UTC.
    pytest.param("final_report", notified_then_closed,
                 datetime.fromisoformat("2026-04-01T18:00:00+00:00"), id="final-after-submission"),
    pytest.param("intermediate_report:CCB-1", requested, T0 + timedelta(hours=48),
                 id="intermediate-as-requested"),
    pytest.param("gdpr_breach_notification", personal_data, T0 + timedelta(hours=74),
                 id="gdpr-72h-from-its-own-awareness"),
]  # fmt: skip


def escalations(es: Elasticsearch, prefix: str, key: str) -> list[str]:
    es.indices.refresh(index=f"{prefix}-escalations")
    hits = es.search(index=f"{prefix}-escalations", query={"term": {"report": key}}, size=10)
    return sorted(
        h["_source"]["kind"]
        for h in hits["hits"]["hits"]
        if h["_source"]["kind"] != "gdpr_reminder"
    )


@pytest.mark.parametrize(("key", "setup", "due"), CASES)
def test_each_deadline_escalates_once_when_near_and_is_marked_overdue_once_past(
    key: str, setup: Setup, due: datetime, make_flow: MakeFlow, clock: Clock,
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    flow = make_flow()
    flow.take([(alert(), LAB)])
    setup(flow, flow.desk.book.find({"match_all": {}})[0], clock)

    clock.to(due - timedelta(hours=6, minutes=1))
    flow.cycle(clock())
    assert escalations(es, index_name, key) == []
    clock.to(due - timedelta(hours=5))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nis2triage.notify.soc"):
        flow.cycle(clock())
        flow.cycle(clock())
    assert escalations(es, index_name, key) == ["deadline_near"]
    assert sum(key in r.getMessage() for r in caplog.records) == 1

    clock.to(due + timedelta(minutes=1))
    flow.cycle(clock())
    flow.cycle(clock())
    assert escalations(es, index_name, key) == ["deadline_near", "deadline_overdue"]
    assert key in flow.desk.book.find({"match_all": {}})[0].overdue


def test_personal_data_raises_the_gdpr_reminder_at_once_and_only_once(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str
) -> None:
    flow = make_flow()
    flow.take([(alert(), LAB)])
    personal_data(flow, flow.desk.book.find({"match_all": {}})[0], clock)

    flow.cycle(clock())
    flow.cycle(clock())

    es.indices.refresh(index=f"{index_name}-escalations")
    hits = es.search(index=f"{index_name}-escalations", query={"term": {"kind": "gdpr_reminder"}})
    assert [h["_source"]["due"] for h in hits["hits"]["hits"]] == ["2026-03-05T11:00:00Z"]
    assert "GBA/APD" in hits["hits"]["hits"][0]["_source"]["message"]


def test_the_oldest_incident_is_watched_behind_more_than_a_thousand_newer_ones(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str
) -> None:
    # The watch read the 1,000 newest incidents with reports owed: past them, the oldest,
    # the likeliest to be overdue, was never escalated.
    from elasticsearch import helpers

    flow = make_flow()
    flow.take([(alert(), LAB)])
    oldest = flow.desk.book.find({"match_all": {}})[0]
    # Due long after the check, so that only the oldest is escalated.
    later = tuple(
        d.model_copy(update={"due": d.due + timedelta(days=10)}) for d in oldest.deadlines
    )
    newer = (
        oldest.model_copy(
            update={
                "id": f"newer-{n:04d}",
                "opened_at": T0 + timedelta(minutes=n),
                "deadlines": later,
            }
        )
        for n in range(1, 1001)
    )
    target = f"{index_name}-incidents"
    docs = ({"_index": target, "_id": i.id, "_source": i.to_doc(clock())} for i in newer)
    helpers.bulk(es, docs, refresh=True)

    clock.to(T0 + timedelta(hours=24, minutes=1))
    report = flow.watchdog.run(clock())

    assert report.watched == 1001
    assert report.overdue >= 1
    assert "deadline_overdue" in escalations(es, index_name, "early_warning")
    assert "early_warning" in flow.desk.book.get(oldest.id).overdue


def test_a_near_deadline_moved_earlier_is_said_again_with_its_new_due(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # Said near at 19:00 for 24 hours after awareness; then the analyst records that the
    # entity knew two hours earlier. The escalation kept saying the old, later due.
    flow = make_flow()
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})
    clock.to(T0 + timedelta(hours=19))
    flow.cycle(clock())
    flow.desk.ack(incident.id, "alice", "seen on the firewall first", at=T0 - timedelta(hours=2))

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nis2triage.notify.soc"):
        flow.cycle(clock())
        flow.cycle(clock())

    es.indices.refresh(index=f"{index_name}-escalations")
    query = {"bool": {"filter": [{"term": {"report": "early_warning"}}]}}
    hits = es.search(index=f"{index_name}-escalations", query=query)["hits"]["hits"]
    assert [(h["_source"]["kind"], h["_source"]["due"]) for h in hits] == [
        ("deadline_near", "2026-03-03T07:00:00Z")
    ]
    assert hits[0]["_source"]["details"]["was_due"] == "2026-03-03T09:00:00Z"
    said = [r.getMessage() for r in caplog.records if "early_warning" in r.getMessage()]
    assert len(said) == 1 and "due moved from 2026-03-03T09:00:00Z" in said[0]


def test_a_near_deadline_moved_into_the_past_is_said_overdue_and_no_longer_near(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str
) -> None:
    # Said near at 19:00 (due 3 March 09:00); the analyst then records that the entity
    # knew ten hours before the first alert: due 2 March 23:00, past. The overdue
    # escalation said so, and the near one beside it kept saying 3 March 09:00.
    flow = make_flow()
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})
    clock.to(T0 + timedelta(hours=19))
    flow.cycle(clock())
    flow.desk.ack(incident.id, "alice", "seen on the firewall first", at=T0 - timedelta(hours=10))

    flow.cycle(clock())

    es.indices.refresh(index=f"{index_name}-escalations")
    query = {"bool": {"filter": [{"term": {"report": "early_warning"}}]}}
    hits = es.search(index=f"{index_name}-escalations", query=query)["hits"]["hits"]
    assert [(h["_source"]["kind"], h["_source"]["due"]) for h in hits] == [
        ("deadline_overdue", "2026-03-02T23:00:00Z")
    ]


def test_a_clock_set_back_a_minute_past_a_due_keeps_it_overdue(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str
) -> None:
    # A due moved later unmarks the overdue; a clock stepped back across the due does not.
    flow = make_flow()
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})
    clock.to(T0 + timedelta(hours=24, minutes=1))
    flow.cycle(clock())
    clock.to(T0 + timedelta(hours=23, minutes=59))

    flow.cycle(clock())

    assert "early_warning" in flow.desk.book.get(incident.id).overdue
    assert "deadline_overdue" in escalations(es, index_name, "early_warning")
