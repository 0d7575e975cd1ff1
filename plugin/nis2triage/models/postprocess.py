"""What turns a raw score into one a fixed bar can judge: the anomaly likelihood and the
range rule, laid over any scorer, and one such chain per entity.

Measured on NAB (../shared/docs/anomaly-notes.md), a Holt forecast error alone
scores about 5, its likelihood 40, and the likelihood overruled by the range rule
58 (standard profile). Both steps keep a history of one series, so a detector
that uses them keeps one chain per entity (`EntityScorers`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from nis2triage.models.likelihood import AnomalyLikelihood, LikelihoodSettings
from nis2triage.models.pipeline import Scorer
from nis2triage.models.range_rule import RangeRule, RangeSettings


@dataclass(frozen=True)
class PostSettings:
    """Which post-processing steps follow the model; None leaves a step out."""

    likelihood: LikelihoodSettings | None = None
    range_rule: RangeSettings | None = None


class PostProcessed:
    """A raw score turned into an anomaly likelihood, overruled by the range rule.

    The likelihood and the range rule learn inside `score_one` (each row once, in
    order), so it is called exactly once per row. `learn_one` teaches the model
    only, which is what a held-out alerting bucket skips: the likelihood's history
    and the seen range still take it in, as they did when it was scored.
    """

    def __init__(self, raw: Scorer, target: str, settings: PostSettings) -> None:
        self.raw = raw
        self.target = target
        self.likelihood = AnomalyLikelihood(settings.likelihood) if settings.likelihood else None
        self.range_rule = RangeRule(settings.range_rule) if settings.range_rule else None

    def score_one(self, x: dict[str, float]) -> float:
        score = self.raw.score_one(x)
        if self.likelihood is not None:
            score = self.likelihood.score_one(score)
        if self.range_rule is not None:
            score = max(score, self.range_rule.score_one(x[self.target]))
        return score

    def learn_one(self, x: dict[str, float]) -> None:
        self.raw.learn_one(x)


@dataclass
class EntityScorers:
    """One scorer per entity, built on first sight, capped: the least recently scored
    entity is evicted first and counted; it starts afresh if it comes back."""

    make: Callable[[], Scorer]
    max_entities: int
    scorers: OrderedDict[str, Scorer]
    evicted: int = 0

    @classmethod
    def empty(cls, make: Callable[[], Scorer], max_entities: int) -> EntityScorers:
        return cls(make, max_entities, OrderedDict())

    def of(self, entity: str) -> Scorer:
        """The entity's scorer, made fresh if it has none."""
        scorer = self.scorers.get(entity)
        if scorer is None:
            scorer = self.scorers[entity] = self.make()
            while len(self.scorers) > self.max_entities:
                self.scorers.popitem(last=False)
                self.evicted += 1
        self.scorers.move_to_end(entity)
        return scorer
