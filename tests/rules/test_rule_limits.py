"""Rule options that validate as types but cannot work: refused at load, with file and line.

Durations beyond a year overflowed at run time, NaN and infinite thresholds never fired,
inverted bounds fired on every window, booleans were read as 1. Each is now refused when
the rule is loaded (list files: test_rule_limits_lists.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from nis2triage.errors import ConfigError
from nis2triage.rules.loader import load_rule
from nis2triage.rules.native import FlatlineRule, MetricAggregationRule
from nis2triage.rules.options import MAX_DURATION

from native_support import CaseIndex, case_index, ev, run, summary

HEAD = "name: r\nindex: logs-*\n"
FREQUENCY = HEAD + "type: frequency\nnum_events: 20\ntimeframe: 5m\n"
FLATLINE = HEAD + "type: flatline\nthreshold: 1\ntimeframe: 5m\n"
METRIC = HEAD + "type: metric_aggregation\nmetric_agg_key: b\nmetric_agg_type: avg\ntimeframe: 1h\n"
CARDINALITY = HEAD + "type: cardinality\ncardinality_field: a\ntimeframe: 1h\n"
SPIKE = HEAD + "type: spike\ntimeframe: 1h\nspike_type: up\n"
NEW_TERM = HEAD + "type: new_term\nfields: [a]\n"
TOO_LONG = r"is longer than the longest duration a rule may give, 366d \(a year\); write at most"

REFUSED = [
    pytest.param(
        FREQUENCY.replace("5m", "99999999999d"),
        5,
        "timeframe: '99999999999d' " + TOO_LONG,
        id="days-overflow-timedelta",
    ),
    pytest.param(
        FREQUENCY.replace("5m", "{days: 1e10}"),
        5,
        "timeframe: {'days': '1e10'} " + TOO_LONG,
        id="mapping-overflows-timedelta",
    ),
    pytest.param(
        FREQUENCY.replace("5m", "{days: [1]}"),
        5,
        r"timeframe: days: \[1\] is not a number; write e.g. {days: 5}",
        id="mapping-not-a-number",
    ),
    pytest.param(
        FREQUENCY.replace("5m", "{days: .nan}"),
        5,
        r"timeframe: {'days': nan} is not a number of days",
        id="mapping-nan",
    ),
    pytest.param(
        FREQUENCY.replace("5m", "{hours: true}"),
        5,
        r"timeframe: hours: True is not a number",
        id="mapping-boolean",
    ),
    pytest.param(
        FREQUENCY.replace("5m", "999999d"),
        5,
        "timeframe: '999999d' " + TOO_LONG,
        id="overflowed-at-run-time",
    ),
    pytest.param(FREQUENCY + "realert: 367d\n", 6, "realert: '367d' " + TOO_LONG, id="realert"),
    pytest.param(
        FLATLINE + "key_lookback: {weeks: 100000}\n",
        6,
        r"key_lookback: {'weeks': 100000} " + TOO_LONG,
        id="key-lookback",
    ),
    pytest.param(
        NEW_TERM + "terms_window: 1000000d\n",
        5,
        "terms_window: '1000000d' " + TOO_LONG,
        id="terms-window",
    ),
    pytest.param(
        FLATLINE.replace("5m", "0.4ms"),
        5,
        "timeframe: must be at least 1ms: Elasticsearch counts time in milliseconds",
        id="window-rounds-to-zero",
    ),
    pytest.param(
        METRIC + "max_threshold: .nan\n",
        7,
        r"max_threshold: nan is not a finite number; write a number",
        id="nan-threshold",
    ),
    pytest.param(
        METRIC + "min_threshold: -.inf\n",
        7,
        r"min_threshold: -inf is not a finite number",
        id="infinite-threshold",
    ),
    pytest.param(
        SPIKE + "spike_height: .inf\n",
        6,
        r"spike_height: inf is not a finite number",
        id="infinite-spike",
    ),
    pytest.param(
        SPIKE + "spike_height: 1.0e+19\n",
        6,
        r"spike_height: 1e\+19 is more than Elasticsearch can count \(9223372036854775807\), "
        "so the rule would never fire",
        id="unreachable-spike",
    ),
    pytest.param(
        FREQUENCY.replace("20", "true"),
        4,
        r"num_events: true is a boolean, not a number; write a number such as 5",
        id="boolean-count",
    ),
    pytest.param(
        SPIKE + "spike_height: 2\nthreshold_cur: yes\n",
        7,
        r"threshold_cur: true is a boolean, not a number",
        id="yaml-yes-count",
    ),
    pytest.param(
        FREQUENCY.replace("20", "99999999999999999999999"),
        4,
        r"num_events: 99999999999999999999999 is more than Elasticsearch can count",
        id="unreachable-count",
    ),
    pytest.param(
        METRIC + "max_threshold: 100\nmin_threshold: 200\n",
        7,
        r"max_threshold: 100 is below min_threshold \(200\), so every window would alert .*"
        r"the rule alerts outside \[min_threshold, max_threshold\]: swap them",
        id="inverted-thresholds",
    ),
    pytest.param(
        CARDINALITY + "min_cardinality: 5\nmax_cardinality: 2\n",
        7,
        r"max_cardinality: 2 is below min_cardinality \(5\), so every window would alert",
        id="inverted-cardinality",
    ),
    pytest.param(
        HEAD + "type: percentage_match\nmatch_bucket_filter: 'a:1'\ntimeframe: 1h\n"
        "max_percentage: 10\nmin_percentage: 50\n",
        6,
        r"max_percentage: 10 is below min_percentage \(50\)",
        id="inverted-percentage",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), REFUSED)
def test_refused_at_load_with_file_line_and_option(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "rule.yml"
    path.write_text(text)

    with pytest.raises(ConfigError, match=message) as raised:
        load_rule(path)

    assert (raised.value.path, raised.value.line) == (str(path), line)


@pytest.mark.parametrize(
    "text",
    [
        FREQUENCY.replace("5m", "366d") + "realert: 0s\n",
        FLATLINE.replace("5m", "{weeks: 52, days: 2}") + "key_lookback: 366d\n",
        NEW_TERM + "terms_window: 366d\n",
        METRIC + "max_threshold: 100\nmin_threshold: 100\n",
        CARDINALITY + "min_cardinality: 0\nmax_cardinality: 9223372036854775807\n",
        FREQUENCY.replace("5m", "{days: '2', hours: 1}"),
    ],
    ids=["year", "mapping-year", "terms-window", "equal-bounds", "largest-count", "text-number"],
)
def test_limits_themselves_still_load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rule.yml"
    path.write_text(text)

    assert load_rule(path).name == "r"


# --- against the node: the longest durations run, a misspelt metric field is said ---


@pytest.fixture(scope="module")
def cases(es: Elasticsearch) -> Iterator[CaseIndex]:
    yield from case_index(es, "limits")


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("frequency", {"num_events": 2, "timeframe": "366d", "query_key": "host.name"}),
        ("flatline", {"threshold": 5, "timeframe": "366d"}),
        (
            "flatline",
            {"threshold": 1, "timeframe": "1m", "key_lookback": "366d", "query_key": "host.name"},
        ),
        ("spike", {"spike_height": 2, "spike_type": "both", "timeframe": "366d"}),
        ("new_term", {"fields": ["host.name"], "terms_window": "366d"}),
        ("change", {"query_key": "host.name", "compare_key": "user.name", "timeframe": "366d"}),
    ],
    ids=["frequency", "flatline", "flatline-lookback", "spike", "new-term", "change"],
)
def test_the_longest_durations_run(
    es: Elasticsearch, cases: CaseIndex, kind: str, options: dict[str, object]
) -> None:
    case = cases.add([ev(1, host="web1", user="a"), ev(2, host="web1", user="b")])
    rule = case.rule(kind, realert="366d", **options)

    assert rule.suppression == MAX_DURATION
    assert isinstance(summary(run(es, rule, 0, 5)), list)


def test_the_longest_window_still_counts(es: Elasticsearch, cases: CaseIndex) -> None:
    case = cases.add([ev(1, host="web1"), ev(2, host="web1")])
    rule = case.rule("flatline", threshold=3, timeframe="366d")

    assert isinstance(rule, FlatlineRule) and rule.timeframe == timedelta(days=366)
    assert summary(run(es, rule, 0, 5)) == [("*", 2.0)]


@pytest.mark.parametrize(
    ("kind", "options", "option"),
    [
        (
            "metric_aggregation",
            {"metric_agg_key": "http.response.byts", "metric_agg_type": "max", "max_threshold": 10},
            "metric_agg_key",
        ),
        (
            "cardinality",
            {"cardinality_field": "source.ipp", "max_cardinality": 0},
            "cardinality_field",
        ),
    ],
    ids=["metric", "cardinality"],
)
def test_misspelt_measured_field_is_warned_once(
    es: Elasticsearch,
    cases: CaseIndex,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    options: dict[str, object],
    option: str,
) -> None:
    case = cases.add([ev(1, host="web1", bytes=500, ip="192.0.2.1")])
    rule = case.rule(kind, timeframe="5m", **options)
    rule = rule.model_copy(update={"name": f"{rule.name} {case.label}"})
    field = options.get("metric_agg_key", options.get("cardinality_field"))

    assert run(es, rule, 4, 5) == []
    assert run(es, rule, 4, 5) == []

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"rule {rule.name}: none of the 1 matching documents has {field}, so its windows "
        f"are judged without it; check {option} for a misspelling (said once per rule, "
        "then at INFO)"
    ]


def test_present_measured_field_is_not_warned(
    es: Elasticsearch, cases: CaseIndex, caplog: pytest.LogCaptureFixture
) -> None:
    case = cases.add([ev(1, host="web1", bytes=500), ev(2, host="web1")])
    rule = case.rule(
        "metric_aggregation",
        metric_agg_key="http.response.bytes",
        metric_agg_type="max",
        max_threshold=10,
        timeframe="5m",
    )

    assert summary(run(es, rule, 4, 5)) == [("*", 500.0)]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_metric_bound_beyond_any_count_is_a_double_and_loads(tmp_path: Path) -> None:
    # A sum of doubles passes 2**63; only counts cannot.
    path = tmp_path / "rule.yml"
    path.write_text(METRIC + "max_threshold: 1.0e+300\n")
    rule = load_rule(path)

    assert isinstance(rule, MetricAggregationRule) and rule.max_threshold == 1e300
