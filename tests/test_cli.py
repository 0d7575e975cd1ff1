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
