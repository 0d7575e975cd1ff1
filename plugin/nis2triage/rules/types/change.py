"""`change`: `compare_key` took a new value for a `query_key`, against its previous value.

Documents are read in time order. The previous value of each key comes from
the rule's state; a key the state does not know (first run, a replay) gets its
last value before the window from Elasticsearch (a top_hits aggregation), so
an empty state still compares with the real past.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nis2triage.rules import lucene, search
from nis2triage.rules.alerts import RELATED_FIELDS, Finding
from nis2triage.rules.native import ChangeRule
from nis2triage.rules.search import Hit, Run, from_millis
from nis2triage.rules.state import PreviousValue, RuleState, Scalar

_BATCH = 1000


def evaluate(run: Run, rule: ChangeRule, state: RuleState) -> list[Finding]:
    also = [search.exists(rule.query_key)]
    if rule.ignore_null:
        also.append(search.exists(rule.compare_key))
    query = search.rule_query(rule, run.start, run.end, *also)
    fields = sorted({*RELATED_FIELDS, rule.query_key, rule.compare_key})
    hits = list(search.documents(run, rule, query, fields))
    _recall(run, rule, state, {str(h.first(rule.query_key)) for h in hits}, also)
    found: list[Finding] = []
    for hit in hits:
        key = str(hit.first(rule.query_key))
        value: Scalar = hit.first(rule.compare_key)
        before = state.previous.get(key)
        if before is not None and _changed(rule, before, value, hit):
            found.append(_finding(rule, key, before, value, hit))
        state.previous[key] = PreviousValue(value=value, at=hit.at)
    return found


def _changed(rule: ChangeRule, before: PreviousValue, value: Scalar, hit: Hit) -> bool:
    recent = rule.timeframe is None or hit.at - before.at <= rule.timeframe
    return recent and before.value != value


def _recall(
    run: Run, rule: ChangeRule, state: RuleState, keys: set[str], also: list[dict[str, Any]]
) -> None:
    """Fill in the last value before the window of every key the state does not know."""
    unknown = sorted(k for k in keys if k not in state.previous)
    since = run.start - rule.timeframe if rule.timeframe else from_millis(0)
    last = {
        "top_hits": {
            "size": 1,
            "sort": [{rule.timestamp_field: {"order": "desc", "format": "epoch_millis"}}],
            "fields": [rule.compare_key],
            "_source": False,
        }
    }
    sources = [{"k": {"terms": {"field": rule.query_key}}}]
    for i in range(0, len(unknown), _BATCH):
        batch = unknown[i : i + _BATCH]
        wanted = search.terms(rule.query_key, batch)
        query = search.rule_query(rule, since, run.start, wanted, *also)
        for bucket in search.composite(run.es, rule.index, query, sources, {"last": last}):
            last_hit = bucket["last"]["hits"]["hits"][0]
            at = search.clamped(last_hit["sort"][0], since, run.start)
            _remember(state, str(bucket["key"]["k"]), last_hit, at, rule)


def _remember(
    state: RuleState, key: str, hit: dict[str, Any], at: datetime, rule: ChangeRule
) -> None:
    values = hit.get("fields", {}).get(rule.compare_key) or [None]
    state.previous[key] = PreviousValue(value=values[0], at=at)


def _finding(rule: ChangeRule, key: str, before: PreviousValue, value: Scalar, hit: Hit) -> Finding:
    return Finding(
        entity=key,
        at=hit.at,
        start=before.at,
        end=from_millis(search.millis(hit.at) + 1),
        score=1.0,
        threshold=1.0,
        message=(
            f"{rule.name}: {rule.compare_key} for {rule.query_key}={key} changed "
            f"from {before.value!r} to {value!r}"
        ),
        evidence={
            "previous_value": before.value,
            "new_value": value,
            "previous_at": lucene.iso(before.at),
        },
        conditions=(lucene.term(rule.query_key, key),),
        hits=(hit,),
        # The previous value is in no pulled hit: a host or user it names (the laptop a
        # user logged in from before) would otherwise reach a report in clear.
        quoted=((rule.compare_key, before.value),),
    )
