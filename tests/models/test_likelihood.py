"""The anomaly likelihood on hand-made raw-score streams, with scipy's normal tail as oracle."""

from __future__ import annotations

import math

import pytest
from scipy.stats import norm

from nis2triage.models.likelihood import AnomalyLikelihood, LikelihoodSettings, log_scale

NO_EVIDENCE = log_scale(0.5)  # 0.0301: what an unremarkable row scores
# Fit from the first rows, every row, on raw scores averaged over a single row.
EAGER = LikelihoodSettings(short_window=1, learning_period=0, estimation_samples=5, refit_every=1)


def feed(likelihood: AnomalyLikelihood, raws: list[float]) -> list[float]:
    return [likelihood.score_one(raw) for raw in raws]


@pytest.mark.parametrize(
    ("tail", "expected"),
    [(1.0, 0.0), (0.5, 0.030103), (1e-3, 0.3), (1e-5, 0.5), (0.0, 1.0)],
    ids=["certain", "even", "yellow", "red", "impossible"],
)
def test_log_scale_maps_tails_onto_0_to_1(tail: float, expected: float) -> None:
    assert log_scale(tail) == pytest.approx(expected, abs=1e-6)


def test_a_jump_after_a_constant_stretch_scores_near_1() -> None:
    scores = feed(AnomalyLikelihood(), [0.0] * 600 + [1.0])

    # The average of ten rows is 0.1; the zero variance is floored at 3e-4.
    tail = norm.sf(0.1 / math.sqrt(3e-4))
    assert scores[-1] == pytest.approx(log_scale(tail))
    assert scores[-1] > 0.8


def test_a_constant_stretch_has_zero_variance_yet_scores_no_evidence() -> None:
    scores = feed(AnomalyLikelihood(), [0.2] * 1000)

    assert scores == pytest.approx([NO_EVIDENCE] * 1000)


def test_nothing_is_reported_before_the_first_fit() -> None:
    settings = LikelihoodSettings(learning_period=20, estimation_samples=30)

    scores = feed(AnomalyLikelihood(settings), [0.0] * 49 + [1.0])

    assert scores[-1] == pytest.approx(NO_EVIDENCE)


def test_a_row_is_scored_before_it_is_learned() -> None:
    scores = feed(AnomalyLikelihood(EAGER), [0.0] * 5 + [1.0])

    # Against the zeros alone the 1 is beyond 1e-10; had it been learned first, its tail is 0.01.
    assert scores[-1] == 1.0


def test_a_red_run_keeps_its_full_score_only_on_its_first_row() -> None:
    settings = LikelihoodSettings(short_window=1, learning_period=0, estimation_samples=5)

    scores = feed(AnomalyLikelihood(settings), [0.0] * 5 + [1.0, 1.0])

    assert scores[-2:] == pytest.approx([1.0, 0.3])


def test_a_new_level_of_raw_scores_becomes_normal_after_refits() -> None:
    settings = LikelihoodSettings(learning_period=0, estimation_samples=10, long_window=50)

    scores = feed(AnomalyLikelihood(settings), [0.0] * 100 + [0.5] * 300)

    assert max(scores[100:120]) > 0.8
    assert scores[-1] == pytest.approx(NO_EVIDENCE)


def test_a_window_shorter_than_one_row_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 row"):
        LikelihoodSettings(short_window=0)
