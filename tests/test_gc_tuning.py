"""The collector's thresholds while the agent's commands run, and after."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from nis2triage import cli, gc_tuning


def test_streaming_sets_the_thresholds_and_restores_them() -> None:
    before = gc.get_threshold()
    with gc_tuning.streaming():
        assert gc.get_threshold() == gc_tuning.STREAMING_THRESHOLDS
    assert gc.get_threshold() == before


def test_thresholds_are_restored_when_the_block_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), gc_tuning.streaming():
        raise RuntimeError("cycle failed")
    assert gc.get_threshold() == before


def test_a_command_runs_with_the_streaming_thresholds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = []
    monkeypatch.setattr(cli, "cmd_validate", lambda args: seen.append(gc.get_threshold()) or 0)

    assert cli.main(["validate", str(tmp_path)]) == 0

    assert seen == [gc_tuning.STREAMING_THRESHOLDS]
    assert gc.get_threshold() != gc_tuning.STREAMING_THRESHOLDS
