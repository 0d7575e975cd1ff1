"""`frequency`: at least `num_events` matching events within `timeframe` (per query_key).

The window slides as in ElastAlert: an alert fires at the event that brings the
count within the preceding timeframe to `num_events`, and those events are
then used up, so the next alert needs `num_events` new ones. The trigger must
fall in the run's [start, end); the events before it reach back a timeframe.

Counting stays in Elasticsearch. A composite aggregation first keeps the keys
with enough events at all; then a date histogram per kept key gives event times
at millisecond resolution (empty buckets are not returned, so a key costs no
more buckets than it has events). A key with more events than `BUCKET_BUDGET`
gets coarser buckets, and events sharing one count as simultaneous.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from nis2triage.rules import lucene, search
from nis2triage.rules.alerts import Finding, describe_key, human, plural
from nis2triage.rules.native import FrequencyRule
from nis2triage.rules.search import Run, from_millis, millis
from nis2triage.rules.state import RuleState

BUCKET_BUDGET = 10_000
# One filter per key in the histogram request; more make the request itself heavy.
MAX_KEYS_PER_REQUEST = 500

Buckets = list[tuple[int, int]]


def evaluate(run: Run, rule: FrequencyRule, state: RuleState) -> list[Finding]:
    lookback = run.start - rule.timeframe
    span = millis(run.end) - millis(lookback)
    found: list[Finding] = []
    for batch, interval in _batches(_candidates(run, rule, lookback), span):
        for value, buckets in _histograms(run, rule, batch, interval, lookback):
            found.extend(_triggers(run, rule, state, value, buckets, interval))
    return found


def _candidates(run: Run, rule: FrequencyRule, lookback: datetime) -> list[tuple[Any, int]]:
    """Keys with `num_events` in the look-back and at least one event in the run's window."""
    query = search.rule_query(rule, lookback, run.end)
    recent = {"recent": {"filter": search.time_clause(rule.timestamp_field, run.start, run.end)}}
    if rule.query_key is None:
        everything = {"all": {"filter": {"match_all": {}}}, **recent}
        aggs = search.aggregate(run.es, rule.index, query, everything)
        total = aggs.get("all", {}).get("doc_count", 0)
        fresh = aggs.get("recent", {}).get("doc_count", 0)
        return [(None, total)] if total >= rule.num_events and fresh else []
    sources = [{"k": {"terms": {"field": rule.query_key}}}]
    return [
        (b["key"]["k"], b["doc_count"])
        for b in search.composite(run.es, rule.index, query, sources, recent)
        if b["doc_count"] >= rule.num_events and b["recent"]["doc_count"] > 0
    ]


def _batches(candidates: list[tuple[Any, int]], span_ms: int) -> Iterator[tuple[list[Any], int]]:
    """Groups of keys whose events fit the bucket budget, each with its bucket width in ms."""
    batch: list[Any] = []
    used = 0
    for value, count in candidates:
        if count > BUCKET_BUDGET:
            yield [value], max(1, math.ceil(span_ms / BUCKET_BUDGET))
            continue
        if used + count > BUCKET_BUDGET or len(batch) == MAX_KEYS_PER_REQUEST:
            yield batch, 1
            batch, used = [], 0
        batch.append(value)
        used += count
    if batch:
        yield batch, 1


def _histograms(
    run: Run, rule: FrequencyRule, values: list[Any], interval: int, lookback: datetime
) -> Iterator[tuple[Any, Buckets]]:
    # The offset puts a bucket boundary on the run's start, so no bucket straddles it.
    histogram = {
        "date_histogram": {
            "field": rule.timestamp_field,
            "fixed_interval": f"{interval}ms",
            "offset": f"+{millis(run.start) % interval}ms",
            "min_doc_count": 1,
            # A document whose time field holds several times falls in a bucket for each;
            # those outside the range it matched by are no count of the window (and may lie
            # where no datetime can go).
            "hard_bounds": {"min": millis(lookback), "max": millis(run.end) - 1},
        }
    }
    query = search.rule_query(rule, lookback, run.end)
    if rule.query_key is None:
        aggs = search.aggregate(run.es, rule.index, query, {"t": histogram})
        yield None, _pairs(aggs["t"])
        return
    per_key = {str(i): {"term": {rule.query_key: v}} for i, v in enumerate(values)}
    aggs = {"k": {"filters": {"filters": per_key}, "aggs": {"t": histogram}}}
    result = search.aggregate(run.es, rule.index, query, aggs)["k"]["buckets"]
    for i, value in enumerate(values):
        yield value, _pairs(result[str(i)]["t"])


def _pairs(histogram: dict[str, Any]) -> Buckets:
    return [(int(b["key"]), int(b["doc_count"])) for b in histogram["buckets"]]


def _triggers(
    run: Run, rule: FrequencyRule, state: RuleState, value: Any, buckets: Buckets, interval: int
) -> list[Finding]:
    """Slide over the event times; each time the count reaches num_events, alert and reset."""
    entity = "*" if value is None else str(value)
    used_until = state.counted_until.get(entity)
    floor = millis(used_until) if used_until else -math.inf
    tf, start = search.length_millis(rule.timeframe), millis(run.start)
    found: list[Finding] = []
    left, total = 0, 0
    for right, (at, count) in enumerate(buckets):
        if at <= floor:
            left = right + 1
            continue
        total += count
        while buckets[left][0] < at - tf:
            total -= buckets[left][1]
            left += 1
        if at >= start and total >= rule.num_events:
            found.append(_finding(rule, value, entity, buckets[left][0], at + interval, total))
            state.counted_until[entity] = from_millis(at)
            left, total = right + 1, 0
    return found


def _finding(
    rule: FrequencyRule, value: Any, entity: str, first: int, end: int, total: int
) -> Finding:
    key = rule.query_key
    return Finding(
        entity=entity,
        at=from_millis(end - 1),
        start=from_millis(first),
        end=from_millis(end),
        score=float(total),
        threshold=float(rule.num_events),
        message=(
            f"{rule.name}: {plural(total, 'event')}{describe_key(key, entity)} "
            f"within {human(rule.timeframe)} (threshold {rule.num_events})"
        ),
        evidence={
            "count": total,
            "num_events": rule.num_events,
            "timeframe": human(rule.timeframe),
        },
        conditions=(lucene.term(key, value),) if key else (),
    )
