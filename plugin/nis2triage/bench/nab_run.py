"""Run detectors over the NAB corpus, online and causally, and score them as NAB does.

    python -m nis2triage.bench.nab_run --detector hw_likelihood_range --jobs 2 --out nab.json
    python -m nis2triage.bench.nab_run --spec detectors/volume/events-per-host.yml --jobs 2

Every row is scored by `score_one` before the detector learns it with
`learn_one`; one detector is built per series by a factory. The printed table
puts the measured scores beside NAB's published ones. `--spec` runs a detector
spec the way the agent does (nab_detectors.FromSpec): each series is one entity,
each value the spec's `target` feature, judged by `Detector.judge_vector`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from nis2triage.bench.nab_corpus import FloatArray, NabFile, Profile, load_corpus, load_profiles
from nis2triage.bench.nab_detectors import DETECTORS, DetectorFactory, FromSpec, SeriesInfo
from nis2triage.bench.nab_score import (
    ProfileResult,
    ScoredSeries,
    optimise,
    raw_score,
    score_at,
)

log = logging.getLogger(__name__)

# NAB's scoreboard, standard profile, as given in ../shared/data/README.md.
PUBLISHED_STANDARD: dict[str, float] = {
    "ARTime": 74.9,
    "Numenta HTM": 70.5,
    "CAD OSE": 69.9,
    "earthgecko Skyline": 58.2,
    "KNN CAD": 58.0,
    "Relative Entropy": 54.6,
    "Random Cut Forest": 51.7,
    "Twitter ADVec": 47.1,
    "Windowed Gaussian": 39.6,
    "Etsy Skyline": 35.7,
    "Bayesian changepoint": 17.7,
    "random": 11.0,
}

# The three profiles for a few of them (standard, reward low FP, reward low FN), from
# numenta/NAB @ ea702d75cc22 results/final_results.json; this scorer reproduces each
# to 0.01 from NAB's bundled detector outputs.
PUBLISHED_PROFILES: dict[str, tuple[float, float, float]] = {
    "ARTime": (74.85, 65.15, 80.36),
    "Numenta HTM": (70.10, 63.12, 74.32),
    "Random Cut Forest": (51.72, 38.36, 59.75),
    "Windowed Gaussian": (39.65, 20.87, 47.41),
}


PROFILE_ORDER = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


@dataclass(frozen=True)
class DetectorReport:
    """One detector's run: wall time, rows, best result per profile, raw score per file."""

    detector: str
    seconds: float
    rows: int
    results: tuple[ProfileResult, ...]
    per_file: dict[str, dict[str, float]]
    # Where the detector has a bar of its own (a spec's threshold floor), the scores at it.
    at_bar: tuple[ProfileResult, ...] = ()


def default_data_dir() -> Path:
    """../shared/data/nab beside the checkout this module runs from."""
    return Path(__file__).resolve().parents[4] / "shared" / "data" / "nab"


def run_series(factory: DetectorFactory, nab_file: NabFile) -> FloatArray:
    """Score every row of one series with a fresh detector: score first, then learn."""
    detector = factory(SeriesInfo(nab_file.labels.name, nab_file.step_seconds))
    scores = np.empty(nab_file.labels.length, dtype=np.float64)
    for i, value in enumerate(nab_file.values.tolist()):
        row = {"value": value}
        scores[i] = detector.score_one(row)
        detector.learn_one(row)
    return scores


def run_corpus(
    factory: DetectorFactory, corpus: Sequence[NabFile], jobs: int = 1
) -> list[ScoredSeries]:
    """Every series scored; with jobs > 1 the factory must pickle (a module-level function)."""
    if jobs <= 1:
        outputs = [run_series(factory, nab_file) for nab_file in corpus]
    else:
        # Longest series first, so that no worker is left with a long one at the end.
        order = sorted(range(len(corpus)), key=lambda i: -corpus[i].labels.length)
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            done = pool.map(partial(run_series, factory), [corpus[i] for i in order])
            by_index = dict(zip(order, done, strict=True))
        outputs = [by_index[i] for i in range(len(corpus))]
    return [ScoredSeries(f.labels, out) for f, out in zip(corpus, outputs, strict=True)]


def evaluate(
    name: str,
    factory: DetectorFactory,
    corpus: Sequence[NabFile],
    profiles: Sequence[Profile],
    jobs: int = 1,
    bar: float | None = None,
) -> DetectorReport:
    """Run one detector over the corpus and pick its best threshold per profile; with
    `bar`, also score it where a score above `bar` alerts, as the agent decides."""
    started = time.perf_counter()
    scored = run_corpus(factory, corpus, jobs)
    seconds = time.perf_counter() - started
    log.info("%s scored %d series in %.1f s", name, len(scored), seconds)

    results = tuple(optimise(scored, profile) for profile in profiles)
    per_file = {
        series.labels.name: {
            r.profile: raw_score(series, p, r.threshold)
            for p, r in zip(profiles, results, strict=True)
        }
        for series in scored
    }
    rows = sum(series.labels.length for series in scored)
    at_bar: tuple[ProfileResult, ...] = ()
    if bar is not None:
        # The agent alerts on score > bar; NAB detects on score >= threshold.
        above = float(np.nextafter(bar, np.inf))
        at_bar = tuple(score_at(scored, profile, above) for profile in profiles)
    return DetectorReport(name, seconds, rows, results, per_file, at_bar)


def evaluate_spec(
    path: Path, corpus: Sequence[NabFile], profiles: Sequence[Profile], jobs: int = 1
) -> DetectorReport:
    """A detector spec over the corpus: best thresholds, and the spec's own floor."""
    factory = FromSpec.load(path)
    floor = factory.spec.threshold.floor
    return evaluate(factory.spec.name, factory, corpus, profiles, jobs, bar=floor)


def format_report(reports: Sequence[DetectorReport]) -> str:
    """A plain-text table: measured scores per profile, then NAB's published ones."""
    lines = [f"{'detector':<30} {'standard':>9} {'low FP':>9} {'low FN':>9}  seconds  rows/s"]
    for report in reports:
        by_profile = {r.profile: f"{r.score:9.1f}" for r in report.results}
        scores = " ".join(by_profile.get(name, f"{'-':>9}") for name in PROFILE_ORDER)
        speed = report.rows / report.seconds if report.seconds else 0.0
        lines.append(f"{report.detector:<30} {scores}  {report.seconds:7.1f} {speed:7.0f}")
        if report.at_bar:
            fixed = {r.profile: f"{r.score:9.1f}" for r in report.at_bar}
            bar = report.at_bar[0].threshold
            label = f"  at its own bar {bar:.2f}"
            lines.append(
                f"{label:<30} " + " ".join(fixed.get(n, f"{'-':>9}") for n in PROFILE_ORDER)
            )

    lines.append("")
    lines.append("published (NAB scoreboard; three profiles where NAB lists them)")
    for name, standard in PUBLISHED_STANDARD.items():
        three = PUBLISHED_PROFILES.get(name)
        others = f" {three[1]:9.1f} {three[2]:9.1f}" if three else ""
        lines.append(f"{name:<30} {standard:9.1f}{others}")
    return "\n".join(lines)


def write_json(path: Path, reports: Sequence[DetectorReport]) -> None:
    """The reports, plus the published figures they are compared with."""
    body = {
        "detectors": [asdict(report) for report in reports],
        "published_standard": PUBLISHED_STANDARD,
        "published_profiles": PUBLISHED_PROFILES,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2) + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nis2triage.bench.nab_run", description=__doc__)
    parser.add_argument(
        "--detector",
        action="append",
        default=[],
        choices=[*DETECTORS, "all"],
        help="registered detector to run (repeatable; 'all' runs every one)",
    )
    parser.add_argument(
        "--spec",
        action="append",
        type=Path,
        default=[],
        help="detector spec (YAML) to run as the agent does (repeatable)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--data", type=Path, default=default_data_dir(), help="NAB root folder")
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    names = list(DETECTORS) if "all" in args.detector else list(dict.fromkeys(args.detector))
    if not names and not args.spec:
        _parser().error("give at least one --detector or --spec")

    corpus = load_corpus(args.data)
    profiles = load_profiles(args.data)
    reports = [evaluate_spec(path, corpus, profiles, args.jobs) for path in args.spec]
    reports += [evaluate(name, DETECTORS[name], corpus, profiles, args.jobs) for name in names]

    print(format_report(reports))
    if args.out is not None:
        write_json(args.out, reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
