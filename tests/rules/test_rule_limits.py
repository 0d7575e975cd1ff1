"""Rule options that validate as types but cannot work: refused at load, with file and line.

Durations beyond a year overflowed at run time; they are now refused when the rule is
loaded, and the longest allowed ones run on the node.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from nis2triage.errors import ConfigError
from nis2triage.rules.loader import load_rule
from nis2triage.rules.native import FlatlineRule
from nis2triage.rules.options import MAX_DURATION

from native_support import CaseIndex, case_index, ev, run, summary

HEAD = "name: r\nindex: logs-*\n"
FREQUENCY = HEAD + "type: frequency\nnum_events: 20\ntimeframe: 5m\n"
FLATLINE = HEAD + "type: flatline\nthreshold: 1\ntimeframe: 5m\n"
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
        FREQUENCY.replace("5m", "{days: '2', hours: 1}"),
    ],
    ids=["year", "mapping-year", "terms-window", "text-number"],
)
def test_limits_themselves_still_load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rule.yml"
    path.write_text(text)

    assert load_rule(path).name == "r"


# --- against the node: the longest durations run ---


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
