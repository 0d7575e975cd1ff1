"""run_rule's boundary: bad windows refused, Elasticsearch's refusals explained."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from elasticsearch import Elasticsearch

from nis2triage.rules.engine import RuleExecutionError, run_rule
from nis2triage.rules.state import RuleState

from native_support import CaseIndex, at, case_index, ev


@pytest.fixture(scope="module")
def cases(es: Elasticsearch) -> Iterator[CaseIndex]:
    yield from case_index(es, "engine")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"query_key": "message"},
            r"rule 'test frequency': .*count on a keyword field",
            id="text-field-as-key",
        ),
        pytest.param(
            {"filter": "user.name:a AND"}, "fix the filter's Lucene syntax", id="bad-lucene"
        ),
    ],
)
def test_refusal_names_rule_and_fix(
    es: Elasticsearch, cases: CaseIndex, options: dict[str, str], message: str
) -> None:
    case = cases.add([ev(1, user="a") | {"message": "failed login"}])
    rule = case.rule("frequency", num_events=1, timeframe="5m", **options)

    with pytest.raises(RuleExecutionError, match=message):
        run_rule(es, rule, at(0), at(10), RuleState())


@pytest.mark.parametrize(
    ("start", "end"),
    [(datetime(2024, 3, 1), at(10)), (at(10), at(10)), (at(10), at(0))],
    ids=["naive", "empty", "reversed"],
)
def test_bad_window_is_refused(
    es: Elasticsearch, cases: CaseIndex, start: datetime, end: datetime
) -> None:
    rule = cases.add([]).rule("any")

    with pytest.raises(ValueError, match="need timezone-aware start < end"):
        run_rule(es, rule, start, end, RuleState())


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("any", {}),
        ("frequency", {"num_events": 2, "timeframe": "5m"}),
        (
            "cardinality",
            {"cardinality_field": "user.name", "max_cardinality": 1, "timeframe": "5m"},
        ),
    ],
    ids=["any", "frequency", "cardinality"],
)
def test_windows_follow_the_rules_time_field(
    es: Elasticsearch, cases: CaseIndex, kind: str, options: dict[str, object]
) -> None:
    # Ingested at minute 1, created at minute 31: only the rule's own time field places them.
    late = [ev(1, user=u) | {"event.created": at(31).isoformat()} for u in ("a", "b")]
    case = cases.add(late)
    by_creation = case.rule(kind, timestamp_field="event.created", realert="0s", **options)
    by_ingest = case.rule(kind, realert="0s", **options)

    assert run_rule(es, by_creation, at(30), at(35), RuleState())
    assert run_rule(es, by_ingest, at(30), at(35), RuleState()) == []
