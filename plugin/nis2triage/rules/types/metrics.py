"""`cardinality`, `metric_aggregation` and `percentage_match`: a computed value per window.

Each window (and query_key value) with events gets one number from an
Elasticsearch aggregation, judged against an upper and a lower bound. A window
without events has no number: it is not judged (flatline is the type for
silence).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from nis2triage.rules import search
from nis2triage.rules.alerts import Finding, describe_key, human
from nis2triage.rules.native import (
    CardinalityRule,
    KeyedRule,
    MetricAggregationRule,
    PercentageMatchRule,
)
from nis2triage.rules.search import Run
from nis2triage.rules.types.tiles import (
    Tiles,
    entity,
    judged_buckets,
    key_condition,
    tiles,
    window_buckets,
)

# Below this many distinct values Elasticsearch's cardinality count is exact; it is
# the largest precision the aggregation accepts (HyperLogLog++ above it, about 1% off).
EXACT_CARDINALITY = 40_000

Reading = Callable[[dict[str, Any]], float | None]


def evaluate_cardinality(run: Run, rule: CardinalityRule) -> list[Finding]:
    spec = {
        "cardinality": {"field": rule.cardinality_field, "precision_threshold": EXACT_CARDINALITY}
    }
    what = f"distinct {rule.cardinality_field}"
    return _judge(run, rule, {"v": spec}, _value, rule.max_cardinality, rule.min_cardinality, what)


def evaluate_metric(run: Run, rule: MetricAggregationRule) -> list[Finding]:
    kind = rule.metric_agg_type
    spec: dict[str, Any] = {"field": rule.metric_agg_key}
    read: Reading = _value
    if kind == "percentiles":
        spec["percents"] = [rule.percentile_range]
        read = _percentile
    what = f"{kind} of {rule.metric_agg_key}"
    if kind == "percentiles":
        what = f"p{rule.percentile_range:g} of {rule.metric_agg_key}"

    def enough(bucket: dict[str, Any]) -> float | None:
        return read(bucket) if bucket["doc_count"] >= rule.min_doc_count else None

    aggs = {"v": {kind: spec}}
    return _judge(run, rule, aggs, enough, rule.max_threshold, rule.min_threshold, what)


def evaluate_percentage(run: Run, rule: PercentageMatchRule) -> list[Finding]:
    aggs = {"m": {"filter": search.filter_clause(rule.match_bucket_filter)}}

    def share(bucket: dict[str, Any]) -> float | None:
        total = bucket["doc_count"]
        return 100.0 * bucket["m"]["doc_count"] / total if total >= rule.min_denominator else None

    bounds = (rule.max_percentage, rule.min_percentage)
    return _judge(run, rule, aggs, share, *bounds, "percentage matching the bucket filter")


def _value(bucket: dict[str, Any]) -> float | None:
    value = bucket["v"]["value"]
    return None if value is None else float(value)


def _percentile(bucket: dict[str, Any]) -> float | None:
    value = next(iter(bucket["v"]["values"].values()), None)
    return None if value is None else float(value)


def _judge(
    run: Run,
    rule: KeyedRule,
    aggs: dict[str, Any],
    read: Reading,
    high: float | None,
    low: float | None,
    what: str,
) -> list[Finding]:
    """A finding for every judged window whose value is above `high` or below `low`."""
    plan = tiles(run, rule.timeframe_or_none or timedelta(0))
    found: list[Finding] = []
    for value, start, bucket in judged_buckets(plan, window_buckets(run, rule, plan, aggs)):
        observed = read(bucket)
        if observed is None:
            continue
        if high is not None and observed > high:
            found.append(_finding(rule, plan, value, start, (observed, high), what, bucket))
        elif low is not None and observed < low:
            found.append(_finding(rule, plan, value, start, (observed, low), what, bucket))
    return found


def _finding(
    rule: KeyedRule,
    plan: Tiles,
    value: Any,
    start: int,
    reading: tuple[float, float],
    what: str,
    bucket: dict[str, Any],
) -> Finding:
    observed, bound = reading
    begin, end = plan.bounds(start)
    who = entity(value)
    side = "above" if observed > bound else "below"
    return Finding(
        entity=who,
        at=end,
        start=begin,
        end=end,
        score=observed,
        threshold=bound,
        message=(
            f"{rule.name}: {what}{describe_key(rule.query_key, who)} was {observed:g} "
            f"in {human(plan.timeframe)}, {side} {bound:g}"
        ),
        evidence={"value": observed, "event_count": bucket["doc_count"], "bound": side},
        conditions=key_condition(rule, value),
    )
