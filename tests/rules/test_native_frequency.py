"""frequency: at least num_events within timeframe, sliding, per query_key, against the node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from nis2triage.rules.state import RuleState
from nis2triage.rules.types import frequency

from native_support import CaseIndex, case_index, ev, run, summary

IP = "10.0.0.5"


@pytest.fixture(scope="module")
def cases(es: Elasticsearch) -> Iterator[CaseIndex]:
    yield from case_index(es, "frequency")


CASES = [
    pytest.param([ev(m, ip=IP) for m in range(5)], [(IP, 5.0)], id="exactly-n-events-alerts"),
    pytest.param([ev(m, ip=IP) for m in range(4)], [], id="n-minus-one-does-not"),
    pytest.param(
        [ev(m * 1.25, ip=IP) for m in range(5)], [(IP, 5.0)], id="span-equal-to-timeframe"
    ),
    pytest.param([ev(m * 1.3, ip=IP) for m in range(5)], [], id="span-over-timeframe"),
    pytest.param([], [], id="empty-window"),
    pytest.param([ev(m) for m in range(6)], [], id="events-without-query-key-ignored"),
    pytest.param(
        [ev(m, ip=f"10.0.0.{m % 2}") for m in range(8)], [], id="counted-per-key-not-together"
    ),
    pytest.param([ev(m, ip=IP) for m in range(10)], [(IP, 5.0), (IP, 5.0)], id="count-resets"),
]


@pytest.mark.parametrize(("events", "expected"), CASES)
def test_frequency_per_source(
    es: Elasticsearch, cases: CaseIndex, events: list[dict[str, object]], expected: list[object]
) -> None:
    case = cases.add(events)
    rule = case.rule("frequency", num_events=5, timeframe="5m", query_key="source.ip", realert="0s")

    assert summary(run(es, rule, 0, 15)) == expected


def test_without_query_key_counts_everything(es: Elasticsearch, cases: CaseIndex) -> None:
    case = cases.add([ev(m, ip=f"10.0.0.{m % 2}") for m in range(4)] + [ev(4)])
    rule = case.rule("frequency", num_events=5, timeframe="5m")

    assert summary(run(es, rule, 0, 15)) == [("*", 5.0)]


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        pytest.param(3, [(IP, 5.0)], id="events-before-start-count"),
        pytest.param(5, [], id="trigger-before-start-belongs-to-earlier-run"),
    ],
)
def test_window_reaches_back_a_timeframe(
    es: Elasticsearch, cases: CaseIndex, start: int, expected: list[object]
) -> None:
    case = cases.add([ev(m, ip=IP) for m in range(5)])
    rule = case.rule("frequency", num_events=5, timeframe="5m", query_key="source.ip")

    assert summary(run(es, rule, start, 15)) == expected


def test_consecutive_runs_do_not_recount_used_events(es: Elasticsearch, cases: CaseIndex) -> None:
    case = cases.add([ev(m, ip=IP) for m in range(7)])
    rule = case.rule("frequency", num_events=5, timeframe="5m", query_key="source.ip", realert="0s")
    state = RuleState()

    first, second = run(es, rule, 0, 5, state), run(es, rule, 5, 10, state)

    assert (len(first), second) == (1, [])


def test_alert_reports_documents_without_the_key(es: Elasticsearch, cases: CaseIndex) -> None:
    case = cases.add([ev(m, ip=IP) for m in range(5)] + [ev(1), ev(2)])
    rule = case.rule("frequency", num_events=5, timeframe="5m", query_key="source.ip")

    (alert,) = run(es, rule, 0, 15)

    assert alert.evidence["documents_without_query_key"] == 2
    assert alert.related_ips == (IP,)


def test_coarse_buckets_for_a_very_busy_key(
    es: Elasticsearch, cases: CaseIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 700 events of one key, over a budget of 600 buckets: 2-second buckets instead of 1 ms.
    case = cases.add([ev(i * 0.0071, ip=IP) for i in range(700)])
    rule = case.rule(
        "frequency", num_events=100, timeframe="5m", query_key="source.ip", realert="0s"
    )
    exact = run(es, rule, 0, 15)
    monkeypatch.setattr(frequency, "BUCKET_BUDGET", 600)

    coarse = run(es, rule, 0, 15)

    assert [a.score for a in exact] == [100.0] * 7
    # Events sharing a bucket (4 to 5 of them) count together, so triggers overshoot.
    assert len(coarse) == 6 and all(100 < a.score <= 105 for a in coarse)


def test_an_alert_names_the_hosts_its_events_came_from(es: Elasticsearch, cases: CaseIndex) -> None:
    # With no host, triage could not find the asset an attack hit: the demo's brute force
    # on its high-importance server stayed on the `soc` route (new-user run).
    hits = [ev(m, ip=IP, host="web-01") for m in range(3)] + [ev(3, ip=IP, host="db-02")]
    elsewhere = [ev(m, ip="10.0.0.9", host="mail-03") for m in range(2)]
    case = cases.add([*hits, ev(4, ip=IP), *elsewhere])
    rule = case.rule("frequency", num_events=5, timeframe="5m", query_key="source.ip", realert="0s")

    [alert] = run(es, rule, 0, 15)

    assert alert.related_hosts == ("db-02", "web-01")
