"""`cardinality`, `metric_aggregation` and `percentage_match`: a computed value per window.

Each window (and query_key value) with events gets one number from an
Elasticsearch aggregation, judged against an upper and a lower bound. A window
without events has no number: it is not judged (flatline is the type for
silence).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
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

log = logging.getLogger(__name__)

# Below this many distinct values Elasticsearch's cardinality count is exact; it is
# the largest precision the aggregation accepts (HyperLogLog++ above it, about 1% off).
EXACT_CARDINALITY = 40_000

Reading = Callable[[dict[str, Any]], float | None]

# (rule, field) pairs already warned about as missing from every document, in this process.
_SAID_ABSENT: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Measure:
    """What is computed per window, how to read it, and the bounds it must stay within."""

    what: str
    aggs: dict[str, Any]
    read: Reading
    high: float | None
    low: float | None
    # The option naming the measured field and the field, checked to be in the documents.
    field: tuple[str, str] | None = None


def evaluate_cardinality(run: Run, rule: CardinalityRule) -> list[Finding]:
    field = rule.cardinality_field
    spec = {"cardinality": {"field": field, "precision_threshold": EXACT_CARDINALITY}}
    measure = Measure(
        f"distinct {field}",
        {"v": spec},
        _value,
        rule.max_cardinality,
        rule.min_cardinality,
        ("cardinality_field", field),
    )
    return _judge(run, rule, rule.timeframe, measure)


def evaluate_metric(run: Run, rule: MetricAggregationRule) -> list[Finding]:
    kind, field = rule.metric_agg_type, rule.metric_agg_key
    spec: dict[str, Any] = {"field": field}
    read: Reading = _value
    what = f"{kind} of {field}"
    if kind == "percentiles":
        spec["percents"] = [rule.percentile_range]
        read, what = _percentile, f"p{rule.percentile_range:g} of {field}"

    def enough(bucket: dict[str, Any]) -> float | None:
        return read(bucket) if bucket["doc_count"] >= rule.min_doc_count else None

    bounds = rule.max_threshold, rule.min_threshold
    measure = Measure(what, {"v": {kind: spec}}, enough, *bounds, ("metric_agg_key", field))
    return _judge(run, rule, rule.timeframe, measure)


def evaluate_percentage(run: Run, rule: PercentageMatchRule) -> list[Finding]:
    def share(bucket: dict[str, Any]) -> float | None:
        total = bucket["doc_count"]
        return 100.0 * bucket["m"]["doc_count"] / total if total >= rule.min_denominator else None

    aggs = {"m": {"filter": search.filter_clause(rule.match_bucket_filter)}}
    what = "percentage matching the bucket filter"
    measure = Measure(what, aggs, share, rule.max_percentage, rule.min_percentage)
    return _judge(run, rule, rule.timeframe, measure)


def _value(bucket: dict[str, Any]) -> float | None:
    value = bucket["v"]["value"]
    return None if value is None else float(value)


def _percentile(bucket: dict[str, Any]) -> float | None:
    value = next(iter(bucket["v"]["values"].values()), None)
    return None if value is None else float(value)


def _judge(run: Run, rule: KeyedRule, timeframe: timedelta, measure: Measure) -> list[Finding]:
    """A finding for every judged window whose value is above `high` or below `low`."""
    plan = tiles(run, timeframe)
    aggs = dict(measure.aggs)
    if measure.field:
        aggs["has"] = {"filter": search.exists(measure.field[1])}
    found: list[Finding] = []
    buckets = list(judged_buckets(plan, window_buckets(run, rule, plan, aggs)))
    if measure.field:
        _check_present(rule, measure.field, buckets)
    for value, start, bucket in buckets:
        observed = measure.read(bucket)
        if observed is None:
            continue
        bound = _crossed(observed, measure)
        if bound is not None:
            found.append(
                _finding(rule, plan, value, start, (observed, bound), measure.what, bucket)
            )
    return found


def _check_present(
    rule: KeyedRule, field: tuple[str, str], buckets: list[tuple[Any, int, dict[str, Any]]]
) -> None:
    """Say when no judged document has the measured field: most likely a misspelt name,
    which otherwise gives no value (avg, max) or zero (sum, count) and no alert."""
    option, name = field
    documents = sum(b["doc_count"] for _, _, b in buckets)
    if not documents or any(b["has"]["doc_count"] for _, _, b in buckets):
        return
    if (rule.name, name) in _SAID_ABSENT:
        log.info("rule %s: none of %d documents has %s", rule.name, documents, name)
        return
    # A warning the first time, as for a query_key that documents lack; then INFO.
    _SAID_ABSENT.add((rule.name, name))
    log.warning(
        "rule %s: none of the %d matching documents has %s, so its windows are judged "
        "without it; check %s for a misspelling (said once per rule, then at INFO)",
        rule.name,
        documents,
        name,
        option,
    )


def _crossed(observed: float, measure: Measure) -> float | None:
    """The bound `observed` is beyond (strictly, as ElastAlert compares), if any."""
    if measure.high is not None and observed > measure.high:
        return measure.high
    if measure.low is not None and observed < measure.low:
        return measure.low
    return None


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
