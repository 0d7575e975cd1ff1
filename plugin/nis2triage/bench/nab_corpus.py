"""The Numenta Anomaly Benchmark as laid out on disk, read into typed records.

Layout (numenta/NAB): `data/<group>/<name>.csv` with columns `timestamp,value`,
`labels/combined_windows.json` mapping each file to its anomaly windows as
`[first, last]` timestamps, and `config/profiles.json` holding the three cost
matrices. Windows are turned into row indices here, once, so that the scorer
works on plain integers. `config/thresholds.json` is not read: several of its
scores predate NAB's final results (the windowed Gaussian's, for one).
"""

from __future__ import annotations

import csv
import itertools
import json
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nis2triage.errors import ConfigError

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Profile:
    """One of NAB's application profiles: how much a hit, a false alarm and a miss weigh."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


@dataclass(frozen=True)
class LabelledSeries:
    """A series' length and its anomaly windows as inclusive row ranges, in time order."""

    name: str
    length: int
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class NabFile:
    """One series of the corpus: its labels, its sampling interval and its values."""

    labels: LabelledSeries
    step_seconds: float
    values: FloatArray = field(compare=False, repr=False)


def load_profiles(root: Path) -> tuple[Profile, ...]:
    """The profiles in `config/profiles.json` (standard, reward_low_FP_rate, reward_low_FN_rate)."""
    path = root / "config" / "profiles.json"
    raw = _read_json(path)
    try:
        return tuple(_profile(name, body["CostMatrix"]) for name, body in raw.items())
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"a profile lacks a CostMatrix weight: {exc}", path=str(path)) from exc


def _profile(name: str, costs: dict[str, float]) -> Profile:
    return Profile(
        name=name,
        tp_weight=float(costs["tpWeight"]),
        fp_weight=float(costs["fpWeight"]),
        fn_weight=float(costs["fnWeight"]),
    )


def load_corpus(root: Path) -> list[NabFile]:
    """Every file named in `labels/combined_windows.json`, in the order the labels list them."""
    labels_path = root / "labels" / "combined_windows.json"
    windows = _read_json(labels_path)
    return [_load_file(root, name, limits) for name, limits in windows.items()]


def _load_file(root: Path, name: str, limits: list[list[str]]) -> NabFile:
    path = root / "data" / name
    stamps, values = _read_series(path)

    row_of = {stamp: row for row, stamp in enumerate(stamps)}
    windows = tuple(_window_rows(path, row_of, first, last) for first, last in limits)
    _check_ordered(path, windows)

    labels = LabelledSeries(name=name, length=len(values), windows=windows)
    return NabFile(labels=labels, step_seconds=_step_seconds(stamps), values=values)


def _read_series(path: Path) -> tuple[list[datetime], FloatArray]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        stamps = [datetime.fromisoformat(row["timestamp"]) for row in rows]
        values = np.array([float(row["value"]) for row in rows], dtype=np.float64)
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the series ({exc}); expected a CSV with columns timestamp,value",
            path=str(path),
        ) from exc
    return stamps, values


def _window_rows(path: Path, row_of: dict[datetime, int], first: str, last: str) -> tuple[int, int]:
    # NAB matches window limits to rows by exact timestamp; the labels carry
    # microseconds (".000000") that the data files leave out, so compare datetimes.
    try:
        return row_of[datetime.fromisoformat(first)], row_of[datetime.fromisoformat(last)]
    except KeyError as exc:
        raise ConfigError(
            f"window [{first}, {last}] names a timestamp the series does not hold",
            path=str(path),
        ) from exc


def _check_ordered(path: Path, windows: tuple[tuple[int, int], ...]) -> None:
    previous_end = -1
    for start, end in windows:
        if not previous_end < start <= end:
            raise ConfigError(
                f"window rows {start}..{end} overlap or precede the previous window; "
                "windows must be disjoint and in time order",
                path=str(path),
            )
        previous_end = end


def _step_seconds(stamps: list[datetime]) -> float:
    """The usual sampling interval: the median gap, which ignores the odd missing row."""
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    return statistics.median(gaps) if gaps else 0.0


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open() as handle:
            loaded = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read NAB file ({exc})", path=str(path)) from exc
    if not isinstance(loaded, dict):
        raise ConfigError("expected a JSON object at the top level", path=str(path))
    return loaded
