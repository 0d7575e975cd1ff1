"""A forecaster's one-step error as an anomaly score, with River's Holt-Winters pitfalls guarded.

River offers `anomaly.PredictiveAnomalyDetection` around `time_series.HoltWinters`,
but ../shared/docs/anomaly-notes.md lists three traps in that pair: it forecasts
before its own warm-up check (so it raises until the forecaster has initialised),
Holt-Winters raises ZeroDivisionError when the first season averages 0, and the
default scorer gives exactly 1.0 to 1-3% of points. This wrapper forecasts the
last value until the model is ready, restarts on a zero first season, and scores
the absolute error as a fraction of the range seen so far.
"""

from __future__ import annotations

import math
from typing import Any

from river import time_series

MAX_SEASONALITY = 7 * 24 * 60


class HoltWintersError:
    """One-step Holt-Winters forecast error, as a fraction of the range seen so far.

    `seasonality` 0 leaves the season out (Holt's linear trend method). Dividing by
    the seen range puts the error in [0, 1] whatever the series' unit, so that the
    anomaly likelihood's variance floor means the same on every series. A constant
    series therefore scores 0 throughout, never 1.
    """

    def __init__(
        self, alpha: float = 0.3, beta: float = 0.1, gamma: float = 0.6, seasonality: int = 0
    ) -> None:
        # River's own example settings (time_series.HoltWinters docstring) are the defaults.
        for label, weight in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValueError(f"{label} must be a number between 0 and 1, not {weight!r}")
            if not 0.0 < weight <= 1.0:
                raise ValueError(f"{label} must lie in (0, 1], not {weight}")
        if isinstance(seasonality, bool) or not isinstance(seasonality, int) or seasonality < 0:
            raise ValueError(
                f"seasonality must be a whole number of rows >= 0, not {seasonality!r}"
            )
        # The forecaster keeps a season's values per entity and forecasts nothing before the
        # first season ends: a typo of 10^8 rows would fill the memory slowly, judging nothing.
        if seasonality > MAX_SEASONALITY:
            raise ValueError(
                f"seasonality is counted in buckets and may be at most {MAX_SEASONALITY:,} "
                f"(a week of 1-minute buckets), not {seasonality:,}: each entity keeps a "
                "season of values"
            )
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.seasonality = seasonality
        self._model = self._fresh()
        self._learned = 0
        self._previous: float | None = None
        self._low, self._high = math.inf, -math.inf

    def _fresh(self) -> Any:
        # River's constructors carry no type hints, hence the ignore.
        return time_series.HoltWinters(  # type: ignore[no-untyped-call]
            alpha=self.alpha,
            beta=self.beta,
            gamma=self.gamma if self.seasonality else None,
            seasonality=self.seasonality,
        )

    def ready(self) -> bool:
        """Whether River's model has initialised (after max(2, seasonality) values)."""
        return self._learned >= max(2, self.seasonality)

    def score_one(self, value: float) -> float:
        """The error of the forecast for `value`, in [0, 1]; 0 for the first value."""
        # A numpy float would turn River's division by zero into a silent NaN.
        value = float(value)
        if self._previous is None:
            return 0.0
        forecast = self._model.forecast(horizon=1)[0] if self.ready() else self._previous

        low, high = min(self._low, value), max(self._high, value)
        if high == low:
            return 0.0
        error = abs(value - forecast) / (high - low)
        return min(1.0, error) if math.isfinite(error) else 0.0

    def learn_one(self, value: float) -> None:
        value = float(value)
        try:
            self._model.learn_one(value)
            self._learned += 1
        except ZeroDivisionError:
            # River's Holt-Winters initialises the seasonal terms as value / level, a
            # ratio even in the additive form, and raises when the first season averages
            # 0 (zero counts are common in security data). Drop that season and start
            # on the next one.
            self._model, self._learned = self._fresh(), 0
        self._previous = value
        self._low, self._high = min(self._low, value), max(self._high, value)
