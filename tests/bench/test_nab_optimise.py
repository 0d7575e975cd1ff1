"""The threshold sweep and the 0..100 normalisation against the null and perfect detectors."""

from __future__ import annotations

import numpy as np
import pytest

from nis2triage.bench.nab_corpus import LabelledSeries, Profile
from nis2triage.bench.nab_score import ScoredSeries, optimise, raw_score, sweep

STANDARD = Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
LOW_FP = Profile("reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0)
LOW_FN = Profile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)
PROFILES = [pytest.param(p, id=p.name) for p in (STANDARD, LOW_FP, LOW_FN)]

CORPUS = (
    LabelledSeries("a", length=200, windows=((60, 79), (150, 169))),
    LabelledSeries("b", length=120, windows=((90, 99),)),
    LabelledSeries("quiet", length=150, windows=()),
)


def scored(fill: float, marks: dict[str, dict[int, float]]) -> list[ScoredSeries]:
    out = []
    for labels in CORPUS:
        scores = np.full(labels.length, fill)
        for row, value in marks.get(labels.name, {}).items():
            scores[row] = value
        out.append(ScoredSeries(labels, scores))
    return out


@pytest.mark.parametrize("profile", PROFILES)
def test_the_perfect_detector_scores_100(profile: Profile) -> None:
    perfect = scored(0.0, {"a": {60: 1.0, 150: 1.0}, "b": {90: 1.0}})

    assert optimise(perfect, profile).score == pytest.approx(100.0)


@pytest.mark.parametrize("profile", PROFILES)
def test_the_null_detector_scores_0(profile: Profile) -> None:
    assert optimise(scored(0.0, {}), profile).score == pytest.approx(0.0)


def test_a_detector_firing_everywhere_loses_to_firing_nowhere() -> None:
    result = optimise(scored(0.7, {}), STANDARD)

    assert result.threshold == np.inf
    assert result.score == pytest.approx(0.0)


def test_the_sweep_picks_the_threshold_that_keeps_hits_and_drops_false_alarms() -> None:
    # Hits score 0.9 or 0.8; false alarms 0.85 (one, cheap) and 0.6 (many, in the quiet file).
    marks = {"a": {60: 0.9, 150: 0.8, 30: 0.85}, "b": {90: 0.9}, "quiet": {40: 0.6, 50: 0.6}}

    result = optimise(scored(0.0, marks), STANDARD)

    assert result.threshold == 0.8
    assert result.raw == pytest.approx(3.0 - 0.11)


def test_the_sweep_agrees_with_direct_scoring_at_every_threshold() -> None:
    rng = np.random.default_rng(7)
    corpus = [ScoredSeries(s, rng.random(s.length).round(2)) for s in CORPUS]

    thresholds, totals = sweep(corpus, LOW_FN)

    direct = [sum(raw_score(s, LOW_FN, t) for s in corpus) for t in thresholds]
    assert totals == pytest.approx(direct)


def test_a_nan_score_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN or infinity"):
        ScoredSeries(CORPUS[1], np.full(120, np.nan))
