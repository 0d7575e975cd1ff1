"""From events to feature vectors: per detector, per entity, per time bucket.

A detector names a filter (which events count), an entity field (who the
bucket belongs to) and features (what is measured in each bucket). Buckets
are tumbling windows aligned on the epoch, so the same events always fall in
the same buckets whatever the polling rhythm.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Checks = tuple[tuple[str, frozenset[str]], ...]
MAX_DISTINCT = 10_000  # per bucket and field; beyond it the distinct count saturates
MAX_RELATED = 20  # addresses, users and hosts kept per bucket as evidence
MAX_VALUE_CHARS = 1024  # longer values are cut, as a keyword field's ignore_above would


def clean(value: Any) -> str:
    """A value as bounded, encodable text: megabyte strings are cut, lone surrogates replaced."""
    text = value if isinstance(value, str) else str(value)
    text = text[:MAX_VALUE_CHARS]
    if text.isascii():
        # Always encodable: keep the event's own string rather than a copy of it.
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def get_field(doc: dict[str, Any], path: str) -> Any:
    """The value at a dotted ECS path, nested (`source: {ip: ..}`) or flat (`source.ip`).

    At each level the rest of the path is tried as one flat key first, then its first
    segment as a nested object. A loop over cached splits, because this runs several
    times per event and detector: it was the agent's hottest code (`make bench`).
    """
    node = doc
    for rest, head in _steps(path):
        if rest in node:
            return node[rest]
        inner = node.get(head) if head is not None else None
        if not isinstance(inner, dict):
            return None
        node = inner
    return None


@functools.lru_cache(maxsize=4096)
def _steps(path: str) -> tuple[tuple[str, str | None], ...]:
    """(rest of the path, its first segment, or None where nothing follows it) per level."""
    steps = []
    rest = path
    while True:
        head, _, tail = rest.partition(".")
        steps.append((rest, head if tail else None))
        if not tail:
            return tuple(steps)
        rest = tail


def values_of(doc: dict[str, Any], path: str) -> list[Any]:
    value = get_field(doc, path)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


class Match(BaseModel):
    """Field conditions, all of which must hold: `{event.outcome: failure, event.category: [a, b]}`.

    A list means any of its values; a field holding a list matches when any element does.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    all_of: dict[str, Any] = Field(default_factory=dict)
    none_of: dict[str, Any] = Field(default_factory=dict)
    exists: list[str] = Field(default_factory=list)

    @cached_property
    def compiled(self) -> tuple[Checks, Checks]:
        """The wanted values as sets of text, built once rather than for every event."""
        return (
            tuple((f, _wanted(w)) for f, w in self.all_of.items()),
            tuple((f, _wanted(w)) for f, w in self.none_of.items()),
        )

    def matches(self, doc: dict[str, Any]) -> bool:
        for path in self.exists:
            if not values_of(doc, path):
                return False
        all_of, none_of = self.compiled
        for path, wanted in all_of:
            if not _field_matches(doc, path, wanted):
                return False
        return not any(_field_matches(doc, path, wanted) for path, wanted in none_of)


def _wanted(want: Any) -> frozenset[str]:
    return frozenset(str(w) for w in want) if isinstance(want, list) else frozenset([str(want)])


def _field_matches(doc: dict[str, Any], path: str, wanted: frozenset[str]) -> bool:
    value = get_field(doc, path)
    if isinstance(value, list):
        return any(str(v) in wanted for v in value)
    return value is not None and str(value) in wanted


class FeatureSpec(BaseModel):
    """One number per entity and bucket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Literal["count", "distinct", "ratio", "sum", "max"]
    field: str | None = None
    where: Match | None = None
    transform: Literal["none", "log1p"] = "none"

    def model_post_init(self, _: Any) -> None:
        if self.kind in ("distinct", "sum", "max") and not self.field:
            raise ValueError(f"feature {self.name}: kind {self.kind} needs a field")
        if self.kind == "ratio" and self.where is None:
            raise ValueError(f"feature {self.name}: kind ratio needs `where` (the numerator)")


@dataclass(slots=True)
class Bucket:
    """What one entity did in one bucket; holds only what its features need.

    Slots, and lists for the few related values kept as evidence: an open bucket per
    entity is the agent's largest state (1.6 kB instead of 2.3 kB, `make bench`).
    """

    start_ms: int
    events: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    distinct: dict[str, set[str]] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    maxes: dict[str, float] = field(default_factory=dict)
    ips: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    def __setstate__(self, state: Any) -> None:
        # Snapshots saved before Bucket had slots hold a plain dict of attributes, and sets.
        slots = state[1] if isinstance(state, tuple) else state
        for name, value in slots.items():
            object.__setattr__(
                self, name, list(value) if isinstance(value, set) and name in _RELATED else value
            )

    def add(self, doc: dict[str, Any], ts_ms: int, features: list[FeatureSpec]) -> None:
        self.events += 1
        self.first_ms = ts_ms if self.first_ms is None else min(self.first_ms, ts_ms)
        self.last_ms = ts_ms if self.last_ms is None else max(self.last_ms, ts_ms)
        for spec in features:
            self._add_feature(doc, spec)
        # Full sets take no more, so their fields are not even looked up.
        if len(self.ips) < MAX_RELATED:
            _keep_some(self.ips, values_of(doc, "source.ip") + values_of(doc, "related.ip"))
        if len(self.users) < MAX_RELATED:
            _keep_some(self.users, values_of(doc, "user.name") + values_of(doc, "related.user"))
        if len(self.hosts) < MAX_RELATED:
            _keep_some(self.hosts, values_of(doc, "host.name") + values_of(doc, "host.hostname"))

    def _add_feature(self, doc: dict[str, Any], spec: FeatureSpec) -> None:
        if spec.kind in ("count", "ratio"):
            if spec.where is None or spec.where.matches(doc):
                self.counts[spec.name] = self.counts.get(spec.name, 0) + 1
            return
        assert spec.field is not None  # checked when the spec was loaded
        if spec.where is not None and not spec.where.matches(doc):
            return
        values = values_of(doc, spec.field)
        if spec.kind == "distinct":
            seen = self.distinct.setdefault(spec.name, set())
            if len(seen) < MAX_DISTINCT:
                seen.update(clean(v) for v in values)
            return
        numbers = [n for n in (_number(v) for v in values) if n is not None]
        if spec.kind == "sum":
            self.sums[spec.name] = self.sums.get(spec.name, 0.0) + sum(numbers)
        elif numbers:
            self.maxes[spec.name] = max([self.maxes.get(spec.name, -math.inf), *numbers])

    def vector(self, features: list[FeatureSpec]) -> dict[str, float]:
        return {spec.name: _transform(self._raw(spec), spec.transform) for spec in features}

    def raw(self, features: list[FeatureSpec]) -> dict[str, float]:
        return {spec.name: self._raw(spec) for spec in features}

    def _raw(self, spec: FeatureSpec) -> float:
        if spec.kind == "count":
            return float(self.counts.get(spec.name, 0))
        if spec.kind == "ratio":
            return self.counts.get(spec.name, 0) / self.events if self.events else 0.0
        if spec.kind == "distinct":
            return float(len(self.distinct.get(spec.name, ())))
        if spec.kind == "sum":
            return self.sums.get(spec.name, 0.0)
        return self.maxes.get(spec.name, 0.0)


_RELATED = ("ips", "users", "hosts")


def _keep_some(target: list[str], values: list[Any]) -> None:
    """Add distinct values until MAX_RELATED are kept (a list: at most 20, so `in` is cheap)."""
    for value in values:
        if len(target) >= MAX_RELATED:
            return
        if not isinstance(value, dict | list):
            text = clean(value)
            if text not in target:
                target.append(text)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _transform(value: float, how: str) -> float:
    return math.log1p(max(value, 0.0)) if how == "log1p" else value


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@dataclass
class BucketTable:
    """Open buckets per entity, capped: the least recently active entity is evicted first."""

    span: timedelta
    max_entities: int
    open: OrderedDict[str, dict[int, Bucket]] = field(default_factory=OrderedDict)
    evicted_entities: int = 0
    evicted_events: int = 0

    @property
    def span_ms(self) -> int:
        return int(self.span.total_seconds() * 1000)

    def add(
        self, entity: str, ts_ms: int, doc: dict[str, Any], features: list[FeatureSpec]
    ) -> None:
        start = ts_ms - ts_ms % self.span_ms
        buckets = self.open.get(entity)
        if buckets is None:
            buckets = self.open[entity] = {}
            self._evict_beyond_cap()
        else:
            self.open.move_to_end(entity)
        bucket = buckets.get(start)
        if bucket is None:
            bucket = buckets[start] = Bucket(start)
        bucket.add(doc, ts_ms, features)

    def _evict_beyond_cap(self) -> None:
        while len(self.open) > self.max_entities:
            _, dropped = self.open.popitem(last=False)
            self.evicted_entities += 1
            self.evicted_events += sum(b.events for b in dropped.values())

    def close_until(self, cutoff_ms: int) -> list[tuple[str, Bucket]]:
        """Remove and return every bucket that ends at or before `cutoff_ms`, in time order."""
        closed: list[tuple[str, Bucket]] = []
        for entity in list(self.open):
            buckets = self.open[entity]
            for start in [s for s in buckets if s + self.span_ms <= cutoff_ms]:
                closed.append((entity, buckets.pop(start)))
            if not buckets:
                del self.open[entity]
        closed.sort(key=lambda item: (item[1].start_ms, item[0]))
        return closed
