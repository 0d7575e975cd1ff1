"""Elasticsearch misbehaving under the running agent: it backs off, says so once, loses nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch
from faultproxy import FaultProxy, fault_proxy

from nis2triage import esclient
from nis2triage.demo import index_docs

from support import real_log_docs, run_agent, write_agent_config


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
            time.sleep(6)  # the agent meets the fault for a while
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
        assert 1 <= len(said) <= 2, output  # one per condition (startup may add a second)
        assert "answers again" in output or "connected" in output
