"""The range rule: a value well outside everything seen so far is an anomaly.

Measured on NAB (../shared/docs/anomaly-notes.md, and again with
nis2triage.bench.nab_run), this rule alone scores about 51 and, laid over a
Holt forecast's anomaly likelihood, lifts it from 38 to 58 (standard): a
learning model absorbs a level shift or a burst as the new normal within a few
rows, while the running minimum and maximum remember it. It is the online form
of a static "above the highest value ever seen" alert, with a margin so that
ordinary drift at the edge of the range does not fire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RangeSettings:
    """How far outside the seen range a value must fall, and after how many values."""

    # A fraction of the seen range (max - min): 0.05 means 5% beyond the edge.
    margin: float = 0.05
    # The first values always widen a tiny range; wait before firing. 100 is
    # below NAB's shortest probationary period (169 rows), so it never changes a
    # NAB score, and spares a new entity its first few noisy buckets.
    warmup: int = 100

    def __post_init__(self) -> None:
        if self.margin < 0 or self.warmup < 1:
            raise ValueError("the range margin must be >= 0 and the warm-up at least 1 value")


class RangeRule:
    """Fires (1.0) on a value beyond the seen min/max by more than the margin; `score_one`
    scores the value against the values before it, then widens the range with it."""

    def __init__(self, settings: RangeSettings | None = None) -> None:
        self.settings = settings or RangeSettings()
        self._low = math.inf
        self._high = -math.inf
        self._seen = 0

    def score_one(self, value: float) -> float:
        """1.0 when `value` is out of range, else 0.0."""
        score = 1.0 if self.out_of_range(value) else 0.0
        self._low, self._high = min(self._low, value), max(self._high, value)
        self._seen += 1
        return score

    def out_of_range(self, value: float) -> bool:
        """Whether `value` lies beyond the seen range by more than the margin."""
        if self._seen < self.settings.warmup:
            return False
        slack = self.settings.margin * (self._high - self._low)
        return value > self._high + slack or value < self._low - slack
