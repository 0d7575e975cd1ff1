"""The runner: causal order, parallel runs, the command line on a tiny NAB-shaped corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nis2triage.bench.nab_corpus import LabelledSeries, NabFile, load_corpus, load_profiles
from nis2triage.bench.nab_detectors import SHIPPED_SPEC, Detector, SeriesInfo, range_only
from nis2triage.bench.nab_run import main, run_corpus, run_series

from support import shared_data


class Recorder:
    """A detector that logs the order of calls and scores each row by its own value."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def score_one(self, x: dict[str, float]) -> float:
        self.calls.append(f"score {x['value']:g}")
        return x["value"]

    def learn_one(self, x: dict[str, float]) -> None:
        self.calls.append(f"learn {x['value']:g}")


def nab_file(name: str, values: list[float], windows: tuple[tuple[int, int], ...]) -> NabFile:
    labels = LabelledSeries(name, len(values), windows)
    return NabFile(labels, step_seconds=300.0, values=np.array(values))


def test_each_row_is_scored_before_it_is_learned() -> None:
    recorder = Recorder()

    def factory(info: SeriesInfo) -> Detector:
        return recorder

    scores = run_series(factory, nab_file("x", [1.0, 2.0], ()))

    assert recorder.calls == ["score 1", "learn 1", "score 2", "learn 2"]
    assert scores.tolist() == [1.0, 2.0]


def test_two_workers_give_the_same_scores_as_one() -> None:
    corpus = [
        nab_file("a", [1.0] * 150 + [9.0] + [1.0] * 49, ((140, 160),)),
        nab_file("b", [*np.sin(np.arange(300) / 5.0).tolist(), 4.0], ((295, 300),)),
    ]

    alone, pooled = run_corpus(range_only, corpus, jobs=1), run_corpus(range_only, corpus, jobs=2)

    assert [s.scores.tolist() for s in alone] == [s.scores.tolist() for s in pooled]
    assert alone[0].scores[150] == 1.0


def write_tiny_nab(root: Path) -> None:
    (root / "data" / "g").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "config").mkdir()
    rows = [
        f"2024-01-01 {h:02d}:{m:02d}:00,{9.0 if h * 60 + m == 600 else 1.0}"
        for h in range(24)
        for m in range(0, 60, 5)
    ]
    (root / "data" / "g" / "s.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    window = [["2024-01-01 09:50:00.000000", "2024-01-01 10:20:00.000000"]]
    (root / "labels" / "combined_windows.json").write_text(json.dumps({"g/s.csv": window}))
    costs = {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0, "tnWeight": 1.0}
    (root / "config" / "profiles.json").write_text(json.dumps({"standard": {"CostMatrix": costs}}))


def test_the_command_line_prints_and_writes_the_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tiny_nab(tmp_path)
    out = tmp_path / "out" / "nab.json"

    assert main(["--detector", "range", "--data", str(tmp_path), "--out", str(out)]) == 0

    result = json.loads(out.read_text())["detectors"][0]["results"][0]
    assert result["profile"] == "standard"
    # The spike at 10:00 is row 120 of window rows 118-124: sigma(-5/7) / sigma(-1) = 0.958131.
    assert result["score"] == pytest.approx(100 * (1 + 0.958131) / 2, abs=1e-3)
    assert "range" in capsys.readouterr().out


def test_the_real_corpus_has_58_series_and_116_windows() -> None:
    corpus = load_corpus(shared_data("nab"))

    assert len(corpus) == 58
    assert sum(len(f.labels.windows) for f in corpus) == 116
    assert sum(f.labels.length for f in corpus) == 365_558


def test_the_real_profiles_are_nabs_three_cost_matrices() -> None:
    profiles = {p.name: (p.fp_weight, p.fn_weight) for p in load_profiles(shared_data("nab"))}

    assert profiles == {
        "standard": (0.11, 1.0),
        "reward_low_FP_rate": (0.22, 1.0),
        "reward_low_FN_rate": (0.11, 2.0),
    }


def test_a_spec_runs_from_the_command_line_with_its_own_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tiny_nab(tmp_path)
    out = tmp_path / "out" / "nab.json"

    code = main(["--spec", str(SHIPPED_SPEC), "--data", str(tmp_path), "--out", str(out)])

    report = json.loads(out.read_text())["detectors"][0]
    assert code == 0 and report["detector"] == "events-per-host"
    # The range rule fires on the spike at row 120, the third of its window (rows 118-124);
    # the agent's bar is 0.5 (a score above it alerts), NAB's just above it.
    expected = pytest.approx(100 * (1 + 0.958131) / 2, abs=1e-3)
    assert report["results"][0]["score"] == expected
    assert report["at_bar"][0]["score"] == expected
    assert report["at_bar"][0]["threshold"] == pytest.approx(0.5)
    assert "at its own bar 0.50" in capsys.readouterr().out


def test_the_command_line_wants_a_detector_or_a_spec(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path)])
