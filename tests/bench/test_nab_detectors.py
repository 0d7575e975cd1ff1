"""The River-based detectors: one contract for all, and the pitfalls each one guards."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nis2triage.bench.nab_detectors import (
    DETECTORS,
    FromSpec,
    GuardedGaussian,
    ScaledHalfSpaceTrees,
    SeriesInfo,
)
from nis2triage.detectors import Detector

FIVE_MINUTES = SeriesInfo("test", step_seconds=300.0)


def run(detector: object, values: list[float]) -> list[float]:
    scores = []
    for value in values:
        scores.append(detector.score_one({"value": value}))  # type: ignore[attr-defined]
        detector.learn_one({"value": value})  # type: ignore[attr-defined]
    return scores


def security_counts() -> list[float]:
    """Zero for a day and a half, then a daily cycle, then a burst."""
    cycle = [5 + 5 * math.sin(2 * math.pi * i / 288) for i in range(576)]
    return [0.0] * 432 + cycle + [80.0] * 5 + cycle[:100]


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_detector_scores_in_0_1_through_zeros_and_a_burst(name: str) -> None:
    scores = run(DETECTORS[name](FIVE_MINUTES), security_counts())

    assert all(0.0 <= s <= 1.0 for s in scores)


# Not "hst": on one scaled feature its scores sit near 0.995 on the cycle and 0.95 on the
# burst, the weakness its NAB score of 14.6 reflects.
@pytest.mark.parametrize("name", ["hw_likelihood_range", "hst_hw_likelihood_range", "range"])
def test_the_burst_scores_above_everything_before_it(name: str) -> None:
    scores = run(DETECTORS[name](FIVE_MINUTES), security_counts())

    # Compared with the second day of the cycle: the first rows after the zeros are news too.
    burst = 432 + 576
    assert max(scores[burst : burst + 5]) > max(scores[432 + 288 : burst])


def test_guarded_gaussian_does_not_flag_a_flat_stretch() -> None:
    scores = run(GuardedGaussian(), [7.0] * 300 + [9.0])

    assert scores[100:300] == [0.0] * 200
    assert scores[-1] == 1.0


def test_half_space_trees_score_without_learning() -> None:
    detector = ScaledHalfSpaceTrees(with_difference=True)
    run(detector, list(np.linspace(0.0, 1.0, 600)))

    first, second = detector.score_one({"value": 5.0}), detector.score_one({"value": 5.0})

    assert first == second


def test_the_daily_season_follows_the_sampling_interval() -> None:
    assert SeriesInfo("hourly", 3600.0).rows_per_day == 24
    assert SeriesInfo("eleven-minute", 660.0).rows_per_day == 131


def test_the_shipped_spec_scores_the_burst_above_the_days_before_it() -> None:
    scores = run(FromSpec.load()(FIVE_MINUTES), security_counts())

    burst = 432 + 576
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert max(scores[burst : burst + 5]) == 1.0
    assert max(scores[432 + 288 : burst]) < 0.5


def test_the_shipped_spec_scores_a_series_as_the_agent_judges_one_entity() -> None:
    factory = FromSpec.load()
    values = security_counts()
    agent = Detector(factory.spec)

    through_bench = run(factory(FIVE_MINUTES), values)
    through_agent = [agent.judge_vector("h", {"events": v}).score for v in values]

    assert through_bench == through_agent
    assert agent.held_out > 0, "an alerting row is held out of the forecast, as in the agent"
