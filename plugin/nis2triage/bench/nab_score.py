"""NAB's scoring rules, written from their published description.

Source: Lavin and Ahmad, "Evaluating Real-time Anomaly Detection Algorithms -
the Numenta Anomaly Benchmark", ICMLA 2015, and NAB's documentation. Where the
paper leaves a detail open, the choice below follows NAB v1.1 as released
(numenta/NAB @ ea702d75cc22), whose published scores it reproduces:

- Probation: the first min(floor(0.15 n), 750) rows of a file are not scored
  (NAB writes the cap as 0.15 x 5000 rows).
- A point inside a window of width w ending at row e sits at y = -(e - i + 1) / w
  (-1 at the window's first row, just below 0 at its last) and is worth
  tp_weight x sigma(y) / sigma(-1), sigma(y) = 2 / (1 + exp(5 y)) - 1, so a detection
  on the first row earns exactly tp_weight. Only a window's earliest detection counts.
- A point after a window sits at y = (i - e) / (w - 1) of the window before it
  and costs fp_weight x sigma(y): a false alarm just after a window is nearly free,
  one 3 widths or more later (or before any window) costs the full fp_weight.
- A window without detection costs fn_weight.
- The threshold is chosen per profile to maximise the corpus total. Every
  distinct score is a candidate (an exhaustive sweep, as NAB v1.1's optimiser
  does; NAB before 1.0 hill-climbed from 0.5 instead); a point is a detection
  when its score is >= the threshold.
- Normalised score = 100 (S - S_null) / (S_perfect - S_null), where S_null is
  the detector that never fires (-fn_weight per window holding a scored row)
  and S_perfect = tp_weight x every labelled window, as NAB computes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from nis2triage.bench.nab_corpus import FloatArray, LabelledSeries, Profile

IntArray = npt.NDArray[np.int64]

PROBATION_FRACTION = 0.15
PROBATION_CAP = 750
FAR_PAST_WINDOW = 3.0  # relative positions from here on cost the full fp_weight


def probation_length(length: int) -> int:
    """Rows at the start of a file that are not scored while detectors learn."""
    return min(math.floor(PROBATION_FRACTION * length), PROBATION_CAP)


def scaled_sigmoid(position: FloatArray) -> FloatArray:
    """sigma(y) = 2 / (1 + exp(5 y)) - 1, and -1 from 3 window widths past a window."""
    clipped = np.minimum(position, FAR_PAST_WINDOW)
    curve: FloatArray = 2.0 / (1.0 + np.exp(5.0 * clipped)) - 1.0
    return np.where(position >= FAR_PAST_WINDOW, -1.0, curve)


MAX_CREDIT = float(scaled_sigmoid(np.array([-1.0]))[0])


@dataclass(frozen=True)
class Credits:
    """What each scored row of one file is worth before the profile's weights.

    `window[k]` is the index of the window holding scored row k, or -1 outside
    every window; `credit[k]` is then in (0, 1] (a hit) or in [-1, 0) (a false alarm).
    """

    first_row: int
    window: IntArray = field(repr=False)
    credit: FloatArray = field(repr=False)


def point_credits(labels: LabelledSeries) -> Credits:
    """The unweighted NAB credit of every row after the probationary period."""
    rows = np.arange(labels.length, dtype=np.float64)
    window = np.full(labels.length, -1, dtype=np.int64)
    credit = np.full(labels.length, -1.0)

    for k, (start, end) in enumerate(labels.windows):
        width = end - start + 1
        inside = slice(start, end + 1)
        window[inside] = k
        credit[inside] = scaled_sigmoid(-(end - rows[inside] + 1) / width) / MAX_CREDIT

        # A one-row window has no width to measure distance by; NAB divides by
        # zero there, so alarms after it keep the full cost of -1.
        if width > 1:
            after = slice(end + 1, _next_start(labels, k))
            credit[after] = scaled_sigmoid((rows[after] - end) / (width - 1))

    first = probation_length(labels.length)
    return Credits(first_row=first, window=window[first:], credit=credit[first:])


def _next_start(labels: LabelledSeries, k: int) -> int:
    return labels.windows[k + 1][0] if k + 1 < len(labels.windows) else labels.length


@dataclass(frozen=True)
class ScoredSeries:
    """A file's labels beside one anomaly score per row from the detector under test."""

    labels: LabelledSeries
    scores: FloatArray = field(compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.scores) != self.labels.length:
            raise ValueError(
                f"{self.labels.name}: {len(self.scores)} scores for {self.labels.length} rows"
            )
        if not np.all(np.isfinite(self.scores)):
            raise ValueError(f"{self.labels.name}: a detector returned NaN or infinity")


@dataclass(frozen=True)
class ProfileResult:
    """The best threshold for one profile, its raw total and its normalised score."""

    profile: str
    threshold: float
    raw: float
    score: float


def raw_score(series: ScoredSeries, profile: Profile, threshold: float) -> float:
    """One file's NAB score when every row scoring >= `threshold` is a detection."""
    credits = point_credits(series.labels)
    detected = series.scores[credits.first_row :] >= threshold

    false_alarms = detected & (credits.window < 0)
    total = profile.fp_weight * float(credits.credit[false_alarms].sum())
    for k in _scored_windows(credits):
        hits = np.flatnonzero(detected & (credits.window == k))
        total += profile.tp_weight * credits.credit[hits[0]] if hits.size else -profile.fn_weight
    return total


def _scored_windows(credits: Credits) -> IntArray:
    """Windows with at least one row after probation; NAB ignores the others when scoring."""
    return np.unique(credits.window[credits.window >= 0])


def sweep(corpus: Sequence[ScoredSeries], profile: Profile) -> tuple[FloatArray, FloatArray]:
    """The corpus total for every candidate threshold, highest threshold first.

    The first candidate is +inf (nothing detected). Lowering the threshold to
    the next distinct score detects every row at that score: a false alarm adds
    its (negative) weight, a hit raises its window from -fn_weight to the
    credit of the best (earliest) row detected so far.
    """
    scores, window, credit = _stack(corpus)
    order = np.argsort(-scores, kind="stable")
    scores, window, credit = scores[order], window[order], credit[order]

    gain = np.where(window < 0, profile.fp_weight * credit, 0.0)
    windows = np.unique(window[window >= 0])
    for k in windows:
        rows = np.flatnonzero(window == k)
        best = np.maximum.accumulate(np.r_[-profile.fn_weight, profile.tp_weight * credit[rows]])
        gain[rows] = np.diff(best)

    baseline = -profile.fn_weight * len(windows)
    totals = baseline + np.cumsum(gain)
    last_of_level = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, bool)
    return np.r_[np.inf, scores[last_of_level]], np.r_[baseline, totals[last_of_level]]


def _stack(corpus: Sequence[ScoredSeries]) -> tuple[FloatArray, IntArray, FloatArray]:
    """Every scored row of the corpus, with windows numbered across files."""
    scores, windows, credits, offset = [], [], [], 0
    for series in corpus:
        part = point_credits(series.labels)
        scores.append(series.scores[part.first_row :])
        windows.append(np.where(part.window >= 0, part.window + offset, -1))
        credits.append(part.credit)
        offset += len(series.labels.windows)
    return np.concatenate(scores), np.concatenate(windows), np.concatenate(credits)


def null_raw(corpus: Sequence[LabelledSeries], profile: Profile) -> float:
    """The total of a detector that never fires: every scored window missed."""
    windows = sum(len(_scored_windows(point_credits(labels))) for labels in corpus)
    return -profile.fn_weight * windows


def perfect_raw(corpus: Sequence[LabelledSeries], profile: Profile) -> float:
    """The total of a detector firing on the first row of every window and nowhere else."""
    return profile.tp_weight * sum(len(labels.windows) for labels in corpus)


def normalise(raw: float, null: float, perfect: float) -> float:
    """NAB's 0..100 scale: 0 for the null detector, 100 for the perfect one."""
    return 100.0 * (raw - null) / (perfect - null)


def optimise(corpus: Sequence[ScoredSeries], profile: Profile) -> ProfileResult:
    """The threshold that maximises the corpus total, as NAB chooses it per profile.

    Ties go to the highest threshold, which is also what NAB's stable sort picks.
    """
    thresholds, totals = sweep(corpus, profile)
    best = int(np.argmax(totals))

    labels = [series.labels for series in corpus]
    score = normalise(float(totals[best]), null_raw(labels, profile), perfect_raw(labels, profile))
    return ProfileResult(profile.name, float(thresholds[best]), float(totals[best]), score)


def score_at(corpus: Sequence[ScoredSeries], profile: Profile, threshold: float) -> ProfileResult:
    """The normalised score at a fixed threshold (rows scoring >= it are detections):
    what a detector scores at its own bar rather than at the best one for the corpus."""
    raw = sum(raw_score(series, profile, threshold) for series in corpus)
    labels = [series.labels for series in corpus]
    score = normalise(raw, null_raw(labels, profile), perfect_raw(labels, profile))
    return ProfileResult(profile.name, threshold, raw, score)
