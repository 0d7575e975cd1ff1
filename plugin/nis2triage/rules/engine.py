"""Running a native rule over one time window: `run_rule(es, rule, start, end, state)`.

The steps: evaluate the rule's type against Elasticsearch, turn what it found
into alerts, drop those within the suppression period, and forget state too old
to matter. A query Elasticsearch refuses becomes a RuleExecutionError naming the
rule and what to change, so the agent loop can pause that rule and go on; an outage
or overload is left to the agent, which waits it out and runs the window again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from elasticsearch import ApiError, Elasticsearch

from nis2triage import datemath
from nis2triage.errors import RuleExecutionError
from nis2triage.records import Alert
from nis2triage.rules import hosts, search, suppress
from nis2triage.rules.alerts import Finding, to_alert
from nis2triage.rules.native import (
    AnyRule,
    BlacklistRule,
    CardinalityRule,
    ChangeRule,
    FlatlineRule,
    FrequencyRule,
    MetricAggregationRule,
    NativeRule,
    NewTermRule,
    PercentageMatchRule,
    SpikeRule,
    WhitelistRule,
)
from nis2triage.rules.search import Run
from nis2triage.rules.state import RuleState
from nis2triage.rules.types import change, events, frequency, metrics, newterm, volume

log = logging.getLogger(__name__)


def run_rule(
    es: Elasticsearch, rule: NativeRule, start: datetime, end: datetime, state: RuleState
) -> list[Alert]:
    """The alerts of `rule` for events in [start, end); `state` is updated in place."""
    if start.tzinfo is None or end.tzinfo is None or not start < end:
        raise ValueError(f"need timezone-aware start < end, got {start!r} and {end!r}")
    run = Run(es, start, end)
    reading = _over_its_span(rule, start)
    try:
        found = _evaluate(run, reading, state)
        missing = _without_key(run, reading)
    except ApiError as exc:
        if not search.refused(exc):
            raise
        raise RuleExecutionError(_explain(rule, exc)) from exc
    if missing:
        found = [_noting_missing(f, missing) for f in found]
    made = [(to_alert(rule, f), f) for f in found]
    finding_of = {a.id: f for a, f in made}
    alerts = suppress.apply([a for a, _ in made], state, rule.suppression)
    alerts = [hosts.named(run, reading, a, finding_of[a.id]) for a in alerts]
    state.forget_before(_cutoffs(rule, start))
    level = logging.INFO if found else logging.DEBUG
    suppressed = len(found) - len(alerts)
    log.log(level, "rule %s: %d alerts (%d suppressed)", rule.name, len(alerts), suppressed)
    return alerts


def _evaluate(run: Run, rule: NativeRule, state: RuleState) -> list[Finding]:
    match rule:
        case AnyRule():
            return events.evaluate_any(run, rule)
        case BlacklistRule() | WhitelistRule():
            return events.evaluate_list(run, rule)
        case FrequencyRule():
            return frequency.evaluate(run, rule, state)
        case FlatlineRule():
            return volume.evaluate_flatline(run, rule)
        case SpikeRule():
            return volume.evaluate_spike(run, rule)
        case CardinalityRule():
            return metrics.evaluate_cardinality(run, rule)
        case MetricAggregationRule():
            return metrics.evaluate_metric(run, rule)
        case PercentageMatchRule():
            return metrics.evaluate_percentage(run, rule)
        case NewTermRule():
            return newterm.evaluate(run, rule, state)
        case ChangeRule():
            return change.evaluate(run, rule, state)


def _without_key(run: Run, rule: NativeRule) -> int:
    """Matching documents in the window that lack the query_key: not counted per key."""
    key = getattr(rule, "query_key", None)
    return search.count_without_key(run, rule, key, run.start) if key else 0


def _noting_missing(found: Finding, missing: int) -> Finding:
    evidence = {**found.evidence, "documents_without_query_key": missing}
    return Finding(**{**vars(found), "evidence": evidence})


# Date math index names said to be read back only in part (`datemath.MAX_STEPS`).
_SAID_CUT: set[str] = set()


def _over_its_span(rule: NativeRule, start: datetime) -> NativeRule:
    """`rule` with its date math index names (`<logs-{now/d}>`) also as they resolved back
    to the oldest event it may look at: resolved at the request alone, they named today's
    index, and a window before midnight UTC evaluated after it found nothing. Its alerts
    keep the index as written (`to_alert` gets the rule itself)."""
    names = rule.index.split(",")
    if not any(datemath.is_date_math(n) for n in names):
        return rule
    # The node resolves `now` by its own clock: the span runs to the real present.
    span = datetime.now(UTC) - (start - _lookback(rule))
    expanded = datemath.expand(names, span, f"rule {rule.name}", _SAID_CUT)
    return rule.model_copy(update={"index": ",".join(expanded)})


def _lookback(rule: NativeRule) -> timedelta:
    """An upper bound of how far before its window a rule reads: a spike compares two
    timeframes, a flatline looks for keys over key_lookback, new_term over terms_window."""
    spans = [getattr(rule, name, None) for name in ("timeframe", "key_lookback", "terms_window")]
    longest = [s for s in spans if isinstance(s, timedelta)]
    return 2 * sum(longest, timedelta(0))


def _cutoffs(rule: NativeRule, start: datetime) -> dict[str, datetime]:
    """How far back each part of the state can still matter for the next window."""
    cutoffs = {"last_alert": start - rule.suppression}
    if isinstance(rule, FrequencyRule):
        cutoffs["counted_until"] = start - rule.timeframe
    if isinstance(rule, ChangeRule) and rule.timeframe is not None:
        cutoffs["previous"] = start - rule.timeframe
    if isinstance(rule, NewTermRule):
        cutoffs["seen_terms"] = start - rule.terms_window
    return cutoffs


def _explain(rule: NativeRule, exc: ApiError) -> str:
    reason = _root_cause(exc)
    hint = ""
    if "Fielddata is disabled" in reason or "Text fields are not optimised" in reason:
        hint = "; count on a keyword field (e.g. user.name, or a text field's .keyword)"
    elif "Determinizing" in reason or "too_complex_to_determinize" in reason:
        hint = (
            "; the filter's regular expression is too complex for Elasticsearch's automaton "
            "(a bounded repeat after .*, such as .*a.{20}, multiplies its states): anchor it "
            "on literal text, drop the count, or match the value with blacklist_regex (RE2)"
        )
    elif "max_regex_length" in reason:
        hint = "; shorten the filter's regular expression, or list the exact values instead"
    elif "Failed to parse query" in reason or "parse_exception" in reason:
        hint = "; fix the filter's Lucene syntax"
    return f"rule {rule.name!r}: Elasticsearch refused the query: {reason}{hint}"


def _root_cause(exc: ApiError) -> str:
    """The first root cause Elasticsearch gives, and the deepest cause if it says more."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", {})
    if not isinstance(error, dict):
        return str(error or exc.message)
    first = (error.get("root_cause") or [error])[0]
    text = f"{first.get('type', '')}: {first.get('reason', '')}"
    deepest = error
    while isinstance(deepest.get("caused_by"), dict):
        deepest = deepest["caused_by"]
    extra = str(deepest.get("reason", ""))
    return text if deepest is error or extra in text else f"{text} ({extra})"
