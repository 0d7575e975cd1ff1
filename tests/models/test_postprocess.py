"""Post-processing over a scorer, and one chain per entity."""

from __future__ import annotations

from nis2triage.models.forecast import HoltWintersError
from nis2triage.models.likelihood import LikelihoodSettings
from nis2triage.models.pipeline import ForecastScorer, Scorer
from nis2triage.models.postprocess import EntityScorers, PostProcessed, PostSettings
from nis2triage.models.range_rule import RangeSettings


def chain() -> PostProcessed:
    settings = PostSettings(LikelihoodSettings(), RangeSettings(margin=0.05, warmup=100))
    return PostProcessed(ForecastScorer(HoltWintersError(), "n"), "n", settings)


def feed(scorer: Scorer, values: list[float]) -> list[float]:
    scores = []
    for value in values:
        scores.append(scorer.score_one({"n": value}))
        scorer.learn_one({"n": value})
    return scores


def test_a_zero_series_never_scores_one() -> None:
    scores = feed(chain(), [0.0] * 2000)

    # GaussianScorer on this stretch scores 1.0 everywhere (anomaly-notes); here the
    # error is 0, so the likelihood stays at its no-evidence level or below.
    assert max(scores) < 0.1


def test_a_spike_after_steady_data_scores_one_and_the_steady_data_below_half() -> None:
    steady = [20.0 + (i * 7) % 5 for i in range(600)]

    scores = feed(chain(), [*steady, 200.0])

    assert max(scores[:600]) < 0.5
    assert scores[600] == 1.0


def test_without_a_range_rule_the_likelihood_alone_decides() -> None:
    settings = PostSettings(likelihood=LikelihoodSettings())
    scorer = PostProcessed(ForecastScorer(HoltWintersError(), "n"), "n", settings)

    scores = feed(scorer, [20.0 + (i * 7) % 5 for i in range(600)] + [200.0] * 3)

    assert scorer.range_rule is None
    assert 0.5 < max(scores[600:]) < 1.0


def test_entities_beyond_the_cap_evict_the_least_recently_scored() -> None:
    made: list[str] = []

    def make() -> Scorer:
        made.append("new")
        return chain()

    table = EntityScorers.empty(make, max_entities=2)
    a = table.of("a")
    table.of("b")
    assert table.of("a") is a
    table.of("c")

    assert list(table.scorers) == ["a", "c"]
    assert table.evicted == 1
    assert table.of("b") is not a and len(made) == 4
