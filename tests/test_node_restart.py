"""The real node stopped and started again under the running agent: nothing lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from test_es_faults import agent_loop, alert_ids, wait_for

from nis2triage import esclient
from nis2triage.demo import index_docs

from support import authentication_events, own_node, real_log_docs, run_agent, write_agent_config


@pytest.mark.usefixtures("agent_env")
def test_node_stopped_and_started_mid_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with own_node("restart") as node:
        info = node.start()
        settings = esclient.ESSettings(
            hosts=(info.url,), username="elastic", password=info.password
        )
        monkeypatch.setenv("NIS2TRIAGE_TEST_ES_PASSWORD", info.password)
        es = esclient.connect(settings)
        # A fresh node creates its security index just after it starts; `start` waits
        # for it, else this first request could meet a 401 (timing-dependent).
        assert es.security.authenticate()["username"] == "elastic"
        docs = sorted(real_log_docs(), key=lambda d: d["@timestamp"])
        index_docs(es, "logs-restart", docs[:1000])
        config = write_agent_config(tmp_path, settings, "logs-restart", "restart-st")
        data = yaml.safe_load(config.read_text())
        data["sources"][0]["poll_interval"] = "0.5s"
        config.write_text(yaml.safe_dump(data))
        log_path = tmp_path / "agent.log"

        with agent_loop(config, log_path):
            wait_for(lambda: _events(es) == authentication_events(docs[:1000]), 120)
            node.stop()
            time.sleep(3)
            port = int(info.url.rsplit(":", 1)[1])
            assert node.start().url.endswith(f":{port}"), "the node came back on another port"
            es = esclient.connect(settings)
            index_docs_append(es, docs, 1000)
            wait_for(lambda: _events(es) == authentication_events(docs), 180)

        reference = run_agent(
            write_agent_config(tmp_path / "ref", settings, "logs-restart", "restart-ref"), es
        )
        output = log_path.read_text()
        assert alert_ids(es, "restart-st-alerts") == {a.id for a in reference.alerts}
        assert len([line for line in output.splitlines() if "cannot be reached" in line]) == 1
        assert "answers again" in output


def _events(es: object) -> int:
    state = es.options(ignore_status=(404, 503)).get(index="restart-st-state", id="source-auth")  # type: ignore[attr-defined]
    return int(state["_source"]["cursor"]["events"]) if state.get("found") else -1


def index_docs_append(es: object, docs: list, start: int) -> None:
    from elasticsearch import helpers

    actions = (
        {"_index": "logs-restart", "_id": str(start + i), "_source": d}
        for i, d in enumerate(docs[start:])
    )
    helpers.bulk(es, actions, refresh=True)  # type: ignore[arg-type]
