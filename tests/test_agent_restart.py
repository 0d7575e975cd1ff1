"""Restarts resume from the saved checkpoint and models, neither relearning nor skipping."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers

from nis2triage import esclient
from nis2triage.demo import LOG_MAPPING

from support import authentication_events, real_log_docs, run_agent, write_agent_config


def index_part(es: Elasticsearch, index: str, docs: list[dict[str, Any]], first_id: int) -> None:
    if not es.indices.exists(index=index):
        es.indices.create(index=index, mappings=LOG_MAPPING)
    actions = (
        {"_index": index, "_id": str(first_id + i), "_source": d} for i, d in enumerate(docs)
    )
    helpers.bulk(es, actions, refresh=True)


def wait_for_state(es: Elasticsearch, index: str) -> dict[str, Any]:
    """The agent's saved state, once it exists (the index may be younger than its shard)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        saved = es.options(ignore_status=(404, 503)).get(index=index, id="source-auth")
        if saved.get("found"):
            return dict(saved)
        time.sleep(0.5)
    raise AssertionError(f"the agent saved no state in {index} within 120 s")


def alert_ids(report: Any) -> set[str]:
    return {a.id for a in report.alerts}


@pytest.mark.usefixtures("agent_env")
def test_two_runs_over_halves_equal_one_run_over_the_whole(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    docs = sorted(real_log_docs(), key=lambda d: d["@timestamp"])
    whole, halves = f"{index_name}-whole", f"{index_name}-halves"
    index_part(es, whole, docs, 0)
    one = run_agent(write_agent_config(tmp_path / "a", es_settings, whole, f"{whole}-st"), es)

    config = write_agent_config(tmp_path / "b", es_settings, halves, f"{halves}-st")
    # Cut at an hour boundary so no bucket straddles the restart.
    cut = next(i for i, d in enumerate(docs) if d["@timestamp"][11:13] == "09")
    index_part(es, halves, docs[:cut], 0)
    first = run_agent(config, es)
    index_part(es, halves, docs[cut:], cut)
    second = run_agent(config, es)

    assert first.events + second.events == one.events == authentication_events(docs)
    assert alert_ids(first) | alert_ids(second) == alert_ids(one)
    assert not alert_ids(first) & alert_ids(second)
    state = es.get(index=f"{halves}-st-state", id="source-auth")["_source"]["stats"]
    whole_state = es.get(index=f"{whole}-st-state", id="source-auth")["_source"]["stats"]
    assert state == whole_state


def test_ctrl_c_finishes_the_batch_saves_and_exits_zero(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    agent_env: None,
) -> None:
    index_part(es, index_name, real_log_docs(), 0)
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nis2triage.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        saved = wait_for_state(es, f"{index_name}-st-state")
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()

    assert proc.returncode == 0, output
    assert "stopping after the current batch" in output
    assert saved["_source"]["cursor"]["watermark_ms"] is not None
