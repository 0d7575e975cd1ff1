"""cardinality, metric_aggregation and percentage_match: one value per window, against the node."""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from native_support import CaseIndex, case_index, ev, run, summary


@pytest.fixture(scope="module")
def cases(es: Elasticsearch) -> Iterator[CaseIndex]:
    yield from case_index(es, "metrics")


def addresses(user: str, distinct: int) -> list[dict[str, object]]:
    """`distinct` logins of `user` from as many addresses, plus a repeat of the first."""
    logins = [ev(i * 0.5, user=user, ip=f"192.0.2.{i}") for i in range(distinct)]
    return [*logins, ev(4, user=user, ip="192.0.2.0")] if distinct else logins


CARDINALITY = [
    pytest.param(addresses("eve", 4), {"max_cardinality": 3}, [("eve", 4.0)], id="above-max"),
    pytest.param(addresses("eve", 3), {"max_cardinality": 3}, [], id="at-max-no-alert"),
    pytest.param(addresses("bob", 1), {"min_cardinality": 2}, [("bob", 1.0)], id="below-min"),
    pytest.param(addresses("bob", 2), {"min_cardinality": 2}, [], id="at-min-no-alert"),
    pytest.param([ev(1, user="x")], {"max_cardinality": 0}, [], id="missing-field-not-counted"),
    pytest.param([ev(1, ip="192.0.2.9")], {"max_cardinality": 0}, [], id="docs-without-key"),
    pytest.param([], {"min_cardinality": 1}, [], id="empty-window-not-judged"),
]


@pytest.mark.parametrize(("events", "bounds", "expected"), CARDINALITY)
def test_cardinality_of_source_addresses_per_user(
    es: Elasticsearch,
    cases: CaseIndex,
    events: list[dict[str, object]],
    bounds: dict[str, int],
    expected: list[object],
) -> None:
    case = cases.add(events)
    rule = case.rule(
        "cardinality",
        cardinality_field="source.ip",
        query_key="user.name",
        timeframe="5m",
        **bounds,
    )

    assert summary(run(es, rule, 4, 5)) == expected


BYTES = [120, 80, 4000, 300, 250]

METRICS = [
    pytest.param("avg", {"max_threshold": 949}, statistics.mean(BYTES), id="avg-above"),
    pytest.param("avg", {"max_threshold": 950}, None, id="avg-at-max-no-alert"),
    pytest.param("max", {"max_threshold": 3999}, 4000.0, id="max-above"),
    pytest.param("min", {"min_threshold": 81}, 80.0, id="min-below"),
    pytest.param("sum", {"min_threshold": 5000}, float(sum(BYTES)), id="sum-below"),
    pytest.param("sum", {"min_threshold": 4750}, None, id="sum-at-min-no-alert"),
    pytest.param("value_count", {"max_threshold": 4}, 5.0, id="value-count-above"),
    pytest.param("cardinality", {"max_threshold": 4}, 5.0, id="cardinality-above"),
    pytest.param("avg", {"max_threshold": 1, "min_doc_count": 6}, None, id="too-few-documents"),
]


@pytest.mark.parametrize(("kind", "options", "expected"), METRICS)
def test_metric_of_response_bytes_per_host(
    es: Elasticsearch,
    cases: CaseIndex,
    kind: str,
    options: dict[str, float],
    expected: float | None,
) -> None:
    case = cases.add([ev(i, host="web1", bytes=b) for i, b in enumerate(BYTES)])
    rule = case.rule(
        "metric_aggregation",
        metric_agg_key="http.response.bytes",
        metric_agg_type=kind,
        query_key="host.name",
        timeframe="5m",
        **options,
    )

    alerts = run(es, rule, 4, 5)

    assert summary(alerts) == ([("web1", expected)] if expected is not None else [])


@pytest.mark.parametrize(("bound", "alerts"), [(249, 1), (250, 0)])
def test_metric_median(es: Elasticsearch, cases: CaseIndex, bound: float, alerts: int) -> None:
    # With five values the t-digest keeps each one, so the median is exact: 250.
    case = cases.add([ev(i, host="web1", bytes=b) for i, b in enumerate(BYTES)])
    rule = case.rule(
        "metric_aggregation",
        metric_agg_key="http.response.bytes",
        metric_agg_type="percentiles",
        percentile_range=50,
        max_threshold=bound,
        timeframe="5m",
    )

    assert len(run(es, rule, 4, 5)) == alerts


def statuses(ok: int, errors: int, host: str = "web1") -> list[dict[str, object]]:
    return [ev(i * 0.1, host=host, status=200) for i in range(ok)] + [
        ev(1 + i * 0.1, host=host, status=500) for i in range(errors)
    ]


PERCENTAGE = [
    pytest.param(statuses(3, 2), {"max_percentage": 39}, [("web1", 40.0)], id="above-max"),
    pytest.param(statuses(3, 2), {"max_percentage": 40}, [], id="at-max-no-alert"),
    pytest.param(statuses(9, 1), {"min_percentage": 11}, [("web1", 10.0)], id="below-min"),
    pytest.param(statuses(3, 2), {"max_percentage": 1, "min_denominator": 6}, [], id="too-few"),
    pytest.param([], {"min_percentage": 50}, [], id="empty-window-not-judged"),
]


@pytest.mark.parametrize(("events", "bounds", "expected"), PERCENTAGE)
def test_percentage_of_server_errors(
    es: Elasticsearch,
    cases: CaseIndex,
    events: list[dict[str, object]],
    bounds: dict[str, float],
    expected: list[object],
) -> None:
    case = cases.add(events)
    rule = case.rule(
        "percentage_match",
        match_bucket_filter="http.response.status_code:>=500",
        query_key="host.name",
        timeframe="5m",
        **bounds,
    )

    assert summary(run(es, rule, 4, 5)) == expected


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("avg", []), ("value_count", [("web1", 0.0)])],
    ids=["average-of-nothing-not-judged", "count-of-nothing-is-zero"],
)
def test_metric_field_missing(
    es: Elasticsearch, cases: CaseIndex, kind: str, expected: list[object]
) -> None:
    case = cases.add([ev(1, host="web1"), ev(2, host="web1")])
    rule = case.rule(
        "metric_aggregation",
        metric_agg_key="http.response.bytes",
        metric_agg_type=kind,
        query_key="host.name",
        timeframe="5m",
        min_threshold=1,
    )

    assert summary(run(es, rule, 4, 5)) == expected


def test_a_cardinality_alert_names_the_hosts_of_its_users_events(
    es: Elasticsearch, cases: CaseIndex
) -> None:
    # A count pulls no event, so its alert named no host for triage to find the asset by.
    logins = [ev(i * 0.5, user="eve", ip=f"192.0.2.{i}", host=f"vpn-0{i % 2}") for i in range(4)]
    others = [ev(1, user="bob", ip="192.0.2.50", host="mail-03")]
    case = cases.add([*logins, ev(4, user="eve", ip="192.0.2.0"), *others])
    rule = case.rule("cardinality", cardinality_field="source.ip", query_key="user.name",
                     timeframe="5m", max_cardinality=3)  # fmt: skip

    [alert] = run(es, rule, 4, 5)

    assert (alert.entity, alert.related_hosts) == ("eve", ("vpn-00", "vpn-01"))
