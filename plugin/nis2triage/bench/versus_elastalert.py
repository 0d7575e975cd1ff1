"""ElastAlert 2 on the same rule, same range, same node: installed into its own virtualenv.

ElastAlert 2 is installed from PyPI with pip into `<out>/elastalert-venv`
(its newest releases need Python 3.12; an older interpreter gets the last
release it accepts). Its writeback indices are recreated before every run, so
no silence from a previous run suppresses an alert. Credentials reach it
through its ES_USERNAME / ES_PASSWORD variables, never a file. Only the local
node on 127.0.0.1 is ever configured.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from nis2triage.localnode import NodeInfo
from nis2triage.rules.native import FrequencyRule

log = logging.getLogger(__name__)
DRIVER = Path(__file__).with_name("ea_driver.py")
WRITEBACK = "elastalert-bench"


@dataclass(frozen=True)
class EaRun:
    """One ElastAlert run: wall time of its rule run, documents it pulled, matches it found."""

    seconds: float
    hits: int
    matches: int


class ElastAlertUnavailable(RuntimeError):
    """ElastAlert 2 could not be installed or run; the message says exactly what failed."""


def interpreter() -> str:
    """The newest Python 3.12+ found (ElastAlert 2.20 and later need it), else this one."""
    candidates = [os.environ.get("NIS2TRIAGE_EA_PYTHON", "")]
    candidates += [shutil.which(n) or "" for n in ("python3.13", "python3.12")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")))
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys"], capture_output=True)
        if probe.returncode == 0:
            return candidate
    return sys.executable


def install(venv: Path) -> Path:
    """ElastAlert 2 in its own virtualenv; the venv's python."""
    python = venv / "bin" / "python"
    if not (venv / "bin" / "elastalert").exists():
        base = interpreter()
        log.info("installing elastalert2 from PyPI into %s (with %s)", venv, base)
        _run([base, "-m", "venv", str(venv)], "create ElastAlert's virtualenv")
        # pytz: elastalert2 2.19 (the last for Python 3.11) imports it without requiring it.
        _run([str(python), "-m", "pip", "install", "-q", "elastalert2", "pytz"], "pip install")
    return python


def version(python: Path) -> str:
    out = _run([str(python), "-m", "pip", "show", "elastalert2"], "pip show elastalert2")
    return next((ln.split()[1] for ln in out.splitlines() if ln.startswith("Version:")), "?")


def write_files(folder: Path, node: NodeInfo, rule: FrequencyRule) -> tuple[Path, Path]:
    """ElastAlert's config and the same frequency rule in its own format."""
    url = urlsplit(node.url)
    if url.hostname not in ("127.0.0.1", "localhost"):
        raise ElastAlertUnavailable(f"refusing to aim ElastAlert at {url.hostname}: loopback only")
    rules = folder / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    config = {
        "rules_folder": str(rules),
        "run_every": {"minutes": 1},
        # ElastAlert's default: documents are pulled in 45-minute segments.
        "buffer_time": {"minutes": 45},
        "es_host": url.hostname,
        "es_port": url.port,
        "writeback_index": WRITEBACK,
        "alert_time_limit": {"days": 2},
    }
    ea_rule = {
        "name": "ssh-brute-force",
        "type": "frequency",
        "index": rule.index,
        "timestamp_field": rule.timestamp_field,
        "query_key": rule.query_key,
        "num_events": rule.num_events,
        "timeframe": {"seconds": rule.timeframe.total_seconds()},
        "realert": {"seconds": rule.suppression.total_seconds()},
        "filter": [
            {"query": {"query_string": {"query": rule.filter}}}
            if isinstance(rule.filter, str)
            else rule.filter or {"match_all": {}}
        ],
        "alert": ["debug"],
    }
    config_file, rule_file = folder / "config.yaml", rules / "ssh-brute-force.yaml"
    config_file.write_text(yaml.safe_dump(config))
    rule_file.write_text(yaml.safe_dump(ea_rule))
    return config_file, rule_file


def probe_unmodified(python: Path, config: Path, node: NodeInfo) -> str | None:
    """ElastAlert's own `elastalert-create-index`, untouched; what fails, or None."""
    cli = python.parent / "elastalert-create-index"
    result = subprocess.run(
        [str(cli), "--config", str(config), "--recreate", "True"],
        capture_output=True,
        text=True,
        env=_env(node),
        timeout=300,
    )
    if result.returncode == 0:
        return None
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def run(
    python: Path, config: Path, rule_file: Path, node: NodeInfo, day: tuple[datetime, datetime]
) -> EaRun:
    """Fresh writeback indices, then the rule over the day, timed inside ElastAlert's process."""
    # -P: the driver's folder (this package) must not shadow the `elastalert` package.
    driver = [str(python), "-P", str(DRIVER)]
    _run([*driver, "--create-index", str(config)], "elastalert-create-index", _env(node))
    start, end = (moment.isoformat() for moment in day)
    args = [*driver, str(config), str(rule_file), start, end, "--version-from-nodes"]
    out = _run(args, "the ElastAlert rule run", _env(node))
    result = json.loads(out.strip().splitlines()[-1])
    return EaRun(float(result["seconds"]), int(result["hits"]), int(result["matches"]))


def _env(node: NodeInfo) -> dict[str, str]:
    return dict(os.environ, ES_USERNAME=node.user, ES_PASSWORD=node.password)


def _run(args: list[str], what: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=3600)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise ElastAlertUnavailable(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result.stdout
