"""Turning what a rule type found into an Alert an analyst can act on.

Every alert carries the Lucene query that shows its raw events in Kibana, the
addresses and users involved (for triage and the NIS2 report), the rule's
ATT&CK tags and its triage hint.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from nis2triage.records import Alert
from nis2triage.rules import lucene
from nis2triage.rules.native import RuleBase
from nis2triage.rules.search import Hit

# ECS fields asked of every pulled document, so that its alert names who and what was involved.
RELATED_FIELDS = (
    "related.ip",
    "related.user",
    "source.ip",
    "destination.ip",
    "client.ip",
    "user.name",
    "source.user.name",
)

# The ECS fields that name the host an event came from.
HOST_NAMES = ("host.name", "host.hostname")
# Entities that stand for "no value": the whole rule, or an event lacking the field.
NO_ENTITY = frozenset({"*", "(missing)"})


@dataclass(frozen=True)
class Finding:
    """One detection of a rule type, before it becomes an Alert."""

    entity: str
    at: datetime
    start: datetime
    end: datetime
    score: float
    threshold: float
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    # The field the entity is a value of, when it is not the rule's query_key.
    entity_field: str | None = None
    # Lucene conditions beyond the rule's filter that select the finding's events.
    conditions: tuple[str, ...] = ()
    hits: tuple[Hit, ...] = ()
    # Field values the message quotes that no pulled hit holds (a `change` rule's previous
    # value): named among the alert's users and hosts, so a report pseudonymises them too.
    quoted: tuple[tuple[str, Any], ...] = ()

    def field_values(self) -> Iterator[tuple[str, list[Any]]]:
        """(field, values) of every pulled hit, then of what the message quotes."""
        for hit in self.hits:
            yield from hit.fields.items()
        for name, value in self.quoted:
            if value is not None:
                yield name, [value]


def is_ip_field(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last == "ip" or last.endswith("_ip") or name.endswith("IpAddress")


def is_user_field(name: str) -> bool:
    # ECS puts accounts under user.name, user.target.name, user.effective.name, ...
    leaf = name.rsplit(".", 1)[-1]
    under_user = name.startswith("user.") or ".user." in f".{name}"
    return (
        name.endswith("UserName")
        or name in ("related.user", "user")
        or (under_user and leaf == "name")
    )


def to_alert(rule: RuleBase, found: Finding) -> Alert:
    entity_field = found.entity_field or rule.entity_field
    query, evidence = _kibana_query(rule, found)
    ips, users = _related(entity_field, found)
    return Alert(
        kind="rule",
        name=rule.name,
        version=rule.version,
        severity=rule.severity,
        timestamp=found.at,
        start=found.start,
        end=found.end,
        score=found.score,
        threshold=found.threshold,
        entity_field=entity_field,
        entity=found.entity,
        message=found.message,
        index_pattern=rule.index,
        query=query,
        related_ips=ips,
        related_users=users,
        related_hosts=_hosts(entity_field, found),
        evidence={**_window(found), **found.evidence, **evidence, **_hint(rule)},
        tags=rule.tags,
        hints=("early_warning_candidate",) if rule.triage.early_warning_candidate else (),
    )


def _hosts(entity_field: str, found: Finding) -> tuple[str, ...]:
    """Host names the alert is about, so triage can find the asset it touches."""
    hosts = {found.entity} if entity_field in HOST_NAMES else set()
    for name, values in found.field_values():
        if name in HOST_NAMES:
            hosts.update(map(str, values))
    return tuple(sorted(h for h in hosts if h not in NO_ENTITY))


def _window(found: Finding) -> dict[str, Any]:
    window: dict[str, Any] = {"start": lucene.iso(found.start), "end": lucene.iso(found.end)}
    if found.hits:
        window["documents"] = [{"index": h.index, "id": h.id} for h in found.hits[:20]]
    return window


def _kibana_query(rule: RuleBase, found: Finding) -> tuple[str, dict[str, Any]]:
    """The Lucene query for Kibana, and evidence to add when the filter has no Lucene form."""
    evidence: dict[str, Any] = {}
    text: str | None
    if isinstance(rule.filter, dict):
        text = lucene.from_dsl(rule.filter)
        if text is None:
            evidence["filter_dsl"] = rule.filter
            evidence["query_note"] = "query leaves out the filter (no Lucene form): filter_dsl"
    else:
        text = rule.filter
    timing = lucene.time_range(rule.timestamp_field, found.start, found.end)
    return lucene.conjunction(text, *found.conditions, timing), evidence


def _hint(rule: RuleBase) -> dict[str, Any]:
    """The author's triage hint, for the triage stage to weigh."""
    if not rule.triage.early_warning_candidate:
        return {}
    return {"triage_hint": rule.triage.model_dump()}


def _related(entity_field: str, found: Finding) -> tuple[tuple[str, ...], tuple[str, ...]]:
    ips: set[str] = set()
    users: set[str] = set()
    if found.entity not in NO_ENTITY:
        if is_ip_field(entity_field):
            ips.add(found.entity)
        elif is_user_field(entity_field):
            users.add(found.entity)
    for name, values in found.field_values():
        if is_ip_field(name):
            ips.update(map(str, values))
        elif is_user_field(name):
            users.update(map(str, values))
    return tuple(sorted(ips)), tuple(sorted(users))


def describe_key(rule_key: str | None, entity: str) -> str:
    return f" for {rule_key}={entity}" if rule_key else ""


def plural(count: float, noun: str) -> str:
    whole = int(count) if float(count).is_integer() else count
    return f"{whole} {noun}" + ("" if whole == 1 else "s")


def human(length: timedelta) -> str:
    """A duration as operators write it in rule files: 90s, 5m, 2h, 30d."""
    seconds = int(length.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{length.total_seconds():g}s"
