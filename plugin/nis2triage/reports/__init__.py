"""Reports to the authority for every NIS2 stage: the JSON payload, Markdown, PDF and chart."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path


def _matplotlib_folder() -> None:
    """Give matplotlib a folder of its own for its font cache when the user has no home.

    The service runs as a system user whose home is /nonexistent (or a container's user
    with none made): matplotlib then made a temporary folder itself, but said so in two lines
    of plain text on stderr at every command, before the agent's logging is set up, where
    every other line is ECS JSON. Runs before `chart` and `render` import matplotlib."""
    if os.environ.get("MPLCONFIGDIR"):
        return

    # expanduser, not Path.home(): that raises for a uid with no passwd entry (a container
    # run as an arbitrary uid), and this runs on import.
    home = Path(os.path.expanduser("~"))
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    if config.is_absolute() and _writable(config / "matplotlib"):
        return

    folder = tempfile.mkdtemp(prefix="nis2triage-matplotlib-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["MPLCONFIGDIR"] = folder


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False  # no home, or not ours to write
    return os.access(folder, os.W_OK)


_matplotlib_folder()
