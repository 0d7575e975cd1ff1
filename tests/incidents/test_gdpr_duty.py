"""The GDPR duty (Art. 33(1)) as analysts record it on the real node: a 'no' taken back."""

from __future__ import annotations

from datetime import timedelta

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
