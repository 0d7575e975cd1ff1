"""From events to feature vectors: per detector, per entity, per time bucket.

A detector names a filter (which events count), an entity field (who the
bucket belongs to) and features (what is measured in each bucket). Buckets
are tumbling windows aligned on the epoch, so the same events always fall in
the same buckets whatever the polling rhythm. A `rise` feature compares a
bucket with the same entity's own past buckets (`Baselines`), so an account
that is always busy is judged against itself, not against quiet ones.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nis2triage.config import Duration
from nis2triage.rules.options import FieldName

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


Getter = Callable[[dict[str, Any]], Any]
_MISSING = object()


def get_field(doc: dict[str, Any], path: str) -> Any:
    """The value at a dotted ECS path, nested (`source: {ip: ..}`) or flat (`source.ip`).

    At each level the rest of the path is tried as one flat key first, then its first
    segment as a nested object.
    """
    return getter(path)(doc)


@functools.lru_cache(maxsize=4096)
def getter(path: str) -> Getter:
    """`get_field` for one path, as a function: the hot loops take it once per batch.

    The one- and two-segment paths that most ECS fields have get functions of their own,
    without a loop: looking fields up was the agent's hottest code (`make bench`).
    """
    steps = _steps(path)
    if len(steps) == 1:
        return lambda doc: doc.get(path)
    if len(steps) == 2:
        (whole, head), (last, _) = steps
        assert head is not None  # a first step always has a segment after it

        def two(doc: dict[str, Any]) -> Any:
            value = doc.get(whole, _MISSING)
            if value is not _MISSING:
                return value
            inner = doc.get(head)
            return inner.get(last) if isinstance(inner, dict) else None

        return two
    return functools.partial(_walk, steps)


def _walk(steps: tuple[tuple[str, str | None], ...], doc: dict[str, Any]) -> Any:
    node = doc
    for rest, head in steps:
        value = node.get(rest, _MISSING)
        if value is not _MISSING:
            return value
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


def as_list(value: Any) -> list[Any]:
    """A field's value as the list of its values: none, its elements, or itself."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def named_values(value: Any) -> list[Any]:
    """The values of a field that can name something (an entity, an account counted as
    distinct, evidence): its elements or itself, without nulls, objects and lists.

    The node keeps no null of an array (`source.ip: [null]` holds no address) and indexes
    no object as a value; read as the texts "None" or "{'ip': ...}", such values joined
    every event holding one into a made-up entity, or counted as one more account."""
    return [one for one in as_list(value) if one is not None and not isinstance(one, dict | list)]


class Match(BaseModel):
    """Field conditions, all of which must hold: `{event.outcome: failure, event.category: [a, b]}`.

    A list means any of its values; a field holding a list matches when any element does.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Field names checked as an entity's are: `event.outcome ` (a space after it) names a
    # field no event has, so a filter on it silently took nothing.
    all_of: dict[FieldName, Any] = Field(default_factory=dict)
    none_of: dict[FieldName, Any] = Field(default_factory=dict)
    exists: list[FieldName] = Field(default_factory=list)

    @field_validator("all_of", "none_of")
    @classmethod
    def _values_are_scalars(cls, wanted: dict[str, Any]) -> dict[str, Any]:
        # An object would be compared as its Python text and so never match: say so.
        for name, value in wanted.items():
            if value == []:
                # Any of no values: an all_of that takes no event, a none_of that leaves
                # none out, either without a word.
                raise ValueError(
                    f"{name}: an empty list names no value; give at least one, or leave "
                    "the condition out"
                )
            for one in value if isinstance(value, list) else [value]:
                if isinstance(one, dict | list) or one is None:
                    raise ValueError(
                        f"{name}: {one!r} is not a value a field can hold here; give a "
                        "string, number or true/false, or a list of them"
                    )
        return wanted

    @cached_property
    def compiled(self) -> tuple[Checks, Checks]:
        """The wanted values as sets of text, built once rather than for every event."""
        return (
            tuple((f, _wanted(w)) for f, w in self.all_of.items()),
            tuple((f, _wanted(w)) for f, w in self.none_of.items()),
        )

    def matches(self, doc: dict[str, Any]) -> bool:
        return self.matcher()(doc)

    def fields(self) -> list[str]:
        """Every field the conditions look at."""
        return [*self.exists, *self.all_of, *self.none_of]

    def matcher(self) -> Callable[[dict[str, Any]], bool]:
        """`matches` as a function with its getters bound, for a loop over many events.

        Built on demand, not cached on the model: a function cannot go into a snapshot.
        """
        exists = tuple(getter(path) for path in self.exists)
        all_of, none_of = (tuple((getter(f), w) for f, w in c) for c in self.compiled)

        def matches(doc: dict[str, Any]) -> bool:
            for get in exists:
                # `[null]` holds no value, as for the node's `exists` query.
                if all(v is None for v in as_list(get(doc))):
                    return False
            for get, wanted in all_of:
                value = get(doc)
                # A single value, the usual case, inline: this runs per event and detector.
                if isinstance(value, list):
                    if not any(str(v) in wanted for v in value):
                        return False
                elif value is None or str(value) not in wanted:
                    return False
            return not any(_value_matches(get(doc), wanted) for get, wanted in none_of)

        return matches


# A boolean is read as the text of the JSON value: true as "True", and "true" (a shipper
# writing it as text, which a boolean field indexes as true) as itself.
_TRUE, _FALSE = ("True", "true"), ("False", "false")
_BOOLEAN_SPELLINGS = {"True": _TRUE, "true": _TRUE, "False": _FALSE, "false": _FALSE}


def _wanted(want: Any) -> frozenset[str]:
    """The texts an event's value may have to meet `want`; a wanted true or false (as YAML
    or as text) takes true as JSON and as the text "true", as the node and Kibana do, and
    a wanted whole number also takes it sent as a float (4625.0), as a numeric field does.
    Spelt out here once, so that the per-event check stays one set lookup."""
    texts = [str(w) for w in want] if isinstance(want, list) else [str(want)]
    return frozenset(t for text in texts for t in _spellings(text))


def _spellings(text: str) -> tuple[str, ...]:
    if text in _BOOLEAN_SPELLINGS:
        return _BOOLEAN_SPELLINGS[text]
    if re.fullmatch(r"-?\d{1,15}", text):
        return (text, f"{int(text)}.0")
    return (text,)


def _value_matches(value: Any, wanted: frozenset[str]) -> bool:
    if isinstance(value, list):
        return any(str(v) in wanted for v in value)
    return value is not None and str(value) in wanted


class FeatureSpec(BaseModel):
    """One number per entity and bucket.

    `rise` is the amount by which the feature `of` exceeds the entity's own
    exponentially weighted mean over its past buckets (0 when below it); `in_model: false`
    keeps a feature for the message, the evidence and as the base of a rise only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Literal["count", "distinct", "ratio", "sum", "max", "rise"]
    field: FieldName | None = None
    where: Match | None = None
    transform: Literal["none", "log1p"] = "none"
    of: str | None = None
    half_life: Duration | None = None
    in_model: bool = True

    def model_post_init(self, _: Any) -> None:
        if self.kind in ("distinct", "sum", "max") and not self.field:
            raise ValueError(f"feature {self.name}: kind {self.kind} needs a field")
        if self.kind == "ratio" and self.where is None:
            raise ValueError(f"feature {self.name}: kind ratio needs `where` (the numerator)")
        if self.kind == "rise":
            self._check_rise()
        elif self.of is not None or self.half_life is not None:
            raise ValueError(f"feature {self.name}: `of` and `half_life` belong to kind rise")

    def _check_rise(self) -> None:
        if self.of is None or self.half_life is None:
            raise ValueError(
                f"feature {self.name}: kind rise needs `of` (the feature it follows) and "
                "`half_life` (how fast the entity's past fades, e.g. 6h)"
            )
        if self.field is not None or self.where is not None or self.transform != "none":
            raise ValueError(
                f"feature {self.name}: kind rise takes no field, where or transform: "
                f"give them to the feature {self.of!r} it follows"
            )


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

    def vector(self, features: list[FeatureSpec]) -> dict[str, float]:
        vector = {}
        for spec in features:
            # The usual kinds inline: this runs for every feature of every closed bucket
            # (`make bench`).
            name, kind = spec.name, spec.kind
            if kind == "count":
                value = float(self.counts.get(name, 0))
            elif kind == "distinct":
                value = float(len(self.distinct.get(name, ())))
            else:
                value = self.raw_value(spec)
            vector[name] = math.log1p(max(value, 0.0)) if spec.transform == "log1p" else value
        return vector

    def raw(self, features: list[FeatureSpec]) -> dict[str, float]:
        return {spec.name: self.raw_value(spec) for spec in features}

    def raw_value(self, spec: FeatureSpec) -> float:
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
# Where the evidence kept with each bucket comes from: addresses, users, hosts.
_EVIDENCE = {
    "ips": ("source.ip", "related.ip"),
    "users": ("user.name", "related.user"),
    "hosts": ("host.name", "host.hostname"),
}
EVIDENCE_FIELDS = tuple(path for paths in _EVIDENCE.values() for path in paths)
Adder = Callable[[Bucket, dict[str, Any]], None]


class Filler:
    """What one event adds to a bucket, with the features' getters and conditions bound.

    Made once per batch of events, not looked up per event and feature: filling
    buckets was the largest part of the agent's per-event work (`make bench`).
    """

    def __init__(self, features: Sequence[FeatureSpec]) -> None:
        # Events per field whose negative values a log1p measure left out (see `_adder`).
        self.negatives = LeftOut()
        # Events per field whose value a sum or max could not read as a number.
        self.not_numbers = LeftOut()
        self._adders = [_adder(spec, self.negatives, self.not_numbers) for spec in features]
        self._evidence = [
            (name, tuple(_two_steps(path) for path in paths)) for name, paths in _EVIDENCE.items()
        ]

    def add(self, bucket: Bucket, doc: dict[str, Any], ts_ms: int) -> None:
        bucket.events += 1
        if bucket.first_ms is None or ts_ms < bucket.first_ms:
            bucket.first_ms = ts_ms
        if bucket.last_ms is None or ts_ms > bucket.last_ms:
            bucket.last_ms = ts_ms
        for add in self._adders:
            add(bucket, doc)
        for name, paths in self._evidence:
            kept: list[str] = getattr(bucket, name)
            # Full lists take no more, so their fields are not even looked up.
            if len(kept) < MAX_RELATED:
                for whole, head, last in paths:
                    # `getter`'s two-segment lookup, inline: six per event added.
                    value = doc.get(whole, _MISSING)
                    if value is _MISSING:
                        inner = doc.get(head)
                        value = inner.get(last) if isinstance(inner, dict) else None
                    if value is not None:
                        _keep(kept, value)


def _two_steps(path: str) -> tuple[str, str, str]:
    """A two-segment path as (itself, its first segment, its second)."""
    head, _, last = path.partition(".")
    assert head and last and "." not in last, path
    return path, head, last


@dataclass
class LeftOut:
    """Events whose values the measures of one batch left out, by field (negative ones on
    a log scale, or ones that are no number): each event once, however many features
    read the field or entities it counts for."""

    counts: Counter[str] = field(default_factory=Counter)
    # The last event counted per field, by identity (the adders see one event per entity).
    last: dict[str, object] = field(default_factory=dict)

    def count(self, field_name: str, doc: object) -> None:
        if self.last.get(field_name) is not doc:
            self.last[field_name] = doc
            self.counts[field_name] += 1


def _adder(spec: FeatureSpec, negatives: LeftOut, not_numbers: LeftOut) -> Adder:
    """The function that adds one event to a bucket's measure of `spec`.

    A `sum` or `max` on a log scale (`transform: log1p`) measures a magnitude (bytes,
    durations) and takes no negative value: one event reporting -50 GB cancelled a real
    50 GB transfer in its bucket and hid an exfiltration alert. Such values are left out
    and the event counted in `negatives` under its field, once however many features
    read the field or entities the event counts for."""
    name = spec.name
    where = spec.where.matcher() if spec.where is not None else None
    if spec.kind in ("count", "ratio"):

        def count(bucket: Bucket, doc: dict[str, Any]) -> None:
            if where is None or where(doc):
                bucket.counts[name] = bucket.counts.get(name, 0) + 1

        return count
    assert spec.field is not None  # checked when the spec was loaded
    get = getter(spec.field)
    if spec.kind == "distinct":

        def distinct(bucket: Bucket, doc: dict[str, Any]) -> None:
            if where is not None and not where(doc):
                return
            value = get(doc)
            seen = bucket.distinct.setdefault(name, set())
            if len(seen) >= MAX_DISTINCT or value is None:
                return
            if isinstance(value, str):  # the usual case, without a list
                seen.add(clean(value))
            else:
                seen.update(clean(v) for v in named_values(value))

        return distinct

    is_sum = spec.kind == "sum"
    magnitude = spec.transform == "log1p"
    field_name = spec.field

    def numeric(bucket: Bucket, doc: dict[str, Any]) -> None:
        if where is not None and not where(doc):
            return
        values = as_list(get(doc))
        numbers = [n for n in (_number(v) for v in values) if n is not None]
        if len(numbers) < len(values):
            # "50 GB", true or NaN: counted as nothing, which must not pass unseen.
            not_numbers.count(field_name, doc)
        if magnitude and numbers and min(numbers) < 0:
            negatives.count(field_name, doc)
            numbers = [n for n in numbers if n >= 0]
        if is_sum:
            bucket.sums[name] = bucket.sums.get(name, 0.0) + sum(numbers)
        elif numbers:
            bucket.maxes[name] = max([bucket.maxes.get(name, -math.inf), *numbers])

    return numeric


def _keep(target: list[str], value: Any) -> None:
    """Add the field value's distinct texts until MAX_RELATED are kept (a list of at most
    20, so `in` is cheap); objects and nested lists are not evidence."""
    if isinstance(value, str):  # the usual case, first
        text = clean(value)
        if len(target) < MAX_RELATED and text not in target:
            target.append(text)
        return
    for one in named_values(value):
        if len(target) >= MAX_RELATED:
            return
        text = clean(one)
        if text not in target:
            target.append(text)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        # OverflowError: a whole number past the largest double (400 digits), which the
        # node keeps in `_source` under `ignore_malformed`; it failed the whole event.
        return None
    return number if math.isfinite(number) else None


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
    # The start of each entity's last judged bucket, for the entities judged most recently
    # (capped like `open`): an event that falls in a bucket already judged came too late,
    # and is counted in `late_events` rather than opening the bucket again, which would
    # judge its late part as a bucket of its own under the same alert id.
    # Missing: an entity pushed out of `judged` by the cap is forgotten, so a late event of
    # its still opens a judged bucket again (the alert is only re-routed, but the model
    # learns that bucket a second time). Bounded memory was chosen over remembering all.
    judged: OrderedDict[str, int] = field(default_factory=OrderedDict)
    late_events: int = 0
    # The entities with an open bucket at each start, so that closing looks only at the
    # buckets that close rather than at every open entity (`make bench`). Kept exactly
    # in step with `open` (evictions included), so it is bounded by the cap as well; not
    # saved in snapshots, but rebuilt from `open` when one is loaded.
    starts: dict[int, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._span_ms = _millis(self.span)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Snapshots of earlier versions also hold `earliest_ms`, now worked out from `starts`.
        self.__dict__.update({k: v for k, v in state.items() if k != "earliest_ms"})
        self.__dict__.setdefault("judged", OrderedDict())  # not in older snapshots
        self._span_ms = _millis(self.span)
        self.starts = _starts_of(self.open)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_span_ms", "starts")}

    @property
    def span_ms(self) -> int:
        return self._span_ms

    @property
    def earliest_ms(self) -> int | None:
        """When the earliest open bucket starts (None: none is open)."""
        return min(self.starts, default=None)

    def add(self, entity: str, ts_ms: int, doc: dict[str, Any], filler: Filler) -> None:
        start = ts_ms - ts_ms % self._span_ms
        buckets = self.open.get(entity)
        bucket = None if buckets is None else buckets.get(start)
        if bucket is None:
            last = self.judged.get(entity)
            if last is not None and start <= last:
                self.late_events += 1
                return
            if buckets is None:
                buckets = self.open[entity] = {}
                self._evict_beyond_cap()
            else:
                self.open.move_to_end(entity)
            bucket = buckets[start] = Bucket(start)
            self.starts.setdefault(start, set()).add(entity)
        else:
            self.open.move_to_end(entity)
        filler.add(bucket, doc, ts_ms)

    def _evict_beyond_cap(self) -> None:
        while len(self.open) > self.max_entities:
            entity, dropped = self.open.popitem(last=False)
            self.evicted_entities += 1
            self.evicted_events += sum(b.events for b in dropped.values())
            for start in dropped:
                self._unindex(start, entity)

    def _unindex(self, start: int, entity: str) -> None:
        entities = self.starts[start]
        entities.discard(entity)
        if not entities:
            del self.starts[start]

    def close_until(self, cutoff_ms: int) -> list[tuple[str, Bucket]]:
        """Remove and return every bucket that ends at or before `cutoff_ms`, in time order
        (and by entity within one start)."""
        earliest = self.earliest_ms
        if earliest is None or earliest + self._span_ms > cutoff_ms:
            # Nothing can close yet: the agent asks after every page.
            return []
        closed: list[tuple[str, Bucket]] = []
        for start in sorted(s for s in self.starts if s + self._span_ms <= cutoff_ms):
            for entity in sorted(self.starts.pop(start)):
                buckets = self.open[entity]
                closed.append((entity, buckets.pop(start)))
                if not buckets:
                    del self.open[entity]
                self._mark_judged(entity, start)
        return closed

    def _mark_judged(self, entity: str, start: int) -> None:
        # Starts close in ascending order, so this one is the entity's latest.
        self.judged[entity] = start
        self.judged.move_to_end(entity)
        if len(self.judged) > self.max_entities:
            self.judged.popitem(last=False)


def _starts_of(table: dict[str, dict[int, Bucket]]) -> dict[int, set[str]]:
    starts: dict[int, set[str]] = {}
    for entity, buckets in table.items():
        for start in buckets:
            starts.setdefault(start, set()).add(entity)
    return starts


@dataclass(frozen=True)
class Rising:
    """A detector's rise features as (name, the feature it follows, the newest bucket's
    weight): worked out once per close rather than per bucket and feature."""

    terms: tuple[tuple[str, str, float], ...]

    @classmethod
    def of(cls, specs: Sequence[FeatureSpec], span: timedelta) -> Rising:
        terms = []
        for spec in specs:
            if spec.of is not None:
                assert spec.half_life is not None  # checked when the spec was loaded
                terms.append((spec.name, spec.of, _newest_weight(spec.half_life, span)))
        return cls(tuple(terms))

    def over(self, expected: dict[str, float], values: dict[str, float]) -> dict[str, float]:
        """How far each followed feature lies above the entity's expected level (0 below)."""
        return {name: max(0.0, values[of] - expected[name]) for name, of, _ in self.terms}


@dataclass
class Baselines:
    """Each entity's own recent level of some features: exponentially weighted means.

    A bucket in which the entity did nothing counts as a zero, so the mean of an entity
    that went quiet fades with `half_life`, and an entity never seen (or evicted) starts
    from zero: its first bucket rises by its whole value. Capped like the open buckets:
    the least recently judged entity is evicted first, and counted.
    """

    span: timedelta
    max_entities: int
    means: OrderedDict[str, tuple[int, dict[str, float]]] = field(default_factory=OrderedDict)
    evicted: int = 0

    def rises(
        self, entity: str, start_ms: int, values: dict[str, float], rising: Rising
    ) -> dict[str, float]:
        """Each rise feature for this bucket, from the entity's past only."""
        return rising.over(self.expected(entity, start_ms, rising), values)

    def update(
        self,
        entity: str,
        start_ms: int,
        values: dict[str, float],
        rising: Rising,
        expected: dict[str, float] | None = None,
    ) -> None:
        """Fold this bucket into the entity's means (after it was judged: score first).

        `expected` is what `expected` gave for this bucket, if the caller kept it.
        """
        if expected is None or entity not in self.means:
            # Also when the entity was evicted since `expected` was worked out (by another
            # entity of the same slot, at the cap): it starts again from zero.
            expected = self.expected(entity, start_ms, rising)
        means = {
            name: (1 - weight) * expected[name] + weight * values[of]
            for name, of, weight in rising.terms
        }
        self.store(entity, start_ms, means)

    def store(self, entity: str, start_ms: int, means: dict[str, float]) -> None:
        """The entity's means as of the bucket starting at `start_ms`; the least recently
        stored entity is evicted beyond the cap."""
        self.means[entity] = (start_ms, means)
        self.means.move_to_end(entity)
        while len(self.means) > self.max_entities:
            self.means.popitem(last=False)
            self.evicted += 1

    @property
    def span_ms(self) -> int:
        return _millis(self.span)

    def expected(self, entity: str, start_ms: int, rising: Rising) -> dict[str, float]:
        """The means carried to this bucket: the empty buckets since the last one pull them down."""
        found = self.means.get(entity)
        if found is None:
            # Never seen (or evicted): every mean starts from zero.
            return {name: 0.0 for name, _, _ in rising.terms}
        last_ms, means = found
        skipped = max(0, (start_ms - last_ms) // _millis(self.span) - 1)
        return {
            name: means.get(name, 0.0) * (1 - weight) ** skipped for name, _, weight in rising.terms
        }


@functools.lru_cache(maxsize=256)
def _millis(span: timedelta) -> int:
    # Cached: asked for every event added to a bucket table.
    return int(span.total_seconds() * 1000)


def _newest_weight(half_life: timedelta, span: timedelta) -> float:
    buckets_per_half_life = half_life / span
    return 1.0 - math.pow(0.5, 1.0 / buckets_per_half_life)
