"""River's Half-Space Trees, scored in batches: the same trees and scores at a lower cost.

`river.anomaly.HalfSpaceTrees` was the largest cost in the agent's profile (`make
bench`: a third of the time at 200,000 events). Per bucket it walks every tree twice
in Python (score, then learn) and every `window_size` learns it swaps the masses of
every node of every tree (3,175 nodes for the shipped 25 trees of height 6).

Here River still builds the trees (its own first `learn_one`, same seed, same
splits); they are then laid out as arrays in heap order (node i has children 2i + 1
and 2i + 2), with the two masses of every node as integer arrays. The paths of a
whole batch of vectors are found in a few array operations, since where a vector
goes depends only on the split thresholds. Scores depend on the reference masses,
which change only when a window ends; the masses every later window would hold if
each vector were learnt follow from the paths, so the vectors of many windows are
scored in one array operation (`judge`), again from the next one after a vector the
detector holds out (an alert).

Scores equal River's to the last bit: they are the same integer sums divided by the
same maximum (`tests/models/test_hst.py` compares them on random streams, with
missing features and held-out vectors). A vector lacking a split feature goes down
the heavier child, as in River: that depends on the masses, so such a vector is
walked alone, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from river import anomaly

Paths = np.ndarray  # (vectors, trees, height + 1) node indices, root first
# Windows scored together at most: their masses are held at once (1.6 MB with the
# shipped trees), and at most AHEAD_CELLS node masses (16 MB) for larger trees.
MAX_AHEAD = 64
AHEAD_CELLS = 1 << 21


class HalfSpaceTrees(anomaly.HalfSpaceTrees):
    """`river.anomaly.HalfSpaceTrees`: same parameters, trees and scores; batch methods."""

    # River's parameters and defaults, spelled out: detector files are checked against
    # this signature, and River's `clone` rebuilds a model from it.
    def __init__(
        self,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        limits: dict[Hashable, tuple[float, float]] | None = None,
        seed: int | None = None,
    ) -> None:
        _check_size(n_trees, height, window_size)
        super().__init__(n_trees, height, window_size, limits, seed)
        self.names: list[Any] = []
        self._split_feature = np.zeros((0, 0), dtype=np.intp)
        self._threshold = np.zeros((0, 0))
        self._latest = np.zeros((0, 0), dtype=np.int64)  # River's l_mass: this window
        self._reference = np.zeros((0, 0), dtype=np.int64)  # River's r_mass: the last one
        self._scored: tuple[Mapping[Any, float], Paths] | None = None

    @classmethod
    def from_river(cls, model: anomaly.HalfSpaceTrees) -> HalfSpaceTrees:
        """The same model, state and all, from River's own object (a snapshot saved before
        this class existed): it then scores exactly as River's would have gone on to."""
        params = {k: getattr(model, k) for k in ("n_trees", "height", "window_size", "seed")}
        ours = cls(**params, limits=dict(model.limits))
        if not model.trees:
            return ours
        ours.counter, ours._first_window = model.counter, model._first_window
        ours.trees, ours._tree_nodes = model.trees, model._tree_nodes
        branches = [n for tree in model.trees for n in _heap_order(tree) if hasattr(n, "feature")]
        features = {n.feature for n in branches}
        ours._copy_nodes(sorted(features))
        return ours

    # --- River's interface, one vector at a time -------------------------------------

    def learn_one(self, x: dict[Hashable, Any]) -> None:
        if not self.names:
            self._build(x)
            return
        scored = self._scored
        paths = scored[1] if scored is not None and scored[0] is x else self.paths_of([x])
        self.learn_path(paths[0])

    def score_one(self, x: dict[Hashable, Any]) -> float:
        if not self.names:
            return 0.0
        paths = self.paths_of([x])
        # Kept for the learn of the same vector that usually follows (no mass changes
        # in between, so the path is still the one River would walk).
        self._scored = (x, paths)
        return float(self.score_paths(paths)[0])

    # --- in batches ------------------------------------------------------------------

    @property
    def built(self) -> bool:
        return bool(self.names)

    def complete(self, x: Mapping[Any, float]) -> bool:
        """Whether `x` holds every split feature (else its path depends on the masses)."""
        return all(map(x.__contains__, self.names))

    def paths_of(self, xs: Sequence[Mapping[Any, float]]) -> Paths:
        """Each vector's path through every tree. Vectors lacking a feature are walked one
        at a time against the current masses, as River walks them."""
        if not xs:
            return np.zeros((0, self.n_trees, self.height + 1), dtype=np.intp)
        if all(self.complete(x) for x in xs):
            values = np.array([[x[n] for n in self.names] for x in xs], dtype=float)
            return self._paths(values)
        return np.stack([self._walk_incomplete(x) for x in xs])

    def window_left(self) -> int:
        """Learns until the window ends: scores of up to this many vectors can be taken
        together, before any of them is learnt."""
        return int(self.window_size - self.counter)

    def score_paths(self, paths: Paths) -> np.ndarray:
        """River's score for each path, from the reference masses as they stand."""
        if self._first_window:
            return np.zeros(len(paths))
        trees = np.arange(self.n_trees)[None, :, None]
        return self._scores(self._reference[trees, paths])

    def judge(self, xs: Sequence[Mapping[Any, float]], learns: Callable[[float], bool]) -> None:
        """Score each vector in order, then learn it if `learns(score)` says so: as
        `score_one` and `learn_one` would, vector after vector, at a fraction of the cost.

        The scores of the windows ahead are worked out together, as if every vector were
        learnt; that holds until `learns` refuses one (an alert held out), which shifts
        the windows after it, so they are worked out again from there. The look-ahead
        doubles while every vector is learnt and starts again at one window after a
        refusal, so a stream of refusals costs no more than one window at a time did.
        """
        if not all(self.complete(x) for x in xs):
            # Where a vector lacking a feature goes depends on the masses as they are when
            # it comes: one at a time.
            for x in map(dict, xs):
                if learns(self.score_one(x)):
                    self.learn_one(x)
            return
        self.judge_rows(np.array([[x[n] for n in self.names] for x in xs], dtype=float), learns)

    def judge_rows(self, values: np.ndarray, learns: Callable[[float], bool]) -> None:
        """`judge` for vectors given as the rows of an array, one column per split feature
        in the order of `names`: the detectors build them a slot of buckets at a time."""
        if not len(values):
            return
        paths = self._paths(values)
        done, windows = 0, 1
        while done < len(paths):
            chunk = paths[done : done + self.window_left() + (windows - 1) * self.window_size]
            scores, masses = self._ahead(chunk)
            learnt = next((i for i, s in enumerate(scores) if not learns(s)), len(chunk))
            if learnt == len(chunk):
                self._adopt(masses, learnt)  # the masses the scores assumed
                done += learnt
                windows = min(2 * windows, self._most_windows())
            else:
                self._learn(chunk[:learnt])
                done += learnt + 1  # the one held out is judged, not learnt
                windows = 1

    def _ahead(self, paths: Paths) -> tuple[np.ndarray, np.ndarray]:
        """River's score for each path, were every path before it learnt, and the masses
        at the end of each window they span (at most `_most_windows()`).

        Exact up to the first vector the caller holds out (see `judge`). Scoring one
        window at a time cost a few numpy calls per 10 buckets with the shipped
        `window_size`, the largest part of closing them (`make bench`).
        """
        window = self._windows(len(paths))
        masses = self._masses(paths, window)
        # Window j > 0 scores against what window j - 1 learnt, the current window's own
        # learns so far included; window 0 (the first rows) against the reference masses.
        # Gathered by flat position with `take`, not from a stack of the reference and
        # the masses: that copy and a three-array index took a third of the scoring time.
        nodes = masses.shape[2]
        trees = np.arange(self.n_trees)[None, :, None]
        earlier = np.maximum(window - 1, 0)[:, None, None]
        mass = masses.take((earlier * self.n_trees + trees) * nodes + paths)
        current = min(self.window_left(), len(paths))
        mass[:current] = self._reference.take(trees * nodes + paths[:current])
        scores = self._scores(mass)
        if self._first_window:
            scores[window == 0] = 0.0  # River scores 0 until its first window is full
        return scores, masses

    def _most_windows(self) -> int:
        return max(1, min(MAX_AHEAD, AHEAD_CELLS // max(1, self._latest.size)))

    def _windows(self, count: int) -> np.ndarray:
        """The window each of `count` vectors learnt from now falls in (0: the current)."""
        left = self.window_left()
        window = np.zeros(count, dtype=np.intp)
        window[left:] = 1 + np.arange(count - left) // self.window_size
        return window

    def _masses(self, paths: Paths, window: np.ndarray) -> np.ndarray:
        """The latest masses at the end of each window, learning every path in order."""
        windows, nodes = int(window[-1]) + 1, self._latest.shape[1]
        cells = windows * self.n_trees * nodes
        trees = np.arange(self.n_trees)[None, :, None]
        flat = ((window[:, None, None] * self.n_trees + trees) * nodes + paths).ravel()
        masses = np.bincount(flat, minlength=cells).reshape(windows, self.n_trees, nodes)
        masses[0] += self._latest
        return masses

    def _scores(self, mass: np.ndarray) -> np.ndarray:
        # A tree's sum stops at its first node lighter than the size limit (that node
        # still counts): River's early exit, as a mask.
        heavy = mass >= 0.1 * self.window_size
        counted = np.empty_like(heavy)
        counted[:, :, 0] = True
        np.logical_and.accumulate(heavy[:, :, :-1], axis=2, out=counted[:, :, 1:])
        weights = 1 << np.arange(self.height + 1, dtype=np.int64)
        sums = (mass * weights * counted).sum(axis=(1, 2))
        return np.asarray(1 - sums / self._max_score, dtype=float)

    def learn_path(self, path: np.ndarray) -> None:
        """Learn one vector from its path; the masses swap when the window is full."""
        self.learn_paths(path[None])

    def learn_paths(self, paths: Paths) -> None:
        """Learn vectors from their paths, at most `window_left()` of them: the window may
        end with the last one only, so none of them is learnt into the wrong window."""
        if len(paths) > self.window_left():
            raise ValueError(f"{len(paths)} vectors overflow the window ({self.window_left()})")
        self._scored = None
        nodes = self._latest.shape[1]
        flat = (np.arange(self.n_trees)[None, :, None] * nodes + paths).ravel()
        self._latest += np.bincount(flat, minlength=self._latest.size).reshape(self._latest.shape)
        self.counter += len(paths)
        if self.counter == self.window_size:
            self._reference = self._latest
            self._latest = np.zeros_like(self._reference)
            self._first_window = False
            self.counter = 0

    def _learn(self, paths: Paths) -> None:
        """Learn vectors from their paths, as many as there are: the windows that fill on
        the way swap as `learn_paths` would swap them one by one."""
        if len(paths):
            self._adopt(self._masses(paths, self._windows(len(paths))), len(paths))

    def _adopt(self, masses: np.ndarray, count: int) -> None:
        """The state after learning `count` vectors, from the masses at the end of each
        window they span (`_masses`)."""
        self._scored = None
        left = self.window_left()
        if count < left:
            self._latest, self.counter = masses[0], self.counter + count
            return
        # The first window is full; the last one may not be.
        full, self.counter = divmod(count - left, self.window_size)
        self._reference = masses[full]
        self._latest = masses[full + 1] if full + 1 < len(masses) else np.zeros_like(masses[0])
        self._first_window = False

    # --- inside ----------------------------------------------------------------------

    def _build(self, x: dict[Hashable, Any]) -> None:
        """River builds the trees and learns `x`; its nodes are then copied into arrays."""
        super().learn_one(x)  # type: ignore[no-untyped-call]
        self._copy_nodes(sorted(x))

    def _copy_nodes(self, names: list[Any]) -> None:
        """River's trees as arrays, split features numbered in the order of `names`."""
        self.names = names
        column = {name: i for i, name in enumerate(self.names)}
        nodes = [_heap_order(tree) for tree in self.trees]
        branches = 2**self.height - 1
        self._split_feature = np.array(
            [[column[n.feature] for n in tree[:branches]] for tree in nodes], dtype=np.intp
        )
        self._threshold = np.array([[n.threshold for n in tree[:branches]] for tree in nodes])
        self._latest = np.array([[n.l_mass for n in tree] for tree in nodes], dtype=np.int64)
        self._reference = np.array([[n.r_mass for n in tree] for tree in nodes], dtype=np.int64)
        # The node objects are not used again: dropping them keeps snapshots small.
        self.trees, self._tree_nodes = [], []

    def _paths(self, values: np.ndarray) -> Paths:
        count, branches = len(values), self._split_feature.shape[1]
        # Flat positions and `take`: a third of the time of indexing with two arrays.
        split_feature, threshold = self._split_feature.ravel(), self._threshold.ravel()
        first_branch = np.arange(self.n_trees) * branches
        first_value = (np.arange(count) * values.shape[1])[:, None]
        node = np.zeros((count, self.n_trees), dtype=np.intp)
        paths = np.zeros((count, self.n_trees, self.height + 1), dtype=np.intp)
        for depth in range(1, self.height + 1):
            branch = node + first_branch
            value = values.take(first_value + split_feature.take(branch))
            # River goes left when value < threshold; right otherwise (NaN included).
            right = ~(value < threshold.take(branch))
            node = 2 * node + 1 + right
            paths[:, :, depth] = node
        return paths

    def _walk_incomplete(self, x: Mapping[Any, float]) -> np.ndarray:
        path = np.zeros((self.n_trees, self.height + 1), dtype=np.intp)
        for tree in range(self.n_trees):
            node = 0
            for depth in range(1, self.height + 1):
                name = self.names[self._split_feature[tree, node]]
                left, right = 2 * node + 1, 2 * node + 2
                if name in x:
                    node = left if x[name] < self._threshold[tree, node] else right
                else:
                    # River follows the child that learnt more in this window.
                    latest = self._latest[tree]
                    node = right if latest[left] < latest[right] else left
                path[tree, depth] = node
        return path


# Nodes in all trees together: each tree of height h has 2**(h + 1) - 1 of them, built by
# River in Python and kept here as arrays. 2**22 is about 100 MB of model; past it a typo
# in a detector file (height: 60) would exhaust memory or hang instead of failing.
MAX_NODES = 2**22
# The longest window, in buckets, as a detector's warm-up (detectors.MAX_ROWS): the trees
# score against the window before, and a first window of 10^20 buckets never ends, so
# every score stayed 0 and the detector never alerted, without a word.
MAX_WINDOW = 1_000_000


def _check_size(n_trees: Any, height: Any, window_size: Any) -> None:
    for name, value in (("n_trees", n_trees), ("height", height), ("window_size", window_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
    if window_size > MAX_WINDOW:
        raise ValueError(
            f"window_size {window_size} is more than {MAX_WINDOW:,} buckets: the first window "
            "would never end, and the trees score nothing before it does; lower it (the "
            "shipped detectors use 10)"
        )
    nodes = n_trees * (2 ** (height + 1) - 1) if height < 64 else MAX_NODES + 1
    if nodes > MAX_NODES:
        raise ValueError(
            f"{n_trees} trees of height {height} hold {nodes:,} nodes, more than "
            f"{MAX_NODES:,}: lower n_trees or height (the shipped detectors use 25 and 6)"
        )


def _heap_order(root: Any) -> list[Any]:
    """A complete binary tree's nodes, level by level, left to right."""
    order, level = [], [root]
    while level:
        order.extend(level)
        level = [child for node in level for child in getattr(node, "children", ())]
    return order
