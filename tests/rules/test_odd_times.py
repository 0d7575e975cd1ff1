"""Events whose time field holds several times, one far outside any range a datetime holds.

Elasticsearch sorts and aggregates such a document by one of its times (the smallest
ascending) while another puts it in the rule's range. The rules must still count it,
once, at a time inside their window, and never stop on it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from elasticsearch import Elasticsearch, helpers

from nis2triage.rules import winlog_mapping
from nis2triage.rules.sigma import LogSource, SigmaQuery
from nis2triage.rules.sigma_run import RunSettings
from nis2triage.rules.sigma_run import run_rule as run_sigma
from nis2triage.rules.state import RuleState
from tests.rules.native_support import at, ev, index_events, make_rule, run

# Year -1199 and year 14645: both outside what Python's datetime can hold.
LONG_AGO_MS = -100_000_000_000_000
FAR_AHEAD_MS = 400_000_000_000_000


def two_times(minute: float, far_ms: int, **fields: object) -> dict[str, object]:
    doc = ev(minute, **fields)
    doc["@timestamp"] = [far_ms, doc["@timestamp"]]
    return doc


@pytest.fixture
def odd(es: Elasticsearch, index_name: str) -> str:
    events = [
        two_times(1, LONG_AGO_MS, user="a", process="mimikatz.exe"),
        two_times(2, FAR_AHEAD_MS, user="a", process="cmd.exe"),
        ev(3, user="a", process="cmd.exe"),
    ]
    index_events(es, index_name, events)
    return index_name


def test_any_rule_keeps_the_event_at_the_window_edge(es: Elasticsearch, odd: str) -> None:
    rule = make_rule("any", odd, query_key="user.name")

    alerts = run(es, rule, 0, 10)

    # Sorted by its year -1199 time, the first event stands at the window's start.
    assert [(a.entity, a.start) for a in alerts] == [("a", at(0)), ("a", at(2)), ("a", at(3))]


def test_blacklist_names_the_event_whatever_its_other_time(es: Elasticsearch, odd: str) -> None:
    rule = make_rule("blacklist", odd, compare_key="process.name", blacklist=["mimikatz.exe"])

    alerts = run(es, rule, 0, 10)

    assert [a.message for a in alerts] == [
        "test blacklist: process.name=mimikatz.exe is on the blacklist"
    ]


def test_frequency_counts_each_event_once_inside_its_window(
    es: Elasticsearch, index_name: str
) -> None:
    # Three events sharing a far time as well: counted there again, they would make a
    # second alert, in year 14645.
    index_events(es, index_name, [two_times(m, FAR_AHEAD_MS, user="c") for m in (1, 2, 3)])
    rule = make_rule("frequency", index_name, num_events=3, timeframe="5m", query_key="user.name")

    alerts = run(es, rule, 0, 10)

    assert [(a.entity, a.score, a.end) for a in alerts] == [
        ("c", 3.0, at(3) + timedelta(milliseconds=1))
    ]


def test_change_and_new_term_read_the_far_times_inside_their_ranges(
    es: Elasticsearch, odd: str
) -> None:
    change = make_rule("change", odd, query_key="user.name", compare_key="process.name")
    state = RuleState()

    first = run(es, change, 0, 10, state)
    assert [a.message.split(": ", 1)[1] for a in first] == [
        "process.name for user.name=a changed from 'mimikatz.exe' to 'cmd.exe'"
    ]
    # The next window recalls the last value before it: the year-14645 time stays inside.
    run(es, change, 10, 20, state)
    assert state.previous["a"].at < at(10)

    new = run(es, make_rule("new_term", odd, fields=["user.name"]), 0, 10)
    assert [(a.entity, a.start, a.end) for a in new] == [("a", at(0), at(10))]


def test_sigma_rule_reports_times_inside_its_window(es: Elasticsearch, index_name: str) -> None:
    es.indices.create(index=index_name, **winlog_mapping.index_body())
    doc = {
        "@timestamp": [LONG_AGO_MS, at(1).isoformat(), FAR_AHEAD_MS],
        "process": {"command_line": "mimikatz sekurlsa"},
        "host": {"name": "ws1"},
    }
    helpers.bulk(es, [{"_index": index_name, "_source": doc}], refresh=True)
    rule = SigmaQuery(
        rule_id="r-odd",
        title="Mimikatz",
        level="high",
        tags=(),
        logsource=LogSource("windows", "process_creation"),
        query="process.command_line:*mimikatz*",
        fields=(),
        path="rules/odd.yml",
        version="",
    )

    alerts = run_sigma(es, rule, RunSettings(index_name), at(0), at(10))

    assert [(a.entity, a.evidence["first"], a.evidence["last"]) for a in alerts] == [
        ("ws1", at(0).isoformat(), (at(10) - timedelta(milliseconds=1)).isoformat())
    ]
