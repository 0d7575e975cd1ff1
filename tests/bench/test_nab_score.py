"""NAB's scoring rules on hand-made series whose scores can be worked out on paper."""

from __future__ import annotations

import numpy as np
import pytest

from nis2triage.bench.nab_corpus import LabelledSeries, Profile
from nis2triage.bench.nab_score import (
    ScoredSeries,
    point_credits,
    probation_length,
    raw_score,
    scaled_sigmoid,
)

STANDARD = Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
LOW_FP = Profile("reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0)
LOW_FN = Profile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)
PROFILES = [pytest.param(p, id=p.name) for p in (STANDARD, LOW_FP, LOW_FN)]

# 100 rows: rows 0-14 are probation; one window of width 10 at rows 40-49.
ONE_WINDOW = LabelledSeries("one", length=100, windows=((40, 49),))


def fired_at(*rows: int, labels: LabelledSeries = ONE_WINDOW) -> ScoredSeries:
    scores = np.zeros(labels.length)
    scores[list(rows)] = 1.0
    return ScoredSeries(labels, scores)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [(100, 15), (1127, 169), (4032, 604), (5000, 750), (22695, 750)],
    ids=["tiny", "shortest-nab", "two-weeks", "cap-reached", "longest-nab"],
)
def test_probation_is_15_percent_capped_at_750_rows(rows: int, expected: int) -> None:
    assert probation_length(rows) == expected


@pytest.mark.parametrize(
    ("position", "expected"),
    [(-1.0, 0.986614), (-0.5, 0.848284), (0.0, 0.0), (1.0, -0.986614), (3.0, -1.0)],
    ids=["window-start", "mid-window", "window-end", "one-width-after", "far-after"],
)
def test_scaled_sigmoid_matches_the_whitepaper_values(position: float, expected: float) -> None:
    assert scaled_sigmoid(np.array([position]))[0] == pytest.approx(expected, abs=1e-6)


def test_first_row_of_a_window_earns_exactly_the_tp_weight() -> None:
    assert raw_score(fired_at(40), STANDARD, threshold=0.5) == pytest.approx(1.0)


def test_last_row_of_a_window_earns_a_quarter() -> None:
    # sigma(-1/10) / sigma(-1), worked out by hand.
    assert raw_score(fired_at(49), STANDARD, threshold=0.5) == pytest.approx(0.248242, abs=1e-6)


def test_an_earlier_detection_scores_more_than_a_later_one() -> None:
    early, late = fired_at(42), fired_at(47)

    assert raw_score(early, STANDARD, 0.5) > raw_score(late, STANDARD, 0.5) > 0


def test_two_detections_in_one_window_count_once() -> None:
    assert raw_score(fired_at(40, 41), STANDARD, threshold=0.5) == pytest.approx(1.0)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_false_alarm_before_any_window_costs_the_fp_weight(profile: Profile) -> None:
    total = raw_score(fired_at(20, 40), profile, threshold=0.5)

    assert total == pytest.approx(1.0 - profile.fp_weight)


def test_a_false_alarm_just_after_a_window_costs_less() -> None:
    # Row 54 is 5 rows past the window's end: position 5 / (10 - 1), sigma = -0.882926.
    total = raw_score(fired_at(40, 54), STANDARD, threshold=0.5)

    assert total == pytest.approx(1.0 - 0.11 * 0.882926, abs=1e-6)


def test_a_false_alarm_three_widths_after_a_window_costs_the_full_weight() -> None:
    assert raw_score(fired_at(40, 77), STANDARD, threshold=0.5) == pytest.approx(1.0 - 0.11)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_missed_window_costs_the_fn_weight(profile: Profile) -> None:
    assert raw_score(fired_at(), profile, threshold=0.5) == -profile.fn_weight


def test_a_detection_in_the_probationary_period_is_ignored() -> None:
    assert raw_score(fired_at(5), STANDARD, threshold=0.5) == -1.0


def test_probation_rows_carry_no_credit() -> None:
    credits = point_credits(ONE_WINDOW)

    assert credits.first_row == 15
    assert len(credits.credit) == 85
