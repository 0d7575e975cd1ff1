"""The agent as a system user with no home (`useradd --home-dir /nonexistent`, the README's
install step, and the compose image's `--no-create-home`), run for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_user_without_a_home_gets_no_stray_line_from_matplotlib(tmp_path: Path) -> None:
    # Matplotlib, finding no home to keep its cache in, wrote two lines of plain text to
    # stderr at every command (before the agent's logging is set up): in the journal, the
    # only lines that were not ECS JSON.
    env = {k: v for k, v in os.environ.items() if k != "MPLCONFIGDIR"}
    env.update(HOME="/dev/null", XDG_CONFIG_HOME="/dev/null", TMPDIR=str(tmp_path))
    nis2triage = Path(sys.executable).with_name("nis2triage")

    done = subprocess.run(
        [str(nis2triage), "--help"], env=env, capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0
    assert done.stderr == ""
