"""The GDPR duty (Art. 33(1)) as analysts record it on the real node: a 'no' taken back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from nis2triage.errors import IncidentError
from nis2triage.incidents.record import GDPR_KEY

from .conftest import LAB, T0, Clock, MakeFlow, alert


def test_personal_data_said_again_after_a_no_reopens_the_duty(
    make_flow: MakeFlow, clock: Clock
) -> None:
    flow = make_flow()
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})
    clock.to(T0 + timedelta(hours=1))
    flow.desk.record_impact(incident.id, "alice", {"personal_data_involved": True}, {})
    clock.to(T0 + timedelta(hours=2))
    flow.desk.record_impact(incident.id, "alice", {"personal_data_involved": False}, {})
    clock.to(T0 + timedelta(hours=3))

    found = flow.desk.record_impact(incident.id, "bob", {"personal_data_involved": True}, {})

    # The breach was known at the first 'yes': its 72 hours run from there (Art. 33(1)).
    assert found.gdpr is not None
    assert (found.gdpr.status, found.gdpr.due) == ("due", T0 + timedelta(hours=73))
    assert GDPR_KEY in found.pending


def test_a_reason_recorded_for_no_notification_stands_when_personal_data_is_said_again(
    make_flow: MakeFlow, clock: Clock
) -> None:
    flow = make_flow()
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})
    flow.desk.record_impact(incident.id, "alice", {"personal_data_involved": True}, {})
    why = {"not_required": "encrypted laptop, key not exposed: no risk to people"}
    flow.desk.record_impact(incident.id, "alice", {}, {}, why)

    found = flow.desk.record_impact(incident.id, "bob", {"personal_data_involved": True}, {})

    assert found.gdpr is not None
    assert found.gdpr.status == "not_required"
    assert GDPR_KEY not in found.pending


def test_a_breach_known_before_it_was_recorded_is_due_72_hours_from_then(
    make_flow: MakeFlow, clock: Clock
) -> None:
    # The clock ran from the recording: a DPO told at 09:00 and entered at 14:00 showed a
    # deadline five hours too late (Art. 33(1) counts from awareness).
    flow = make_flow()
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})
    clock.to(T0 + timedelta(hours=5))
    aware = {"aware_at": T0.isoformat()}

    found = flow.desk.record_impact(
        incident.id, "alice", {"personal_data_involved": True}, {}, aware
    )

    assert found.gdpr is not None
    assert (found.gdpr.aware_at, found.gdpr.due) == (T0, T0 + timedelta(hours=72))
    assert found.gdpr.corrections == 0


def test_the_awareness_of_an_open_duty_can_be_moved_and_the_reminder_comes_again(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str
) -> None:
    flow = make_flow()
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})
    clock.to(T0 + timedelta(hours=5))
    flow.desk.record_impact(incident.id, "alice", {"personal_data_involved": True}, {})
    flow.cycle(clock())

    earlier = {"aware_at": (T0 + timedelta(hours=1)).isoformat()}
    found = flow.desk.record_impact(incident.id, "bob", {}, {}, earlier)
    flow.cycle(clock())

    assert found.gdpr is not None
    assert (found.gdpr.due, found.gdpr.corrections) == (T0 + timedelta(hours=73), 1)
    es.indices.refresh(index=f"{index_name}-escalations")
    hits = es.search(index=f"{index_name}-escalations", query={"term": {"kind": "gdpr_reminder"}})
    # One reminder, saying the new due: the one said before would have the SOC late.
    said = [(h["_source"]["due"], h["_source"]["details"]) for h in hits["hits"]["hits"]]
    assert said == [("2026-03-05T10:00:00Z", {"was_due": "2026-03-05T14:00:00Z"})]


@pytest.mark.parametrize(
    ("facts", "aware", "error"),
    [
        pytest.param(
            {"personal_data_involved": True}, T0 + timedelta(hours=2), "later than now", id="future"
        ),
        pytest.param({}, T0, "add --personal-data yes first", id="no-breach-recorded"),
    ],
)
def test_an_awareness_in_the_future_or_without_a_breach_is_refused(
    facts: dict[str, Any], aware: datetime, error: str, make_flow: MakeFlow, clock: Clock
) -> None:
    flow = make_flow()
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})
    clock.to(T0 + timedelta(hours=1))

    with pytest.raises(IncidentError, match=error):
        flow.desk.record_impact(incident.id, "alice", facts, {}, {"aware_at": aware.isoformat()})

    assert flow.desk.book.find({"match_all": {}})[0].gdpr is None


def test_a_breach_awareness_moved_later_takes_back_the_overdue_it_made(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str
) -> None:
    # A mistyped day (3 March typed 28 February) made the GBA/APD duty overdue at once;
    # corrected, the duty is due in three days, and the incident and the SOC's escalation
    # kept saying it was overdue since 2 March 09:00.
    flow = make_flow()
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})
    clock.to(T0 + timedelta(hours=2))
    typo = {"aware_at": (T0 - timedelta(hours=72)).isoformat()}
    flow.desk.record_impact(incident.id, "alice", {"personal_data_involved": True}, {}, typo)
    flow.cycle(clock())
    assert GDPR_KEY in flow.desk.book.get(incident.id).overdue

    fixed = {"aware_at": (T0 + timedelta(hours=1)).isoformat()}
    flow.desk.record_impact(incident.id, "alice", {}, {}, fixed)
    flow.cycle(clock())

    assert GDPR_KEY not in flow.desk.book.get(incident.id).overdue
    es.indices.refresh(index=f"{index_name}-escalations")
    query = {"bool": {"filter": [{"term": {"report": GDPR_KEY}}]}}
    hits = es.search(index=f"{index_name}-escalations", query=query)["hits"]["hits"]
    said = sorted((h["_source"]["kind"], h["_source"]["due"]) for h in hits)
    assert ("deadline_overdue", "2026-03-02T09:00:00Z") not in said
    assert said == [("gdpr_reminder", "2026-03-05T10:00:00Z")]

    # Past the corrected due, it is overdue again, and said again.
    clock.to(T0 + timedelta(hours=74))
    flow.cycle(clock())
    assert GDPR_KEY in flow.desk.book.get(incident.id).overdue
    es.indices.refresh(index=f"{index_name}-escalations")
    hits = es.search(index=f"{index_name}-escalations", query=query)["hits"]["hits"]
    said = sorted((h["_source"]["kind"], h["_source"]["due"]) for h in hits)
    assert ("deadline_overdue", "2026-03-05T10:00:00Z") in said


def test_a_near_breach_deadline_moved_a_day_later_is_no_longer_said_near(
    make_flow: MakeFlow, clock: Clock, es: Elasticsearch, index_name: str
) -> None:
    # Said near (due 5 March 09:00), then the breach awareness corrected a day later: the
    # reminder said the new due, and the near escalation beside it kept the old one.
    flow = make_flow()
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})
    flow.desk.record_impact(incident.id, "alice", {"personal_data_involved": True}, {})
    clock.to(T0 + timedelta(hours=70))
    flow.cycle(clock())

    later = {"aware_at": (T0 + timedelta(hours=24)).isoformat()}
    flow.desk.record_impact(incident.id, "alice", {}, {}, later)
    flow.cycle(clock())

    es.indices.refresh(index=f"{index_name}-escalations")
    query = {"bool": {"filter": [{"term": {"report": GDPR_KEY}}]}}
    hits = es.search(index=f"{index_name}-escalations", query=query)["hits"]["hits"]
    said = sorted((h["_source"]["kind"], h["_source"]["due"]) for h in hits)
    assert said == [("gdpr_reminder", "2026-03-06T09:00:00Z")]
