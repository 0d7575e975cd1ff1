"""Awareness recorded after the fact (NIS2 Art. 23(4): the clocks run from awareness), on
the real node."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nis2triage.errors import IncidentError

from .conftest import LAB, T0, Clock, MakeFlow, alert


def test_awareness_recorded_late_counts_from_when_the_entity_became_aware(
    make_flow: MakeFlow, clock: Clock
) -> None:
    # The SOC confirmed the incident on the phone at 10:00 UTC; the analyst records it at
    # 15:00. The early warning is due 24 hours after 10:00, not after 15:00.
    flow = make_flow(auto_aware_routes=[])
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})
    clock.to(T0 + timedelta(hours=6))

    aware = flow.desk.ack(incident.id, "alice", "confirmed by phone", at=T0 + timedelta(hours=1))

    due = {d.key: d.due for d in aware.deadlines}
    assert aware.aware_at == T0 + timedelta(hours=1)
    assert due["early_warning"] == T0 + timedelta(hours=25)
    assert due["incident_notification"] == T0 + timedelta(hours=73)
    assert aware.history[-1].at == T0 + timedelta(hours=6)
    assert "aware since" in aware.history[-1].why


def test_awareness_in_the_future_is_refused(make_flow: MakeFlow, clock: Clock) -> None:
    flow = make_flow(auto_aware_routes=[])
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})

    with pytest.raises(IncidentError, match="later than now"):
        flow.desk.ack(incident.id, "alice", "typo", at=T0 + timedelta(hours=1))


def test_an_aware_incident_takes_an_earlier_awareness_and_refuses_a_later_one(
    make_flow: MakeFlow, clock: Clock
) -> None:
    # Made aware by its first alert (T0); the analyst learns the entity knew at T0 - 2 h.
    # `--at` on an incident already aware was accepted and ignored without a word.
    flow = make_flow()
    flow.take([(alert(), LAB)])
    [incident] = flow.desk.book.find({"match_all": {}})
    assert incident.aware_at == T0
    clock.to(T0 + timedelta(hours=3))

    earlier = flow.desk.ack(incident.id, "alice", "told by phone", at=T0 - timedelta(hours=2))

    due = {d.key: d.due for d in earlier.deadlines}
    assert earlier.aware_at == T0 - timedelta(hours=2)
    assert due["early_warning"] == T0 + timedelta(hours=22)
    with pytest.raises(IncidentError, match="can only move it earlier"):
        flow.desk.ack(incident.id, "alice", "typo", at=T0 + timedelta(hours=1))
