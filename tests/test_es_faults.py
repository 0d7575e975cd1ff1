"""Elasticsearch misbehaving under the running agent: it backs off, says so once, loses nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch
from faultproxy import FaultProxy, fault_proxy

from nis2triage import esclient
from nis2triage.demo import index_docs
from nis2triage.store import Store

from support import authentication_events, real_log_docs, run_agent, write_agent_config


def through(config: Path, proxy: FaultProxy) -> Path:
    data = yaml.safe_load(config.read_text())
    data["elasticsearch"]["hosts"] = [proxy.url]
    data["elasticsearch"]["request_timeout"] = "3s"
    data["sources"][0]["poll_interval"] = "0.5s"
    config.write_text(yaml.safe_dump(data))
    return config


def alert_ids(es: Elasticsearch, index: str) -> set[str]:
    es.indices.refresh(index=index)
    return {h["_id"] for h in es.search(index=index, size=1000, _source=False)["hits"]["hits"]}


def wait_for(predicate: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize("fault", ["refuse", "reset", "http429", "slow"])
@pytest.mark.usefixtures("agent_env")
def test_agent_rides_out_a_fault_and_ends_where_a_clean_run_ends(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    fault: str,
) -> None:
    index_docs(es, index_name, real_log_docs())
    reference = run_agent(
        write_agent_config(tmp_path / "ref", es_settings, index_name, f"{index_name}-r"), es
    )
    with fault_proxy(es_settings.hosts[0]) as proxy:
        proxy.mode = fault
        config = through(
            write_agent_config(tmp_path / "f", es_settings, index_name, f"{index_name}-f"), proxy
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "nis2triage.cli", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # The agent meets the fault for a while: several faulted connections, however long
            # its start takes on a busy machine (a fixed sleep could end before it connects).
            wait_for(lambda: proxy.connections >= (1 if fault == "slow" else 3))
            time.sleep(2)
            proxy.mode = "pass"
            wait_for(
                lambda: (
                    es.indices.exists(index=f"{index_name}-f-alerts")
                    and len(alert_ids(es, f"{index_name}-f-alerts")) >= len(reference.alerts)
                )
            )
            time.sleep(1)
        finally:
            proc.send_signal(signal.SIGINT)
            output, _ = proc.communicate(timeout=60)
            Path(tmp_path / "agent.log").write_text(output)
            print(f"agent log: {tmp_path / 'agent.log'}")
            proc.kill()
            proc.wait()

    assert proc.returncode == 0, output
    assert alert_ids(es, f"{index_name}-f-alerts") == {a.id for a in reference.alerts}
    if fault != "slow":
        said = [line for line in output.splitlines() if "retrying with backoff" in line]
        # Once per condition: a proxy that answers 429 and hangs up can also look unreachable.
        assert 1 <= len(said) == len(set(line.split(": ", 1)[1] for line in said)), output
        assert "answers again" in output or "connected" in output


@contextmanager
def agent_loop(config: Path, log_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`nis2triage run` in its own process, its output going to `log_path`; Ctrl-C at the end."""
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nis2triage.cli", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)


def quick(config: Path) -> Path:
    data = yaml.safe_load(config.read_text())
    data["sources"][0]["poll_interval"] = "0.5s"
    config.write_text(yaml.safe_dump(data))
    return config


@pytest.mark.usefixtures("agent_env")
def test_read_only_alerts_index_blocks_writes_until_lifted_and_nothing_is_lost(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    index_docs(es, index_name, real_log_docs())
    expected = run_agent(
        write_agent_config(tmp_path / "ref", es_settings, index_name, f"{index_name}-r"), es
    )
    prefix = f"{index_name}-f"
    Store(es, prefix).ensure_indices()
    # The flood-stage disk watermark sets read_only_allow_delete on a full disk; the node
    # lifts that block by itself once its disk check passes (this machine's disk is not
    # full), so the test sets the plain write block, which refuses writes the same way.
    block = {"index.blocks.write": True}
    es.indices.put_settings(index=f"{prefix}-alerts", settings=block)
    config = quick(write_agent_config(tmp_path / "f", es_settings, index_name, prefix))

    log_path = tmp_path / "agent.log"
    with agent_loop(config, log_path):
        wait_for(lambda: "takes no writes" in log_path.read_text())
        time.sleep(2)  # a few more failed attempts, which must not be logged again
        assert es.count(index=f"{prefix}-alerts")["count"] == 0
        es.indices.put_settings(index=f"{prefix}-alerts", settings={"index.blocks.write": None})
        wait_for(lambda: alert_ids(es, f"{prefix}-alerts") == {a.id for a in expected.alerts})

    output = log_path.read_text()
    assert len([line for line in output.splitlines() if "takes no writes" in line]) == 1
    assert "answers again" in output


@pytest.mark.usefixtures("agent_env")
def test_source_index_deleted_and_recreated_under_the_agent(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    docs = sorted(real_log_docs(), key=lambda d: d["@timestamp"])
    index_docs(es, index_name, docs[:1000])
    prefix = f"{index_name}-f"
    config = quick(write_agent_config(tmp_path / "f", es_settings, index_name, prefix))

    with agent_loop(config, tmp_path / "agent.log"):
        wait_for(lambda: _events_read(es, prefix) == authentication_events(docs[:1000]))
        es.indices.delete(index=index_name)
        time.sleep(2)
        index_docs(es, index_name, docs)  # the same events again, and the rest after them
        wait_for(lambda: _events_read(es, prefix) == authentication_events(docs))

    output = (tmp_path / "agent.log").read_text()
    assert output.count("does not exist yet") <= 1
    assert "Traceback" not in output


def _events_read(es: Elasticsearch, prefix: str) -> int:
    state = es.options(ignore_status=(404, 503)).get(index=f"{prefix}-state", id="source-auth")
    return int(state["_source"]["cursor"]["events"]) if state.get("found") else -1
