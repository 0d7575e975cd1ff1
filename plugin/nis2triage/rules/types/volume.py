"""`flatline` and `spike`: how many events a window holds, against a floor or the window before.

flatline with a query_key judges every value seen within `key_lookback` before
a window (a host that reported yesterday should report now); a value first
seen inside a window is not expected there. Without a query_key the whole
filter is expected to match: an index that never received data alerts too,
since a log source that never arrived is as silent as one that stopped.
"""

from __future__ import annotations

from typing import Any

from nis2triage.rules import search
from nis2triage.rules.alerts import Finding, describe_key, human, plural
from nis2triage.rules.native import FlatlineRule, SpikeRule
from nis2triage.rules.search import Run, from_millis
from nis2triage.rules.types.tiles import (
    Tiles,
    doc_count,
    entity,
    key_condition,
    tiles,
    window_buckets,
)


def evaluate_flatline(run: Run, rule: FlatlineRule) -> list[Finding]:
    plan = tiles(run, rule.timeframe)
    counts = window_buckets(run, rule, plan)
    found: list[Finding] = []
    for value, first_seen in _expected(run, rule, plan).items():
        windows = counts.get(value, {})
        for start in plan.judged:
            count = doc_count(windows, start)
            if first_seen < start and count < rule.threshold:
                found.append(_flat(rule, plan, value, start, count))
    return found


def _expected(run: Run, rule: FlatlineRule, plan: Tiles) -> dict[Any, float]:
    """Each query_key value seen within key_lookback, with its first time (ms)."""
    if rule.query_key is None:
        return {None: float("-inf")}
    since = from_millis(plan.starts[0]) - rule.key_lookback
    query = search.rule_query(rule, since, run.end)
    sources = [{"k": {"terms": {"field": rule.query_key}}}]
    first = {"first": {"min": {"field": rule.timestamp_field}}}
    buckets = search.composite(run.es, rule.index, query, sources, first)
    return {b["key"]["k"]: float(b["first"]["value"]) for b in buckets}


def _flat(rule: FlatlineRule, plan: Tiles, value: Any, start: int, count: int) -> Finding:
    begin, end = plan.bounds(start)
    who = entity(value)
    return Finding(
        entity=who,
        at=end,
        start=begin,
        end=end,
        score=float(count),
        threshold=float(rule.threshold),
        message=(
            f"{rule.name}: only {plural(count, 'event')}{describe_key(rule.query_key, who)} "
            f"in {human(rule.timeframe)} (expected at least {rule.threshold})"
        ),
        evidence={"count": count, "timeframe": human(rule.timeframe)},
        conditions=key_condition(rule, value),
    )


def evaluate_spike(run: Run, rule: SpikeRule) -> list[Finding]:
    plan = tiles(run, rule.timeframe, references=1)
    found: list[Finding] = []
    for value, windows in window_buckets(run, rule, plan).items():
        for before, start in zip(plan.starts, plan.starts[1:], strict=False):
            cur, ref = doc_count(windows, start), doc_count(windows, before)
            direction = _direction(rule, cur, ref)
            if direction:
                found.append(_spike(rule, plan, value, before, start, (cur, ref), direction))
    return found


def _direction(rule: SpikeRule, cur: int, ref: int) -> str | None:
    """'up' or 'down' when the current count is spike_height times off the reference."""
    if cur < rule.threshold_cur or ref < rule.threshold_ref:
        return None
    # Without a baseline any count is "infinitely" up; ElastAlert waits for one unless told.
    up_allowed = rule.spike_type in ("up", "both") and (ref > 0 or rule.alert_on_new_data)
    if up_allowed and cur > ref and cur >= rule.spike_height * ref:
        return "up"
    if rule.spike_type in ("down", "both") and ref > cur and ref >= rule.spike_height * cur:
        return "down"
    return None


def _spike(
    rule: SpikeRule,
    plan: Tiles,
    value: Any,
    before: int,
    start: int,
    counts: tuple[int, int],
    direction: str,
) -> Finding:
    cur, ref = counts
    bound = rule.spike_height * ref if direction == "up" else ref / rule.spike_height
    who = entity(value)
    return Finding(
        entity=who,
        at=plan.bounds(start)[1],
        start=from_millis(before),
        end=plan.bounds(start)[1],
        score=float(cur),
        threshold=float(bound),
        message=(
            f"{rule.name}: spike {direction}{describe_key(rule.query_key, who)}: "
            f"{plural(cur, 'event')} in the last {human(rule.timeframe)} against {ref} before"
        ),
        evidence={"current": cur, "reference": ref, "direction": direction},
        conditions=key_condition(rule, value),
    )
