from __future__ import annotations

import subprocess
import sys

import nis2triage


def test_version_flag_prints_the_package_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", "--version"], capture_output=True, text=True
    )

    assert out.returncode == 0
    assert out.stdout.strip() == f"nis2triage {nis2triage.__version__}"


def test_help_lists_the_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", "--help"], capture_output=True, text=True
    )

    assert out.returncode == 0
    assert "demo" in out.stdout


def test_replay_times_far_past_the_calendar_are_a_usage_error_not_a_traceback() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nis2triage.cli",
            "replay",
            "-c",
            "a.yml",
            "--from",
            "now-99999999d",
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 2
    assert "'now-99999999d' reaches before the year 1: give a shorter duration" in done.stderr
    assert "Traceback" not in done.stderr
