"""The Holt-Winters forecast error: River's pitfalls guarded, the error on the seen range."""

from __future__ import annotations

import pytest

from nis2triage.errors import ConfigError
from nis2triage.models.forecast import HoltWintersError
from nis2triage.models.pipeline import ForecastScorer, build


def run(model: HoltWintersError, values: list[float]) -> list[float]:
    scores = []
    for value in values:
        scores.append(model.score_one(value))
        model.learn_one(value)
    return scores


def test_a_first_season_averaging_zero_does_not_raise() -> None:
    model = HoltWintersError(seasonality=4)

    # River alone raises ZeroDivisionError on the fourth zero.
    scores = run(model, [0.0] * 4 + [1.0, 2.0, 3.0, 4.0] * 12)

    assert model.ready()
    assert scores[-1] < scores[12] / 10


def test_scores_before_the_forecaster_is_ready_come_from_the_last_value() -> None:
    model = HoltWintersError(seasonality=10)

    scores = run(model, [0.0, 10.0, 10.0, 5.0])

    assert not model.ready()
    assert scores == [0.0, 1.0, 0.0, 0.5]


def test_a_constant_or_zero_series_scores_zero_throughout() -> None:
    for constant in (0.0, 7.0):
        assert run(HoltWintersError(), [constant] * 500) == [0.0] * 500


def test_the_error_is_a_fraction_of_the_seen_range() -> None:
    model = HoltWintersError()
    run(model, [0.0, 20.0] + [10.0] * 200)

    # Level 10, trend spent: 12 is off by 2 in a seen range of 20.
    assert model.score_one(12.0) == pytest.approx(0.1, abs=1e-3)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        pytest.param({"alpha": 1.5}, r"alpha must lie in \(0, 1\], not 1.5", id="alpha-above-1"),
        pytest.param({"beta": 0}, r"beta must lie in \(0, 1\], not 0", id="beta-zero"),
        pytest.param({"gamma": "high"}, "gamma must be a number", id="gamma-text"),
        pytest.param({"seasonality": -3}, "seasonality must be a whole number", id="season"),
        pytest.param({"seasonality": 2.5}, "seasonality must be a whole number", id="half-row"),
        pytest.param(
            {"seasonality": 10**8}, "at most 10,080 .* not 100,000,000", id="season-too-long"
        ),
    ],
)
def test_bad_parameters_are_refused_naming_the_parameter(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build([{"forecast.HoltWintersError": params}], "n", "spec.yml model")


def test_the_forecaster_scores_its_target_feature_only() -> None:
    scorer = build([{"forecast.HoltWintersError": {}}], "n", "m")
    for _ in range(50):
        scorer.learn_one({"n": 4.0, "other": 100.0})
    scorer.learn_one({"n": 8.0, "other": 0.0})

    assert isinstance(scorer, ForecastScorer)
    assert scorer.score_one({"n": 8.0, "other": 5000.0}) == scorer.score_one({"n": 8.0})


@pytest.mark.parametrize(
    ("steps", "target", "tail", "match"),
    [
        pytest.param([{"forecast.HoltWintersError": {}}], None, "both", "target", id="no-target"),
        pytest.param(
            [{"preprocessing.MinMaxScaler": {}}, {"forecast.HoltWintersError": {}}],
            "n",
            "both",
            "no scaler",
            id="scaled",
        ),
        pytest.param([{"forecast.HoltWintersError": {}}], "n", "upper", "no `tail`", id="tail"),
        pytest.param(
            [{"forecast.HoltWintersError": {}}, {"anomaly.HalfSpaceTrees": {}}],
            None,
            "both",
            "only the last step",
            id="not-last",
        ),
    ],
)
def test_a_forecaster_is_one_step_on_one_feature(
    steps: list, target: str | None, tail: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        build(steps, target, "m", tail)  # type: ignore[arg-type]
