"""`new_term`: a value of one of `fields` that was not seen within `terms_window` before.

Per field, a composite aggregation lists the values in the run's window with
their first and last time. The state remembers recently seen values, so most
values are settled without asking again; the rest are looked up in
Elasticsearch over [start - terms_window, start) in one terms query per batch.
A value found nowhere is new, and alerts at its first appearance. Events
without the field are ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nis2triage.rules import lucene, search
from nis2triage.rules.alerts import Finding, human, plural
from nis2triage.rules.native import NewTermRule
from nis2triage.rules.search import Run, from_millis
from nis2triage.rules.state import RuleState

_BATCH = 1000


def evaluate(run: Run, rule: NewTermRule, state: RuleState) -> list[Finding]:
    found: list[Finding] = []
    for field in rule.fields:
        found.extend(_new_in_field(run, rule, state, field))
    return found


def _new_in_field(run: Run, rule: NewTermRule, state: RuleState, field: str) -> list[Finding]:
    known = state.seen_terms.setdefault(field, {})
    cutoff = run.start - rule.terms_window
    current = _spans(run, rule, field, run.start, run.end)
    # A value the state saw within the terms window is settled without asking again.
    unsure = [v for v in current if known.get(str(v), datetime.min.replace(tzinfo=UTC)) < cutoff]
    earlier = _seen_before(run, rule, field, unsure, cutoff)
    found = [_finding(rule, field, v, current[v]) for v in unsure if str(v) not in earlier]
    for term, (_, last, _) in current.items():
        known[str(term)] = max(known.get(str(term), last), last)
    for term, last in earlier.items():
        known[term] = max(known.get(term, last), last)
    return found


Span = tuple[datetime, datetime, int]


def _spans(
    run: Run,
    rule: NewTermRule,
    field: str,
    start: datetime,
    end: datetime,
    *also: dict[str, Any],
) -> dict[Any, Span]:
    """Each value of `field` in [start, end): its first and last time and its event count."""
    query = search.rule_query(rule, start, end, *also)
    times = {
        "first": {"min": {"field": rule.timestamp_field}},
        "last": {"max": {"field": rule.timestamp_field}},
    }
    sources = [{"t": {"terms": {"field": field}}}]
    return {
        b["key"]["t"]: (
            search.clamped(b["first"]["value"], start, end),
            search.clamped(b["last"]["value"], start, end),
            int(b["doc_count"]),
        )
        for b in search.composite(run.es, rule.index, query, sources, times)
    }


def _seen_before(
    run: Run, rule: NewTermRule, field: str, values: list[Any], cutoff: datetime
) -> dict[str, datetime]:
    """Which of `values` occur in [cutoff, start), with the last time each was seen."""
    seen: dict[str, datetime] = {}
    for i in range(0, len(values), _BATCH):
        wanted = search.terms(field, values[i : i + _BATCH])
        for term, (_, last, _) in _spans(run, rule, field, cutoff, run.start, wanted).items():
            seen[str(term)] = last
    return seen


def _finding(rule: NewTermRule, field: str, value: Any, span: Span) -> Finding:
    first, last, count = span
    return Finding(
        entity=str(value),
        at=first,
        start=first,
        end=from_millis(search.millis(last) + 1),
        score=float(count),
        threshold=1.0,
        message=(
            f"{rule.name}: new {field}={value} ({plural(count, 'event')}), "
            f"not seen in the {human(rule.terms_window)} before"
        ),
        evidence={"field": field, "count": count, "terms_window": human(rule.terms_window)},
        entity_field=field,
        conditions=(lucene.term(field, value),),
    )
