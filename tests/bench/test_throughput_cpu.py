"""The CPU figures the bench reads beside its timings: a process tree's, from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nis2triage.bench import run
from nis2triage.bench.throughput import tree_cpu_seconds

# A parent that starts, from a thread other than its main one (as the node's launcher
# starts its server), a child burning CPU for about 0.4 s; then both wait to be killed.
BURNER = """
import subprocess, sys, threading, time
def start():
    subprocess.Popen([sys.executable, "-c",
        "import time\\nend = time.process_time() + 0.4\\nwhile time.process_time() < end: pass\\n"
        "print('done', flush=True)\\ntime.sleep(60)"], stdout=sys.stdout)
    time.sleep(60)
threading.Thread(target=start).start()
time.sleep(60)
"""

# The throughput section of a bench.json, without its CPU figures.
PASS = {
    "read_rate": 90_000.0,
    "read_method": "windowed",
    "e2e_rate": 40_000.0,
    "e2e_seconds": 50.0,
    "rule_seconds": 0.2,
}


def test_a_process_trees_cpu_counts_its_childrens() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", BURNER], stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            assert parent.stdout.readline().strip() == "done"
            time.sleep(0.1)

            seconds = tree_cpu_seconds(parent.pid)
        finally:
            # The child first (it would outlive its parent), then the parent.
            for task in Path(f"/proc/{parent.pid}/task").iterdir():
                for child in (task / "children").read_text().split():
                    os.kill(int(child), signal.SIGKILL)
            parent.kill()

    # The child's 0.4 s and the start of two interpreters, counted under the parent.
    assert seconds is not None and 0.4 <= seconds < 5


def test_a_process_that_is_gone_has_no_cpu_figure() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()

    assert tree_cpu_seconds(gone.pid) is None


def test_the_table_shows_the_passs_cpu_and_says_when_the_nodes_was_not_read() -> None:
    base = dict(PASS)
    read = {
        r.measure: r.value
        for r in run.rows({"throughput": base | {"e2e_cpu": 41.26, "e2e_node_cpu": 17.94}})
    }
    unread = {
        r.measure: r.value
        for r in run.rows({"throughput": base | {"e2e_cpu": 41.0, "e2e_node_cpu": None}})
    }

    assert read["  CPU during the pass, agent process / node, s"] == "41.3 / 17.9"
    assert unread["  CPU during the pass, agent process / node, s"] == "41.0 / not read"


def test_the_table_names_the_detectors_run_apart_and_their_cpu() -> None:
    base = PASS | {"e2e_cpu": 22.04, "e2e_node_cpu": 16.5}
    apart = base | {"e2e_processes": ["auth-volume-per-user"], "e2e_processes_cpu": 19.96}

    rows = {r.measure: r.value for r in run.rows({"throughput": apart})}

    label = "end to end (agent + frequency rule; auth-volume-per-user in a process of its own)"
    assert rows[f"{label}, events/s"] == "40,000"
    cpu = "  CPU during the pass, agent process / detector processes / node, s"
    assert rows[cpu] == "22.0 / 20.0 / 16.5"
    alone = {r.measure for r in run.rows({"throughput": base})}
    assert "end to end (agent + frequency rule), events/s" in alone
