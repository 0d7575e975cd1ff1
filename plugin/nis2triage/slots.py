"""A slot of closed buckets as columns: the buckets of one start, judged together.

The buckets of one start belong to distinct entities and close together (thousands
at once for a per-user detector). Judged one by one, each built a handful of small
dicts (its features, the entity's expected levels, its rises, the model's input):
that was the largest part of closing buckets on a catch-up (`make bench`). Here each
feature is one array over the slot, and the model takes the slot as rows.

The numbers equal those of the one-by-one path to the last bit: numpy only adds,
subtracts, multiplies and compares here, element by element in the same order (exact
in IEEE arithmetic), while logarithms and powers come from Python's `math`, cached
per value, since numpy's vectorised versions may differ in the last place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from nis2triage.features import Baselines, Bucket, FeatureSpec, Rising


class Columns(NamedTuple):
    """A slot's measured features (after their transform) and rises, one row per bucket."""

    names: list[str]
    values: np.ndarray  # (buckets, features): the measured features, then the rises
    expected: np.ndarray  # (buckets, rises): the entity's expected level of each followed feature

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def rows(self, names: Sequence[str]) -> np.ndarray:
        """The values of `names`, in that order, as rows (the model's input)."""
        return self.values[:, [self.names.index(n) for n in names]]


def measured(buckets: Sequence[Bucket], features: Sequence[FeatureSpec]) -> np.ndarray:
    """`Bucket.vector` of every bucket, as an array with a column per feature."""
    columns = np.empty((len(buckets), len(features)))
    for i, spec in enumerate(features):
        raw = _raw_column(buckets, spec)
        if spec.transform == "log1p":
            raw = _log1p(raw)
        columns[:, i] = raw
    return columns


def _raw_column(buckets: Sequence[Bucket], spec: FeatureSpec) -> list[float] | list[int]:
    name = spec.name
    if spec.kind == "count":
        return [b.counts.get(name, 0) for b in buckets]
    if spec.kind == "distinct":
        return [len(b.distinct.get(name, ())) for b in buckets]
    return [b.raw_value(spec) for b in buckets]


def _log1p(values: list[float] | list[int]) -> list[float]:
    """`math.log1p(max(v, 0.0))` of each value; whole numbers (counts) computed once each."""
    known: dict[int, float] = {}
    out = []
    for value in values:
        if type(value) is int:
            found = known.get(value)
            if found is None:
                found = known[value] = math.log1p(max(float(value), 0.0))
            out.append(found)
        else:
            out.append(math.log1p(max(float(value), 0.0)))
    return out


def with_rises(
    values: np.ndarray,
    features: Sequence[FeatureSpec],
    rising: Rising,
    baselines: Baselines,
    entities: Sequence[str],
    start_ms: int,
) -> Columns:
    """The measured columns, with each rise over the entity's expected level after them."""
    names = [f.name for f in features]
    expected = expected_levels(baselines, entities, start_ms, rising)
    followed = values[:, [names.index(of) for _, of, _ in rising.terms]]
    above = followed - expected
    # As `max(0.0, v - e)`: 0 unless above (NaN included).
    rises = np.where(above > 0.0, above, 0.0)
    return Columns(
        [*names, *(name for name, _, _ in rising.terms)],
        np.hstack([values, rises]),
        expected,
    )


def expected_levels(
    baselines: Baselines, entities: Sequence[str], start_ms: int, rising: Rising
) -> np.ndarray:
    """`Baselines.expected` for every entity of the slot: a row each, a column per rise."""
    terms = [(name, 1 - weight) for name, _, weight in rising.terms]
    span = baselines.span_ms
    fades: dict[int, list[float]] = {}
    rows = []
    for entity in entities:
        found = baselines.means.get(entity)
        if found is None:
            rows.append([0.0] * len(terms))
            continue
        last_ms, means = found
        skipped = max(0, (start_ms - last_ms) // span - 1)
        fade = fades.get(skipped)
        if fade is None:
            fade = fades[skipped] = [keep**skipped for _, keep in terms]
        rows.append([means.get(name, 0.0) * f for (name, _), f in zip(terms, fade, strict=True)])
    return np.array(rows, dtype=float).reshape(len(entities), len(terms))


def fold_in(
    baselines: Baselines,
    entities: Sequence[str],
    start_ms: int,
    rising: Rising,
    columns: Columns,
) -> None:
    """`Baselines.update` for every entity of the slot, in order (evictions included)."""
    followed = [columns.column(of) for _, of, _ in rising.terms]
    means = np.column_stack(
        [
            (1 - weight) * columns.expected[:, k] + weight * followed[k]
            for k, (_, _, weight) in enumerate(rising.terms)
        ]
    ).tolist()
    names = [name for name, _, _ in rising.terms]
    for i, entity in enumerate(entities):
        if entity in baselines.means:
            baselines.store(entity, start_ms, dict(zip(names, means[i], strict=True)))
        else:
            # Never seen, or evicted by an entity earlier in this slot: from zero, as
            # `Baselines.update` starts again.
            values = {of: float(followed[k][i]) for k, (_, of, _) in enumerate(rising.terms)}
            baselines.update(entity, start_ms, values, rising)
