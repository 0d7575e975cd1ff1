"""Helpers for the native rule tests: events on a minute clock, typed mappings, short rules.

Creating an index costs a cluster-state update (a few hundred milliseconds on a
busy node), so each test module shares one index, and each test case writes
its events under its own `labels.case` and runs rules filtered on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch, helpers

from nis2triage.records import Alert
from nis2triage.rules.engine import run_rule
from nis2triage.rules.loader import rule_from_dict
from nis2triage.rules.native import NativeRule
from nis2triage.rules.state import RuleState

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

# Short names for the ECS fields the tests use.
ALIASES = {
    "ip": "source.ip",
    "user": "user.name",
    "host": "host.name",
    "process": "process.name",
    "outcome": "event.outcome",
    "action": "event.action",
    "status": "http.response.status_code",
    "bytes": "http.response.bytes",
}

KEYWORD = {"type": "keyword"}
MAPPING: dict[str, Any] = {
    "properties": {
        "@timestamp": {"type": "date"},
        "event": {
            "properties": {"outcome": KEYWORD, "action": KEYWORD, "created": {"type": "date"}}
        },
        "source": {"properties": {"ip": {"type": "ip"}}},
        "user": {"properties": {"name": KEYWORD}},
        "host": {"properties": {"name": KEYWORD}},
        "process": {"properties": {"name": KEYWORD}},
        "http": {
            "properties": {
                "response": {
                    "properties": {"status_code": {"type": "long"}, "bytes": {"type": "long"}}
                }
            }
        },
        "message": {"type": "text"},
        "labels": {"properties": {"case": KEYWORD}},
    }
}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(minute: float, **fields: object) -> dict[str, object]:
    """An event `minute` minutes after T0; `user="a"` becomes `user.name: a`."""
    return {"@timestamp": at(minute).isoformat(), **{ALIASES[k]: v for k, v in fields.items()}}


def index_events(es: Elasticsearch, index: str, events: list[dict[str, object]]) -> None:
    es.indices.create(index=index, mappings=MAPPING)
    helpers.bulk(es, ({"_index": index, "_source": e} for e in events))
    es.indices.refresh(index=index)


def make_rule(kind: str, index: str, **options: object) -> NativeRule:
    return rule_from_dict({"name": f"test {kind}", "type": kind, "index": index, **options})


@dataclass(frozen=True)
class Case:
    """One test case's events in the module's shared index."""

    index: str
    label: str

    def rule(self, kind: str, **options: Any) -> NativeRule:
        """A rule over this case's events only; a `filter` option is combined with that."""
        mine = f'labels.case:"{self.label}"'
        given = options.pop("filter", None)
        if isinstance(given, dict):
            options["filter"] = {"bool": {"filter": [{"term": {"labels.case": self.label}}, given]}}
        else:
            options["filter"] = f"{mine} AND ({given})" if given else mine
        return make_rule(kind, self.index, **options)


@dataclass
class CaseIndex:
    es: Elasticsearch
    name: str

    def add(self, events: list[dict[str, object]]) -> Case:
        label = uuid.uuid4().hex[:12]
        docs = ({"_index": self.name, "_source": {**e, "labels.case": label}} for e in events)
        helpers.bulk(self.es, docs)
        self.es.indices.refresh(index=self.name)
        return Case(self.name, label)


def case_index(es: Elasticsearch, stem: str) -> Iterator[CaseIndex]:
    """For a module-scoped fixture: a fresh index with MAPPING, deleted afterwards."""
    name = f"t-native-{stem}-{uuid.uuid4().hex[:8]}"
    es.indices.create(index=name, mappings=MAPPING, settings={"number_of_replicas": 0})
    yield CaseIndex(es, name)
    es.options(ignore_status=404).indices.delete(index=name)


def run(
    es: Elasticsearch,
    rule: NativeRule,
    start: float,
    end: float,
    state: RuleState | None = None,
) -> list[Alert]:
    """Run the rule over [T0 + start minutes, T0 + end minutes)."""
    return run_rule(es, rule, at(start), at(end), state if state is not None else RuleState())


def summary(alerts: list[Alert]) -> list[tuple[str, float]]:
    return [(a.entity, a.score) for a in alerts]
