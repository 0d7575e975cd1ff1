"""River pipelines from YAML: only the allow-list, only plain values."""

from __future__ import annotations

import pytest

from nis2triage.errors import ConfigError
from nis2triage.models.pipeline import MultivariateScorer, UnivariateScorer, build


@pytest.mark.parametrize(
    ("steps", "target", "match"),
    [
        pytest.param(
            [{"os.system": {}}], None, "unknown River estimator 'os.system'", id="not-allowed"
        ),
        pytest.param(
            [{"anomaly.HalfSpaceTrees": {"trees": 3}}], None, "no parameter 'trees'", id="bad-param"
        ),
        pytest.param(
            [{"anomaly.HalfSpaceTrees": {"seed": {"__class__": "x"}}}],
            None,
            "seed",
            id="object-param",
        ),
        pytest.param([{"preprocessing.MinMaxScaler": {}}], None, "last step", id="no-detector"),
        pytest.param([{"anomaly.GaussianScorer": {}}], None, "target", id="univariate-no-target"),
        pytest.param([], None, "at least one step", id="empty"),
        # It keeps every point it learns: each score and learn costs more than the last.
        pytest.param(
            [{"anomaly.LocalOutlierFactor": {}}],
            None,
            "keeps every bucket it learns.*anomaly.HalfSpaceTrees",
            id="unbounded",
        ),
    ],
)
def test_bad_models_are_refused(steps: list, target: str | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build(steps, target, "spec.yml model")


def test_scaler_then_half_space_trees_scores_an_outlier_higher() -> None:
    scorer = build(
        [
            {"preprocessing.MinMaxScaler": {}},
            {"anomaly.HalfSpaceTrees": {"window_size": 20, "seed": 1}},
        ],
        None,
        "m",
    )
    for i in range(200):
        scorer.learn_one({"x": float(i % 5)})

    assert isinstance(scorer, MultivariateScorer)
    assert scorer.score_one({"x": 40.0}) > scorer.score_one({"x": 2.0})


def test_gaussian_scorer_on_a_constant_stretch_does_not_alert_on_the_constant() -> None:
    scorer = build([{"anomaly.GaussianScorer": {"grace_period": 5}}], "n", "m")
    for _ in range(50):
        scorer.learn_one({"n": 0.0})

    assert isinstance(scorer, UnivariateScorer)
    # River's GaussianScorer alone scores 1.0 here (zero variance); the guard says 0.
    assert scorer.score_one({"n": 0.0}) == 0.0
    assert scorer.score_one({"n": 3.0}) == 1.0


def test_an_upper_tail_scores_only_what_exceeds_the_usual_value() -> None:
    both = build([{"anomaly.StandardAbsoluteDeviation": {}}], "n", "m")
    upper = build([{"anomaly.StandardAbsoluteDeviation": {}}], "n", "m", tail="upper")
    for i in range(100):
        both.learn_one({"n": float(10 + i % 3)})
        upper.learn_one({"n": float(10 + i % 3)})

    # Mean 11, standard deviation about 0.82: 2 is as far below as 20 is above.
    assert both.score_one({"n": 2.0}) == pytest.approx(11.0, rel=0.02)
    assert upper.score_one({"n": 2.0}) == 0.0
    assert upper.score_one({"n": 20.0}) == pytest.approx(both.score_one({"n": 20.0}))


def test_an_upper_tail_needs_a_one_value_scorer() -> None:
    with pytest.raises(ConfigError, match=r"tail: upper.*one-value scorer"):
        build([{"anomaly.HalfSpaceTrees": {}}], None, "spec.yml model", tail="upper")
