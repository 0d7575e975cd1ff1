"""SigmaHQ's regression cases, indexed as Winlogbeat ships them and matched on the real node.

Each case is a rule and real Sysmon (or other Windows) events that must fire it.
Beside each event an altered copy is indexed in which the values the rule keys
on are replaced by something unrelated: the rule must not fire on that copy.
Everything goes into one index; each rule runs once, bucketed by case id.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.rule import SigmaRule
from sigma.types import SigmaCIDRExpression, SigmaExpansion, SigmaString, SigmaType

from nis2triage.rules import winlog, winlog_mapping
from nis2triage.rules.sigma import SigmaConverter, SigmaQuery
from nis2triage.rules.sigma_run import RuleExecutionError, RunSettings, run_rule

from support import shared_data

UNRELATED = "zqxv"
# Fields that say which log an event is in, not what happened in it.
STRUCTURAL = {"eventid", "channel", "provider_name"}
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@dataclass(frozen=True)
class Outcome:
    cases: int
    matched: list[str]
    false_positives: list[str]


def positive_leaves(node: ConditionItem, negated: bool = False) -> Iterator[tuple[Any, Any]]:
    """(field, value) of every comparison that must hold for the rule to fire."""
    if isinstance(node, ConditionNOT | ConditionAND | ConditionOR):
        flip = isinstance(node, ConditionNOT)
        for arg in node.args:
            yield from positive_leaves(arg, negated != flip)
    elif isinstance(node, ConditionFieldEqualsValueExpression) and not negated:
        yield node.field, node.value
    elif isinstance(node, ConditionValueExpression) and not negated:
        yield None, node.value


def literal_chunks(value: SigmaType) -> list[str]:
    """The plain text between the wildcards of a Sigma string (or each string of a list)."""
    if isinstance(value, SigmaExpansion):
        return [chunk for v in value.values for chunk in literal_chunks(v)]
    if isinstance(value, SigmaString):
        text = "".join(p if isinstance(p, str) else "\x00" for p in value.s)
        return [chunk for chunk in text.split("\x00") if chunk]
    return []


def unrelated_value(text: str, value: SigmaType) -> str:
    """`text` with every piece the rule looks for replaced; wholly replaced if none is there."""
    if isinstance(value, SigmaCIDRExpression):
        return "192.0.2.77"
    altered = text
    for chunk in sorted(set(literal_chunks(value)), key=len, reverse=True):
        altered = re.sub(re.escape(chunk), UNRELATED, altered, flags=re.IGNORECASE)
    return altered if altered != text else UNRELATED


def altered_event(exported: dict[str, Any], rule_text: str) -> dict[str, Any]:
    """The event with the values the rule keys on changed to unrelated ones."""
    rule = SigmaRule.from_yaml(rule_text)
    leaves = [leaf for c in rule.detection.parsed_condition for leaf in positive_leaves(c.parsed)]
    keyed = [(f, v) for f, v in leaves if f is None or f.lower() not in STRUCTURAL] or leaves
    out = copy.deepcopy(exported)
    data = out["Event"].get("EventData") or {}
    for name, value in keyed:
        if name is not None and name.lower() in STRUCTURAL:
            out["Event"]["System"]["EventID"] = 0
        for key in [k for k in data if name is None or k.lower() == name.lower()]:
            if isinstance(value, SigmaString) and not literal_chunks(value):
                del data[key]  # `Field: '*'` keys on presence alone
            else:
                data[key] = unrelated_value(str(data[key]), value)
    return out


def case_docs(case: Path, index: str) -> Iterator[dict[str, Any]]:
    rule_text = (case / "rule.yml").read_text()
    events = winlog.read_exported((case / "event.json").read_text(), str(case))
    for n, event in enumerate(events):
        for case_id, body in (
            (case.name, event),
            (f"{case.name}-altered", altered_event(event, rule_text)),
        ):
            doc = {**winlog.to_document(body), "case_id": case_id}
            yield {"_index": index, "_id": f"{case_id}-{n}", "_source": doc}


@pytest.fixture(scope="module")
def outcome(es: Elasticsearch) -> Iterator[Outcome]:
    cases = sorted(p for p in shared_data("sigma-regression", "cases").iterdir() if p.is_dir())
    index = f"t-sigma-regression-{uuid.uuid4().hex[:8]}"
    es.indices.create(index=index, **winlog_mapping.index_body({"case_id": {"type": "keyword"}}))
    try:
        docs = [doc for case in cases for doc in case_docs(case, index)]
        assert helpers.bulk(es, docs, refresh=True) == (len(docs), [])
        yield run_cases(es, index, cases)
    finally:
        es.options(ignore_status=404).indices.delete(index=index)


def run_cases(es: Elasticsearch, index: str, cases: list[Path]) -> Outcome:
    converter = SigmaConverter()
    settings = RunSettings(index, entity_field="case_id")
    matched, false_positives = [], []
    for case in cases:
        rule = converter.load_file(case / "rule.yml")
        if not isinstance(rule, SigmaQuery):
            continue
        try:
            fired = {alert.entity for alert in run_rule(es, rule, settings, *EVER)}
        except RuleExecutionError:
            continue  # counted as a miss: the rate below says how many
        matched += [case.name] if case.name in fired else []
        false_positives += [case.name] if f"{case.name}-altered" in fired else []
    return Outcome(len(cases), matched, false_positives)


def test_at_least_95_percent_of_regression_cases_match(outcome: Outcome) -> None:
    rate = len(outcome.matched) / outcome.cases
    print(f"\nsigma regression: {len(outcome.matched)}/{outcome.cases} matched ({rate:.1%})")

    assert outcome.cases == 150
    assert rate >= 0.95


def test_altered_events_raise_no_false_positive(outcome: Outcome) -> None:
    print(f"\nsigma regression: {len(outcome.false_positives)} false positive(s)")

    assert outcome.false_positives == []


def test_alteration_replaces_the_matched_piece_only() -> None:
    rule = "detection: {sel: {Image|endswith: '\\reg.exe'}, condition: sel}"
    event = {"Event": {"System": {}, "EventData": {"Image": "C:\\Windows\\REG.EXE", "User": "x"}}}

    data = altered_event(event, f"title: t\nlogsource: {{product: windows}}\n{rule}")["Event"]

    assert data["EventData"] == {"Image": f"C:\\Windows{UNRELATED}", "User": "x"}
