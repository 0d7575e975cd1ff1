"""models.hst against River's own HalfSpaceTrees: the same scores, to the last bit."""

from __future__ import annotations

import itertools
import pickle
import random

import numpy as np
import pytest
from river import anomaly

from nis2triage.models.hst import HalfSpaceTrees

LIMITS = {"a": (0.0, 6.0), "b": (0.0, 4.0), "c": (0.0, 1.0)}


def stream(n: int, seed: int, drop: float = 0.0) -> list[dict[str, float]]:
    """Random vectors, some with an outlier, some (share `drop`) lacking a feature."""
    rng = random.Random(seed)
    xs = []
    for _ in range(n):
        x = {"a": rng.gauss(2, 0.5), "b": rng.random() * 4, "c": rng.random()}
        if rng.random() < 0.02:
            x["a"] = 5.9
        if rng.random() < drop:
            del x[rng.choice(sorted(x))]
        xs.append(x)
    return xs


def river_scores(xs: list[dict[str, float]], learn: list[bool], **params: object) -> list[float]:
    model = anomaly.HalfSpaceTrees(**params)
    scores = []
    for x, learnt in zip(xs, learn, strict=True):
        scores.append(float(model.score_one(x)))
        if learnt:
            model.learn_one(x)
    return scores


def river_holding_out(
    xs: list[dict[str, float]], bar: float, **params: object
) -> tuple[list[float], anomaly.HalfSpaceTrees]:
    """River, built on the first vector, then scoring the others one at a time and
    learning those that score at most `bar`: the scores and the model."""
    reference = anomaly.HalfSpaceTrees(**params, limits=LIMITS)
    reference.learn_one(xs[0])
    scores = []
    for x in xs[1:]:
        scores.append(float(reference.score_one(x)))
        if scores[-1] <= bar:
            reference.learn_one(x)
    return scores, reference


SHIPPED: dict[str, object] = {"n_trees": 25, "height": 6, "window_size": 10, "seed": 7}
PARAMS = [
    pytest.param({"n_trees": 25, "height": 6, "window_size": 10, "seed": 7}, id="shipped"),
    pytest.param({"n_trees": 10, "height": 8, "window_size": 250, "seed": 1}, id="river-default"),
    pytest.param({"n_trees": 3, "height": 2, "window_size": 1, "seed": 3}, id="window-1"),
]


@pytest.mark.parametrize("params", PARAMS)
def test_one_at_a_time_equals_river(params: dict[str, object]) -> None:
    xs = stream(3000, seed=11)
    learn = [i % 7 != 3 for i in range(len(xs))]  # some vectors held out, as alerts are
    model = HalfSpaceTrees(**params, limits=LIMITS)

    ours = []
    for x, learnt in zip(xs, learn, strict=True):
        ours.append(model.score_one(x))
        if learnt:
            model.learn_one(x)

    assert ours == river_scores(xs, learn, **params, limits=LIMITS)
    assert max(ours) > 0.5  # the outliers do score: the comparison is not of zeros


def test_missing_features_follow_the_heavier_child_as_in_river() -> None:
    xs = stream(2000, seed=5, drop=0.3)
    xs[0] = {"a": 1.0, "b": 1.0, "c": 0.5}  # the first vector names the split features
    model = HalfSpaceTrees(n_trees=25, height=6, window_size=10, seed=7, limits=LIMITS)

    ours = []
    for x in xs:
        ours.append(model.score_one(x))
        model.learn_one(x)

    assert ours == river_scores(
        xs, [True] * len(xs), n_trees=25, height=6, window_size=10, seed=7, limits=LIMITS
    )


def judge_in_batches(model: HalfSpaceTrees, xs: list[dict[str, float]], bar: float) -> list[float]:
    """As the detector does: paths for all, scores until the window ends, hold out > bar."""
    paths = model.paths_of(xs)
    scores: list[float] = []
    while len(scores) < len(xs):
        first = len(scores)
        chunk = [float(s) for s in model.score_paths(paths[first : first + model.window_left()])]
        model.learn_paths(paths[[first + i for i, s in enumerate(chunk) if s <= bar]])
        scores.extend(chunk)
    return scores


def test_batches_equal_river_with_held_out_vectors() -> None:
    xs = stream(4000, seed=2)
    model = HalfSpaceTrees(n_trees=25, height=6, window_size=10, seed=7, limits=LIMITS)
    model.learn_one(xs[0])

    ours = [
        s
        for start in range(1, len(xs), 333)
        for s in judge_in_batches(model, xs[start : start + 333], bar=0.6)
    ]

    assert ours == river_holding_out(xs, 0.6, **SHIPPED)[0]
    assert sum(s > 0.6 for s in ours) > 10  # some were held out


def judge(model: HalfSpaceTrees, xs: list[dict[str, float]], bar: float) -> list[float]:
    """As the detector does: `judge`, holding out what scores above `bar`."""
    scores: list[float] = []

    def learns(score: float) -> bool:
        scores.append(float(score))
        return score <= bar

    model.judge(xs, learns)
    return scores


@pytest.mark.parametrize("params", PARAMS)
def test_judging_ahead_equals_river_with_held_out_vectors(params: dict[str, object]) -> None:
    xs = stream(6000, seed=4)
    model = HalfSpaceTrees(**params, limits=LIMITS)
    model.learn_one(xs[0])  # built, still in its first window (scores 0 until it ends)

    # Slots of several sizes, as closing buckets gives them; some past MAX_AHEAD windows.
    cuts = [1, 2, 3, 12, 22, 22, 23, 723, 724, 3724, 6000]
    ours = [s for a, b in itertools.pairwise(cuts) for s in judge(model, xs[a:b], 0.6)]

    expected, reference = river_holding_out(xs, 0.6, **params)
    assert ours == expected
    assert sum(s > 0.6 for s in ours) > 10  # some were held out
    assert model.counter == reference.counter


def test_judging_vectors_that_lack_features_equals_river() -> None:
    xs = stream(2000, seed=5, drop=0.3)
    xs[0] = {"a": 1.0, "b": 1.0, "c": 0.5}  # the first vector names the split features
    model = HalfSpaceTrees(n_trees=25, height=6, window_size=10, seed=7, limits=LIMITS)
    model.learn_one(xs[0])

    ours = judge(model, xs[1:], 0.6)

    assert ours == river_holding_out(xs, 0.6, **SHIPPED)[0]


def test_large_trees_look_fewer_windows_ahead() -> None:
    small = HalfSpaceTrees(n_trees=25, height=6, window_size=10, seed=7, limits=LIMITS)
    large = HalfSpaceTrees(n_trees=2, height=15, window_size=1, seed=7, limits=LIMITS)
    for model in (small, large):
        model.learn_one(stream(1, seed=1)[0])

    assert (small._most_windows(), large._most_windows()) == (64, 16)


def test_learning_past_the_window_end_is_refused() -> None:
    model = HalfSpaceTrees(n_trees=2, height=2, window_size=4, seed=1, limits=LIMITS)
    xs = stream(6, seed=1)
    model.learn_one(xs[0])
    with pytest.raises(ValueError, match="overflow the window"):
        model.learn_paths(model.paths_of(xs[1:5]))


def test_a_pickled_model_goes_on_scoring_as_before() -> None:
    xs = stream(600, seed=9)
    model = HalfSpaceTrees(n_trees=25, height=6, window_size=10, seed=7, limits=LIMITS)
    for x in xs[:300]:
        model.learn_one(x)

    copy = pickle.loads(pickle.dumps(model))

    for x in xs[300:]:
        assert copy.score_one(x) == model.score_one(x)
        copy.learn_one(x)
        model.learn_one(x)
    # River's node objects are dropped once copied into arrays.
    assert copy.trees == [] and isinstance(copy._reference, np.ndarray)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"height": 60}, "lower n_trees or height"),
        ({"n_trees": 100_000, "height": 8}, "lower n_trees or height"),
        ({"n_trees": 0}, "n_trees must be a whole number"),
        ({"window_size": 2.5}, "window_size must be a whole number"),
    ],
    ids=["tall", "many", "no-trees", "fractional-window"],
)
def test_sizes_that_cannot_be_built_are_refused(params: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HalfSpaceTrees(**params)  # type: ignore[arg-type]


def test_rivers_own_model_converted_mid_stream_scores_as_river_goes_on() -> None:
    xs = stream(3000, seed=4)
    params = {"n_trees": 25, "height": 6, "window_size": 10, "seed": 7, "limits": LIMITS}
    river = anomaly.HalfSpaceTrees(**params)
    for x in xs[:1234]:  # mid-window: 1,234 learns leave the counter at 4
        river.learn_one(x)
    converted = HalfSpaceTrees.from_river(pickle.loads(pickle.dumps(river)))

    ours, theirs = [], []
    for x in xs[1234:]:
        ours.append(converted.score_one(x))
        theirs.append(float(river.score_one(x)))
        converted.learn_one(x)
        river.learn_one(x)

    assert ours == theirs
    assert converted.counter == river.counter


def test_an_unbuilt_river_model_converts_to_an_unbuilt_one() -> None:
    converted = HalfSpaceTrees.from_river(anomaly.HalfSpaceTrees(n_trees=3, height=2, seed=1))
    assert not converted.built
    assert (converted.n_trees, converted.height, converted.seed) == (3, 2, 1)
