"""A native rule naming a field no index it searches maps is said, once, with the field."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from nis2triage.config import RulesConfig
from nis2triage.rulerunner import RuleRunner
from nis2triage.rules.fieldcheck import (
    MAX_SAID,
    RECHECK_S,
    FieldCheck,
    filter_fields,
    named_fields,
)

from native_support import MAPPING, at, ev, index_events, make_rule


@pytest.mark.parametrize(
    ("given", "fields"),
    [
        pytest.param("event.outcome:failure", ["event.outcome"], id="one-term"),
        pytest.param(
            'user.name:"a:b" AND NOT (host.name:web OR -process.name:x)',
            ["user.name", "host.name", "process.name"],
            id="quoted-colon-and-operators",
        ),
        pytest.param("_exists_:user.nme AND url.path:/a:b/", ["url.path", "user.nme"], id="exists"),
        pytest.param("a.b:1&&c.d:2||!e.f:3", ["a.b", "c.d", "e.f"], id="symbol-operators"),
        pytest.param(r"file\.name\:x:y OR _id:1 OR host.*:a", ["file.name:x"], id="escaped"),
        pytest.param(
            "@timestamp:[2024-01-01T00:00:00 TO 2024-01-02T00:00:00} AND a.b:{10:00 TO *]",
            ["@timestamp", "a.b"],
            id="times-in-a-range",
        ),
        pytest.param(
            {
                "bool": {
                    "filter": [{"term": {"event.outcom": "failure"}}],
                    "must_not": [{"exists": {"field": "user.name"}}],
                }
            },
            ["event.outcom", "user.name"],
            id="dsl-bool",
        ),
        pytest.param(
            {"range": {"bytes": {"gte": 10, "boost": 2}}, "query_string": {"query": "a.b:1"}},
            ["bytes", "a.b"],
            id="dsl-range-and-query-string",
        ),
    ],
)
def test_filter_fields_are_the_fields_the_filter_tests(given: Any, fields: list[str]) -> None:
    assert filter_fields(given) == fields


def test_a_long_hyphenated_value_is_read_in_linear_time() -> None:
    # Every `-` inside a term started a read to the end of the run: 19 s for these 40 kB,
    # on the agent's loop, at the rule's first run.
    given = "host.name:" + "a-" * 20_000 + "b AND user.nme:x"

    started = time.monotonic()
    found = filter_fields(given)

    assert found == ["host.name", "user.nme"]
    assert time.monotonic() - started < 2.0


def test_named_fields_take_the_keys_and_the_filter() -> None:
    rule = make_rule(
        "change", "logs-x", query_key="user.name", compare_key="source.geo", filter="a.b:c"
    )

    assert named_fields(rule) == [
        ("timestamp_field", "@timestamp"),
        ("query_key", "user.name"),
        ("compare_key", "source.geo"),
        ("filter", "a.b"),
    ]


@pytest.fixture
def index(es: Elasticsearch) -> Iterator[str]:
    name = f"t-fieldcheck-{uuid.uuid4().hex[:8]}"
    index_events(es, name, [ev(m, user="alice", outcome="failure") for m in (1, 2, 3)])
    yield name
    es.options(ignore_status=404).indices.delete(index=name)


def _runner(es: Elasticsearch, *rules: Any) -> RuleRunner:
    times = iter([at(10), at(12), at(14), at(16)])
    settings = RulesConfig(
        initial_lookback=timedelta(minutes=10), max_lateness=timedelta(seconds=1)
    )
    return RuleRunner(es, settings, list(rules), [], clock=lambda: next(times))


def test_a_misspelt_key_and_filter_field_are_said_once(
    es: Elasticsearch, index: str, caplog: pytest.LogCaptureFixture
) -> None:
    rule = make_rule(
        "frequency", index, filter="event.outcom:failure AND event.outcome:failure",
        query_key="user.nme", num_events=2, timeframe="10m",
    )  # fmt: skip
    runner = _runner(es, rule)

    with caplog.at_level(logging.WARNING, logger="nis2triage.rules.fieldcheck"):
        runner.run_due()
        runner.run_due()

    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert said[0].startswith(
        f"rule test frequency: its query_key names user.nme, which no index of {index} maps "
        f"({index})"
    )
    assert "its filter names event.outcom," in said[1]


def test_a_rule_over_mapped_fields_says_nothing(
    es: Elasticsearch, index: str, caplog: pytest.LogCaptureFixture
) -> None:
    rule = make_rule(
        "frequency", index, filter={"term": {"event.outcome": "failure"}},
        query_key="user.name", num_events=2, timeframe="10m",
    )  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="nis2triage.rules.fieldcheck"):
        alerts = _runner(es, rule).run_due()

    assert [a.entity for a in alerts] == ["alice"]
    assert caplog.records == []


def test_an_index_without_events_is_checked_again_once_it_holds_some(
    es: Elasticsearch, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"t-fieldcheck-{uuid.uuid4().hex[:8]}"
    es.indices.create(index=name, mappings=MAPPING)
    rule = make_rule("any", name, filter="user.nme:alice")
    runner = _runner(es, rule)
    seconds = [0.0]
    runner.field_check.clock = lambda: seconds[0]

    try:
        with caplog.at_level(logging.WARNING, logger="nis2triage.rules.fieldcheck"):
            runner.run_due()
            es.index(index=name, document=ev(11, user="alice"), refresh=True)
            runner.run_due()
            quiet = list(caplog.records)
            seconds[0] = RECHECK_S
            runner.run_due()
    finally:
        es.options(ignore_status=404).indices.delete(index=name)

    assert quiet == []  # not asked again before RECHECK_S
    assert ["user.nme" in r.getMessage() for r in caplog.records] == [True]


def test_a_key_under_a_flattened_field_is_mapped(
    es: Elasticsearch, caplog: pytest.LogCaptureFixture
) -> None:
    # The node lists no field labels.env under a flattened `labels`, yet queries and
    # aggregations reach it: the rule below fires.
    name = f"t-fieldcheck-{uuid.uuid4().hex[:8]}"
    flattened = {"properties": {**MAPPING["properties"], "labels": {"type": "flattened"}}}
    es.indices.create(index=name, mappings=flattened)
    for minute in (1, 2):
        es.index(index=name, document={**ev(minute), "labels": {"env": "prod"}}, refresh=True)
    rule = make_rule(
        "frequency", name, filter="labels.env:prod OR lables.env:prod",
        query_key="labels.env", num_events=2, timeframe="10m",
    )  # fmt: skip

    try:
        with caplog.at_level(logging.WARNING, logger="nis2triage.rules.fieldcheck"):
            alerts = _runner(es, rule).run_due()
    finally:
        es.options(ignore_status=404).indices.delete(index=name)

    assert [a.entity for a in alerts] == ["prod"]
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "rule test frequency: its filter names lables.env"
    ]


def test_a_node_that_cannot_answer_yet_is_asked_again(
    es: Elasticsearch, caplog: pytest.LogCaptureFixture
) -> None:
    # Indices without an active shard (an agent started before its cluster recovered)
    # make the node answer 503: the check was marked done, and the typo never said.
    name = f"t-fieldcheck-{uuid.uuid4().hex[:8]}"
    unassigned = {"index.routing.allocation.require._name": "no-such-node"}
    settings = {**unassigned, "number_of_replicas": 0}
    es.indices.create(index=name, settings=settings, mappings=MAPPING, wait_for_active_shards="0")
    rule = make_rule("any", name, query_key="user.nme")
    seconds = [0.0]
    check = FieldCheck(clock=lambda: seconds[0])

    try:
        with caplog.at_level(logging.WARNING, logger="nis2triage.rules.fieldcheck"):
            check.check(es, [rule])
            quiet = said(caplog)
            es.indices.put_settings(
                index=name, settings={"index.routing.allocation.require._name": None}
            )
            es.cluster.health(index=name, wait_for_status="green", timeout="30s")
            es.index(index=name, document=ev(1, user="alice"), refresh=True)
            seconds[0] = RECHECK_S
            check.check(es, [rule])
    finally:
        es.options(ignore_status=404).indices.delete(index=name)

    assert quiet == []
    assert [m.split(",")[0] for m in said(caplog)] == [
        "rule test any: its query_key names user.nme"
    ]


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "nis2triage.rules.fieldcheck"]


def test_a_rule_naming_many_unmapped_fields_says_the_first_few_and_counts_the_rest(
    es: Elasticsearch, index: str, caplog: pytest.LogCaptureFixture
) -> None:
    # One line per field: a generated rule naming thousands wrote as many warnings.
    misspelt = [f"user.nme{i}" for i in range(30)]
    rule = make_rule(
        "frequency", index, filter=" OR ".join(f"{name}:x" for name in misspelt),
        num_events=2, timeframe="10m",
    )  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="nis2triage.rules.fieldcheck"):
        _runner(es, rule).run_due()

    said = [r.getMessage() for r in caplog.records]
    assert len(said) == MAX_SAID + 1
    for line, name in zip(said[:MAX_SAID], misspelt[:MAX_SAID], strict=True):
        assert f"its filter names {name}," in line
    rest = misspelt[MAX_SAID:]
    assert said[-1].startswith(f"rule test frequency: {len(rest)} more fields it names")
    assert said[-1].endswith(f"{', '.join(rest[:20])}, ...")
