"""River pipelines built from a detector spec, from an allow-list only.

A spec names estimators as `module.Class` with keyword parameters. Only the
classes below can be named and only plain values can be passed, so a
detector file cannot make the agent import or run anything else.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, Literal, Protocol

from river import anomaly, compose, preprocessing, stats

from nis2triage.errors import ConfigError
from nis2triage.models.forecast import HoltWintersError
from nis2triage.models.hst import HalfSpaceTrees

ALLOWED: dict[str, Callable[..., Any]] = {
    "preprocessing.MinMaxScaler": preprocessing.MinMaxScaler,
    "preprocessing.StandardScaler": preprocessing.StandardScaler,
    "preprocessing.MaxAbsScaler": preprocessing.MaxAbsScaler,
    # River's trees and scores, computed in batches (models/hst).
    "anomaly.HalfSpaceTrees": HalfSpaceTrees,
    "anomaly.OneClassSVM": anomaly.OneClassSVM,
    "anomaly.GaussianScorer": anomaly.GaussianScorer,
    "anomaly.StandardAbsoluteDeviation": anomaly.StandardAbsoluteDeviation,
    # Ours: River's Holt-Winters with the pitfalls of anomaly-notes guarded (models/forecast).
    "forecast.HoltWintersError": HoltWintersError,
}
# River estimators left out on purpose, with why: a detector naming one is told.
REFUSED = {
    # Measured 6 December 2026: 500 points learnt in 0.9 s, 3,000 in 13.1 s (5 ms a point
    # by then), where OneClassSVM took 0.2 s for 20,000. An agent learns a bucket per
    # entity every few minutes, for months.
    "anomaly.LocalOutlierFactor": (
        "keeps every bucket it learns and compares each new one with them, so each score "
        "costs more than the last and an agent running for months would stall; use "
        "anomaly.HalfSpaceTrees (or anomaly.OneClassSVM), which keep a bounded state"
    ),
}
# Scorers of one target value (River's `score_one(None, y)` form).
UNIVARIATE = {"anomaly.GaussianScorer", "anomaly.StandardAbsoluteDeviation"}
# Forecasters of one target value, scored by their forecast error.
FORECASTERS = {"forecast.HoltWintersError"}
# Which side of the usual value is news for a one-value scorer: both, or only above it.
Tail = Literal["both", "upper"]
SCALARS = (int, float, bool, str, type(None))


class Scorer(Protocol):
    def score_one(self, x: dict[str, float]) -> float: ...

    def learn_one(self, x: dict[str, float]) -> None: ...


class MultivariateScorer:
    """A River pipeline ending in an unsupervised anomaly detector."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def score_one(self, x: dict[str, float]) -> float:
        return finite(self.pipeline.score_one(x))

    def learn_one(self, x: dict[str, float]) -> None:
        self.pipeline.learn_one(x)


class UnivariateScorer:
    """A River scorer of one feature, with the guards its pitfalls call for."""

    def __init__(self, scorer: Any, target: str, tail: Tail = "both") -> None:
        self.scorer = scorer
        self.target = target
        self.tail = tail
        self.spread = stats.Var()
        self.seen = 0

    def score_one(self, x: dict[str, float]) -> float:
        y = x[self.target]
        # River's scorers are two-sided: a host sending far less than usual scores as
        # high as one sending far more. With `tail: upper` only the excess is news.
        if self.tail == "upper" and self.seen > 0 and y <= self.spread.mean.get():
            return 0.0
        # GaussianScorer's cdf is 0 on a constant stretch, so every point scored 1.0
        # there (see docs/anomaly-notes): with no variance yet, only a change is news.
        if self.seen < 2 or self.spread.get() == 0.0:
            return 0.0 if self.seen == 0 or y == self.spread.mean.get() else 1.0
        return finite(self.scorer.score_one(None, y))

    def learn_one(self, x: dict[str, float]) -> None:
        y = x[self.target]
        self.scorer.learn_one(None, y)
        self.spread.update(y)
        self.seen += 1


class ForecastScorer:
    """A forecaster of one feature, scored by its one-step forecast error."""

    def __init__(self, forecaster: HoltWintersError, target: str) -> None:
        self.forecaster = forecaster
        self.target = target

    def score_one(self, x: dict[str, float]) -> float:
        return finite(self.forecaster.score_one(x[self.target]))

    def learn_one(self, x: dict[str, float]) -> None:
        self.forecaster.learn_one(x[self.target])


def finite(score: Any) -> float:
    """The score as a float, or 0.0 where a model gave an infinite or NaN one."""
    value = float(score)
    return value if math.isfinite(value) else 0.0


def build(
    steps: list[dict[str, dict[str, Any] | None]],
    target: str | None,
    where: str,
    tail: Tail = "both",
) -> Scorer:
    """A scorer from `[{name: params}, ...]`; ConfigError (with `where`) when anything is off."""
    if not steps:
        raise ConfigError(f"{where}: model needs at least one step")
    built = [_step(step, where) for step in steps]
    names = [name for name, _ in built]
    last = names[-1]
    if not (last.startswith("anomaly.") or last in FORECASTERS):
        raise ConfigError(
            f"{where}: the last step must be an anomaly.* detector or a forecaster "
            f"({', '.join(sorted(FORECASTERS))}), not {last}"
        )
    if any(n.startswith("anomaly.") or n in FORECASTERS for n in names[:-1]):
        raise ConfigError(f"{where}: only the last step may be an anomaly detector")
    if last in FORECASTERS:
        if len(built) > 1 or target is None or tail != "both":
            raise ConfigError(
                f"{where}: {last} forecasts one feature: give `target`, no scaler and no `tail`"
            )
        return ForecastScorer(built[0][1], target)
    if last in UNIVARIATE:
        if len(built) > 1 or target is None:
            raise ConfigError(f"{where}: {last} scores one feature: give `target` and no scaler")
        return UnivariateScorer(built[0][1], target, tail)
    if tail != "both":
        raise ConfigError(f"{where}: `tail: {tail}` needs a one-value scorer (GaussianScorer, ...)")
    pipeline = built[0][1] if len(built) == 1 else compose.Pipeline(*(obj for _, obj in built))
    return MultivariateScorer(pipeline)


def _step(step: dict[str, dict[str, Any] | None], where: str) -> tuple[str, Any]:
    if not isinstance(step, dict) or len(step) != 1:
        raise ConfigError(f"{where}: each model step is one `Name: {{params}}` mapping")
    name, params = next(iter(step.items()))
    if name in REFUSED:
        raise ConfigError(f"{where}: River estimator {name!r} is not offered: {REFUSED[name]}")
    factory = ALLOWED.get(name)
    if factory is None:
        known = ", ".join(sorted(ALLOWED))
        raise ConfigError(f"{where}: unknown River estimator {name!r}; allowed: {known}")
    params = params or {}
    _check_params(name, factory, params, where)
    try:
        return name, factory(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {name}: {exc}") from exc
    except (OverflowError, MemoryError) as exc:
        # A size past what can be allocated (a window of 1e20).
        why = f"{type(exc).__name__}: {exc}"
        raise ConfigError(
            f"{where}: {name}: a size too large to allocate ({why}); lower it"
        ) from exc


def _check_params(name: str, factory: Callable[..., Any], params: Any, where: str) -> None:
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: {name}: parameters must be a mapping")
    accepted = _accepted(factory)
    for key, value in params.items():
        if key not in accepted:
            raise ConfigError(
                f"{where}: {name} has no parameter {key!r}; it takes {sorted(accepted)}"
            )
        if not _plain(value):
            raise ConfigError(f"{where}: {name}.{key}: only numbers, strings and lists of them")


@functools.cache
def _accepted(factory: Callable[..., Any]) -> frozenset[str]:
    # Cached: a detector with `per_entity` builds a chain for every new entity, and reading
    # the signature was most of that cost.
    return frozenset(inspect.signature(factory).parameters) - {"anomaly_detector"}


def _plain(value: Any) -> bool:
    if isinstance(value, SCALARS):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False
