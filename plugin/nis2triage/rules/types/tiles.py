"""Consecutive timeframe-long windows ending at the run's end, counted by Elasticsearch.

flatline, spike, cardinality, metric_aggregation and percentage_match judge
whole windows, as ElastAlert does at each run: [end - timeframe, end), and,
when a run covers more than one timeframe (a replay), the windows before it,
back to the run's start. One composite aggregation pages through every
(query_key, window) pair; a date histogram offset by the run's end makes the
windows end exactly there. Empty windows have no bucket: callers read them as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nis2triage.rules import lucene, search
from nis2triage.rules.native import KeyedRule
from nis2triage.rules.search import Run, from_millis, length_millis, millis


@dataclass(frozen=True)
class Tiles:
    """Window starts in ms, oldest first; the last window ends at the run's end."""

    length: int
    starts: tuple[int, ...]
    references: int

    @property
    def judged(self) -> tuple[int, ...]:
        """The windows this run judges; the ones before them only serve as references."""
        return self.starts[self.references :]

    @property
    def timeframe(self) -> timedelta:
        return timedelta(milliseconds=self.length)

    def bounds(self, start: int) -> tuple[datetime, datetime]:
        return from_millis(start), from_millis(start + self.length)


def tiles(run: Run, timeframe: timedelta, references: int = 0) -> Tiles:
    length = length_millis(timeframe)
    end = millis(run.end)
    judged = max(1, math.ceil((end - millis(run.start)) / length))
    starts = tuple(end - k * length for k in range(judged + references, 0, -1))
    return Tiles(length, starts, references)


Windows = dict[Any, dict[int, dict[str, Any]]]


def window_buckets(
    run: Run, rule: KeyedRule, plan: Tiles, aggs: dict[str, Any] | None = None
) -> Windows:
    """Composite buckets by query_key value (None without one), then by window start."""
    window = {
        "date_histogram": {
            "field": rule.timestamp_field,
            "fixed_interval": f"{plan.length}ms",
            "offset": f"+{plan.starts[-1] % plan.length}ms",
        }
    }
    sources = [{"w": window}]
    if rule.query_key:
        sources.insert(0, {"k": {"terms": {"field": rule.query_key}}})
    query = search.rule_query(rule, from_millis(plan.starts[0]), run.end)
    found: Windows = {}
    for bucket in search.composite(run.es, rule.index, query, sources, aggs):
        found.setdefault(bucket["key"].get("k"), {})[int(bucket["key"]["w"])] = bucket
    return found


def doc_count(windows: dict[int, dict[str, Any]], start: int) -> int:
    return int(windows.get(start, {}).get("doc_count", 0))


def judged_buckets(plan: Tiles, found: Windows) -> Iterator[tuple[Any, int, dict[str, Any]]]:
    """(key value, window start, bucket) for every non-empty judged window."""
    for value, windows in found.items():
        for start in plan.judged:
            if start in windows:
                yield value, start, windows[start]


def entity(value: Any) -> str:
    return "*" if value is None else str(value)


def key_condition(rule: KeyedRule, value: Any) -> tuple[str, ...]:
    """The Lucene condition selecting one query_key value's events, if there is a key."""
    return (lucene.term(rule.query_key, value),) if rule.query_key else ()
