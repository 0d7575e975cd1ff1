"""The benchmark's arithmetic: percentiles of repeated runs, and alerts scored against attacks.

An alert detects an attack when it names one of the attack's entities in the
same ECS field and its window overlaps the attack's span. Precision counts
alerts that detect some attack; recall counts attacks detected by some alert;
time to detect runs from the attack's first event to the earliest such alert's
time (a bucket's end, or the event that completed a rule's count).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nis2triage.bench.stream import Attack
from nis2triage.records import Alert


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolating linearly between ranks (numpy's default)."""
    if not values:
        raise ValueError("no values to take a percentile of")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def detects(alert: Alert, attack: Attack) -> bool:
    """Same entity in the same field, and overlapping windows."""
    if alert.entity not in attack.entities.get(alert.entity_field, ()):
        return False
    return alert.start <= attack.end and alert.end >= attack.start


@dataclass(frozen=True)
class KindScore:
    """Recall and time to detect for one kind of attack."""

    kind: str
    attacks: int
    detected: int
    seconds_to_detect: tuple[float, ...]


@dataclass(frozen=True)
class Accuracy:
    """Alerts against attacks: the counts behind precision and recall, and detection delays."""

    alerts: int
    true_alerts: int
    attacks: int
    detected: int
    by_kind: tuple[KindScore, ...]

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 0.0

    @property
    def recall(self) -> float:
        return self.detected / self.attacks if self.attacks else 0.0


def score(alerts: Sequence[Alert], attacks: Sequence[Attack]) -> Accuracy:
    """Match every alert against every attack (a day holds few of either)."""
    true_alerts = sum(1 for a in alerts if any(detects(a, k) for k in attacks))
    delays = [_delay(alerts, attack) for attack in attacks]
    kinds = sorted({k.kind for k in attacks})
    by_kind = tuple(_kind_score(kind, attacks, delays) for kind in kinds)
    detected = sum(1 for d in delays if d is not None)
    return Accuracy(len(alerts), true_alerts, len(attacks), detected, by_kind)


def _delay(alerts: Sequence[Alert], attack: Attack) -> float | None:
    """Seconds from the attack's first event to its earliest alert; None when none came."""
    times: list[datetime] = [a.timestamp for a in alerts if detects(a, attack)]
    if not times:
        return None
    return max(0.0, (min(times) - attack.start).total_seconds())


def _kind_score(kind: str, attacks: Sequence[Attack], delays: list[float | None]) -> KindScore:
    mine = [d for k, d in zip(attacks, delays, strict=True) if k.kind == kind]
    found = tuple(d for d in mine if d is not None)
    return KindScore(kind, len(mine), len(found), found)
