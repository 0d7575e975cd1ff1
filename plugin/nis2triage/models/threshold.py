"""Adaptive alert thresholds: an online quantile of past scores, with a floor."""

from __future__ import annotations

from dataclasses import dataclass, field

from river import stats


@dataclass
class AdaptiveThreshold:
    """Alert when a score exceeds the `q`-quantile of the scores seen so far and `floor`.

    The quantile follows the stream (River's P² estimator), so the bar rises in a
    noisy environment and falls in a quiet one; the floor stops a quiet stream from
    alerting on every small change.
    """

    q: float
    floor: float
    quantile: stats.Quantile = field(init=False)

    def __post_init__(self) -> None:
        self.quantile = stats.Quantile(self.q)

    def value(self) -> float:
        current = self.quantile.get()
        return max(self.floor, float(current) if current is not None else self.floor)

    def exceeded(self, score: float) -> bool:
        return score > self.value()

    def update(self, score: float) -> None:
        self.quantile.update(score)
