"""Some shards fail a rule's search: the rule's window is held back and tried again.

Two indices under one pattern map `labels.code` differently (long and keyword):
a query for a word then fails on the long index's shard and succeeds on the
other, which Elasticsearch answers with 200 and `_shards.failures`. Counting on
that answer would under-report, so the runner keeps the window and its state.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from elasticsearch import Elasticsearch, helpers

from nis2triage.config import RulesConfig
from nis2triage.errors import PartialResultsError
from nis2triage.rulerunner import RuleRunner
from nis2triage.rules.search import count

from native_support import at, ev, make_rule, run

FILTER = {"term": {"labels.code": "abc"}}


@pytest.fixture
def pattern(es: Elasticsearch) -> Iterator[str]:
    stem = f"t-partial-{uuid.uuid4().hex[:8]}"
    for suffix, kind in (("words", "keyword"), ("numbers", "long")):
        mapping = {
            "properties": {
                "@timestamp": {"type": "date"},
                "labels": {"properties": {"code": {"type": kind}}},
                "host": {"properties": {"name": {"type": "keyword"}}},
            }
        }
        es.indices.create(index=f"{stem}-{suffix}", mappings=mapping)
    events = [ev(m, host="h1") | {"labels": {"code": "abc"}} for m in (1, 2, 3)]
    helpers.bulk(es, ({"_index": f"{stem}-words", "_source": e} for e in events))
    es.index(index=f"{stem}-numbers", document=ev(2, host="h2") | {"labels": {"code": 7}})
    es.indices.refresh(index=f"{stem}-*")
    yield f"{stem}-*"
    es.options(ignore_status=404).indices.delete(index=f"{stem}-*")


def test_a_count_with_a_failed_shard_is_refused_not_under_reported(
    es: Elasticsearch, pattern: str
) -> None:
    stem = pattern.removesuffix("-*")
    # The failing index named, so that "fix that index's mapping" can be followed.
    with pytest.raises(
        PartialResultsError,
        match=rf"1 shard\(s\) of {re.escape(pattern)} \(in {stem}-numbers\) failed",
    ):
        count(es, pattern, FILTER)


def test_a_frequency_rule_over_a_failed_shard_raises_partial_results(
    es: Elasticsearch, pattern: str
) -> None:
    rule = make_rule("frequency", pattern, filter=FILTER, num_events=3, timeframe="10m")

    with pytest.raises(PartialResultsError, match="tried again next cycle"):
        run(es, rule, 0, 10)


def test_the_runner_holds_the_window_says_it_once_and_catches_up_when_shards_answer(
    es: Elasticsearch, pattern: str, caplog: pytest.LogCaptureFixture
) -> None:
    rule = make_rule("frequency", pattern, filter=FILTER, num_events=3, timeframe="10m")
    rule = rule.model_copy(update={"query_key": "host.name"})
    times = iter([at(10), at(12), at(14)])
    settings = RulesConfig(
        initial_lookback=timedelta(minutes=10), max_lateness=timedelta(seconds=1)
    )
    runner = RuleRunner(es, settings, [rule], [], clock=lambda: next(times))

    with caplog.at_level(logging.WARNING, logger="nis2triage.rulerunner"):
        first, second = runner.run_due(), runner.run_due()
        es.indices.delete(index=pattern.replace("*", "numbers"))
        third = runner.run_due()

    said = [r.getMessage() for r in caplog.records]
    assert (first, second) == ([], [])
    assert runner.progress[rule.name].paused is None
    assert [(a.name, a.entity) for a in third] == [(rule.name, "h1")]
    assert len([m for m in said if "results incomplete, not advanced" in m]) == 1
    assert said[-1] == f"rule {rule.name}: every shard answers again"


def test_a_document_rule_over_an_unavailable_shard_waits_instead_of_pausing(
    es: Elasticsearch, pattern: str
) -> None:
    # An index whose shard can be allocated nowhere: opening a point in time over the
    # pattern answers 503, as it does while a node restarts.
    red = pattern.replace("*", "red")
    es.indices.create(
        index=red,
        settings={"index.routing.allocation.require._name": "nowhere", "number_of_replicas": 0},
        wait_for_active_shards="0",
    )
    rule = make_rule("any", pattern, query_key="host.name", realert="0s")
    times = iter([at(10), at(12)])
    settings = RulesConfig(
        initial_lookback=timedelta(minutes=10), max_lateness=timedelta(seconds=1)
    )
    runner = RuleRunner(es, settings, [rule], [], clock=lambda: next(times))

    try:
        held = runner.run_due()
    finally:
        es.indices.delete(index=red)
    caught_up = runner.run_due()

    assert held == []
    assert runner.progress[rule.name].paused is None
    assert sorted(a.entity for a in caught_up) == ["h1", "h1", "h1", "h2"]


def test_a_window_held_over_an_hour_is_said_as_an_error_once(
    es: Elasticsearch, pattern: str, caplog: pytest.LogCaptureFixture
) -> None:
    rule = make_rule("frequency", pattern, filter=FILTER, num_events=3, timeframe="10m")
    times = iter([at(10), at(40), at(80), at(120)])
    settings = RulesConfig(
        initial_lookback=timedelta(minutes=10), max_lateness=timedelta(seconds=1)
    )
    runner = RuleRunner(es, settings, [rule], [], clock=lambda: next(times))

    with caplog.at_level(logging.WARNING, logger="nis2triage.rulerunner"):
        for _ in range(4):
            runner.run_due()

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith(f"rule {rule.name}: its window has been held for 1:20:00")
