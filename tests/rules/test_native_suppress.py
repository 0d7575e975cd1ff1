"""Suppression (realert) across windows, and the rule state the caller persists."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from elasticsearch import Elasticsearch

from nis2triage.records import Alert
from nis2triage.rules import suppress
from nis2triage.rules.state import MAX_ENTRIES, RuleState

from native_support import T0, CaseIndex, at, case_index, ev, run


@pytest.fixture(scope="module")
def cases(es: Elasticsearch) -> Iterator[CaseIndex]:
    yield from case_index(es, "suppress")


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        pytest.param(3, 1, id="within-period-suppressed"),
        pytest.param(6, 2, id="exactly-after-period-alerts"),
        pytest.param(8, 2, id="after-period-alerts"),
    ],
)
def test_second_window_within_period(
    es: Elasticsearch, cases: CaseIndex, second: int, expected: int
) -> None:
    case = cases.add([ev(1, ip="10.1.1.1"), ev(second, ip="10.1.1.1")])
    rule = case.rule("any", query_key="source.ip", realert="5m")
    state = RuleState()

    alerts = run(es, rule, 0, 2, state) + run(es, rule, 2, 10, state)

    assert len(alerts) == expected


def test_suppression_is_per_entity(es: Elasticsearch, cases: CaseIndex) -> None:
    case = cases.add([ev(1, ip="10.1.1.1"), ev(2, ip="10.1.1.2"), ev(3, ip="10.1.1.1")])
    rule = case.rule("any", query_key="source.ip", realert="5m")

    assert [a.entity for a in run(es, rule, 0, 10)] == ["10.1.1.1", "10.1.1.2"]


def test_state_survives_serialisation(es: Elasticsearch, cases: CaseIndex) -> None:
    case = cases.add([ev(m, ip="10.1.1.1") for m in range(10)])
    rule = case.rule(
        "frequency", num_events=5, timeframe="5m", query_key="source.ip", realert="10m"
    )
    state = RuleState()

    first = run(es, rule, 0, 5, state)
    restored = RuleState.model_validate_json(state.model_dump_json())
    second = run(es, rule, 5, 10, restored)

    # The second burst ends at minute 9, within the 10m suppression after minute 4.
    assert (len(first), second, restored.last_alert) == (1, [], {"source.ip=10.1.1.1": at(4)})


def alert(entity: str, minute: float) -> Alert:
    moment = at(minute)
    return Alert(
        kind="rule",
        name="r",
        version="1",
        severity="low",
        timestamp=moment,
        start=moment,
        end=moment,
        score=1,
        threshold=1,
        entity_field="k",
        entity=entity,
        message="",
        index_pattern="i",
        query="",
    )


def test_replayed_alert_is_kept_for_its_idempotent_id() -> None:
    state = RuleState(last_alert={"k=a": at(1)})

    kept = suppress.apply([alert("a", 1), alert("a", 2)], state, timedelta(minutes=5))

    assert [a.timestamp for a in kept] == [at(1)]


def test_old_state_is_forgotten_and_capped() -> None:
    state = RuleState(
        last_alert={f"k{i}": T0 + timedelta(seconds=i) for i in range(MAX_ENTRIES + 3)}
    )

    state.forget_before({"last_alert": T0 + timedelta(seconds=1)})

    assert (len(state.last_alert), state.evicted, "k0" in state.last_alert) == (
        MAX_ENTRIES,
        2,
        False,
    )
