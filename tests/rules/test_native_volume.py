"""flatline and spike: event counts per timeframe window, against the real node."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import yaml
from elasticsearch import Elasticsearch

from nis2triage.rules.loader import rule_from_dict

from native_support import CaseIndex, at, case_index, ev, index_events, make_rule, run, summary
from support import REPO


@pytest.fixture(scope="module")
def cases(es: Elasticsearch) -> Iterator[CaseIndex]:
    yield from case_index(es, "volume")


def every_minute(host: str, first: int, last: int) -> list[dict[str, object]]:
    return [ev(m, host=host) for m in range(first, last)]


FLATLINE = [
    pytest.param(every_minute("a", 0, 20), 1, [], id="steady-host-no-alert"),
    pytest.param(every_minute("b", 0, 10), 1, [("b", 0.0)], id="host-gone-silent"),
    pytest.param(every_minute("c", 0, 18), 3, [], id="exactly-threshold-no-alert"),
    pytest.param(every_minute("c", 0, 17), 3, [("c", 2.0)], id="threshold-minus-one-alerts"),
    pytest.param([ev(17, host="n")], 3, [], id="first-seen-inside-window-not-expected"),
    pytest.param([ev(0, host="old")], 1, [], id="seen-before-key-lookback-forgotten"),
    pytest.param([*every_minute("b", 0, 10), ev(16)], 1, [("b", 0.0)], id="keyless-docs-ignored"),
]


@pytest.mark.parametrize(("events", "threshold", "expected"), FLATLINE)
def test_flatline_per_host(
    es: Elasticsearch,
    cases: CaseIndex,
    events: list[dict[str, object]],
    threshold: int,
    expected: list[object],
) -> None:
    case = cases.add(events)
    rule = case.rule(
        "flatline", threshold=threshold, timeframe="5m", query_key="host.name", key_lookback="14m"
    )

    assert summary(run(es, rule, 19, 20)) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([], [("*", 0.0)], id="no-matching-event-is-silence"),
        pytest.param([ev(16)], [], id="one-event-is-enough"),
    ],
)
def test_flatline_without_key(
    es: Elasticsearch, cases: CaseIndex, events: list[dict[str, object]], expected: list[object]
) -> None:
    rule = cases.add(events).rule("flatline", threshold=1, timeframe="5m")

    assert summary(run(es, rule, 15, 20)) == expected


def test_flatline_on_an_index_that_never_arrived(es: Elasticsearch, index_name: str) -> None:
    rule = make_rule("flatline", f"{index_name}-*", threshold=1, timeframe="5m")

    assert summary(run(es, rule, 15, 20)) == [("*", 0.0)]


@pytest.mark.parametrize(("realert", "expected"), [("5m", 4), ("1h", 1)])
def test_flatline_replay_judges_every_window(
    es: Elasticsearch, cases: CaseIndex, realert: str, expected: int
) -> None:
    case = cases.add(every_minute("b", 0, 10))
    rule = case.rule(
        "flatline", threshold=1, timeframe="5m", query_key="host.name", realert=realert
    )

    alerts = run(es, rule, 0, 30)

    assert len(alerts) == expected
    assert alerts[0].start.minute == 10 and alerts[0].end.minute == 15


def counts(ref: int, cur: int, host: str = "web") -> list[dict[str, object]]:
    """`ref` events in [0, 5) and `cur` events in [5, 10)."""
    return [ev(i * 5 / max(ref, 1), host=host) for i in range(ref)] + [
        ev(5 + i * 5 / max(cur, 1), host=host) for i in range(cur)
    ]


SPIKE = [
    pytest.param(counts(2, 4), {}, [("web", 4.0, 4.0)], id="up-exactly-height"),
    pytest.param(counts(2, 3), {}, [], id="up-below-height"),
    pytest.param(counts(4, 2), {}, [("web", 2.0, 2.0)], id="down-exactly-height"),
    pytest.param(counts(4, 2), {"spike_type": "up"}, [], id="down-ignored-when-up-only"),
    pytest.param(counts(1, 9), {"threshold_ref": 2}, [], id="reference-too-small"),
    pytest.param(counts(2, 4), {"threshold_cur": 5}, [], id="current-too-small"),
    pytest.param(counts(0, 5), {}, [], id="no-baseline-no-alert"),
    pytest.param(counts(0, 5), {"alert_on_new_data": True}, [("web", 5.0, 0.0)], id="new-data"),
    pytest.param(counts(3, 3), {}, [], id="flat-no-alert"),
    pytest.param([], {}, [], id="empty-windows"),
]


@pytest.mark.parametrize(("events", "options", "expected"), SPIKE)
def test_spike(
    es: Elasticsearch,
    cases: CaseIndex,
    events: list[dict[str, object]],
    options: dict[str, object],
    expected: list[object],
) -> None:
    case = cases.add(events)
    rule = case.rule(
        "spike",
        timeframe="5m",
        spike_height=2,
        query_key="host.name",
        **{"spike_type": "both", **options},
    )

    alerts = run(es, rule, 9, 10)

    assert [(a.entity, a.score, a.threshold) for a in alerts] == expected


def test_spike_keeps_hosts_apart(es: Elasticsearch, cases: CaseIndex) -> None:
    case = cases.add(counts(2, 2, "quiet") + counts(1, 6, "busy"))
    rule = case.rule(
        "spike", timeframe="5m", spike_height=3, spike_type="up", query_key="host.name"
    )

    assert summary(run(es, rule, 9, 10)) == [("busy", 6.0)]


def test_the_shipped_silent_source_rule_leaves_the_agents_own_alerts_out(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The agent's alerts reach logs-* through its alias, with no host.name: counted per
    # key, they were "documents lacking host.name" in a warning at every first run.
    alerts = [
        {"@timestamp": at(m).isoformat(), "event": {"module": "nis2triage"}} for m in (15, 16)
    ]
    index_events(es, index_name, [*every_minute("b", 0, 10), *alerts])
    shipped = yaml.safe_load((REPO / "rules" / "detection" / "log-source-silent.yml").read_text())
    rule = rule_from_dict(
        {**shipped, "index": index_name, "timeframe": "5m", "key_lookback": "14m"}
    )

    with caplog.at_level(logging.INFO, logger="nis2triage.rules.search"):
        found = run(es, rule, 19, 20)

    assert summary(found) == [("b", 0.0)]
    assert "lack host.name" not in caplog.text
