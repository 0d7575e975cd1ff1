"""Alerts filed into incidents on the real node: correlation, windows, replays, awareness."""

from __future__ import annotations

from datetime import timedelta

import pytest

from .conftest import LAB, T0, MakeFlow, alert

TWO_ADDRESSES = [
    (alert("203.0.113.9"), LAB),
    (alert("198.51.100.7", T0 + timedelta(minutes=20)), LAB),
]


@pytest.mark.parametrize(
    ("correlate_by", "window", "incidents"),
    [
        pytest.param(["entity"], "1h", [1, 1], id="by-entity-two-incidents"),
        pytest.param(["asset"], "1h", [2], id="by-asset-one-campaign"),
        pytest.param(["asset"], "10m", [1, 1], id="by-asset-but-outside-the-window"),
    ],
)
def test_correlation_follows_the_configuration(
    make_flow: MakeFlow, correlate_by: list[str], window: str, incidents: list[int]
) -> None:
    flow = make_flow(correlate_by=correlate_by, window=window)

    flow.take(TWO_ADDRESSES)

    found = flow.desk.book.find({"match_all": {}})
    assert sorted(i.alert_count for i in found) == incidents


def test_a_replayed_batch_changes_nothing_and_queues_nothing(make_flow: MakeFlow) -> None:
    flow = make_flow()
    first = flow.take(TWO_ADDRESSES)
    before = flow.desk.book.find({"match_all": {}})

    assert flow.take(TWO_ADDRESSES) == 0
    assert first == 2
    assert flow.desk.book.find({"match_all": {}}) == before


def test_a_soc_alert_joins_an_open_incident_but_opens_none(make_flow: MakeFlow) -> None:
    flow = make_flow(correlate_by=["asset"])
    flow.take([(alert("192.0.2.1", route="soc"), LAB)])
    flow.take([(alert("192.0.2.2", T0 + timedelta(minutes=5)), LAB)])
    flow.take([(alert("192.0.2.3", T0 + timedelta(minutes=10), route="soc"), LAB)])

    [incident] = flow.desk.book.find({"match_all": {}})
    assert incident.alert_count == 2
    assert incident.routes == ("early_warning", "soc")


@pytest.mark.parametrize(
    ("auto_aware_routes", "status", "early_warnings"),
    [
        pytest.param(["contain", "early_warning"], "aware", 1, id="auto-aware"),
        pytest.param([], "triaged", 0, id="waits-for-an-analyst"),
    ],
)
def test_high_confidence_routes_make_the_entity_aware_and_queue_the_early_warning(
    make_flow: MakeFlow, auto_aware_routes: list[str], status: str, early_warnings: int
) -> None:
    flow = make_flow(auto_aware_routes=auto_aware_routes)

    assert flow.take([(alert(), LAB)]) == early_warnings
    assert flow.desk.book.find({"match_all": {}})[0].status == status
