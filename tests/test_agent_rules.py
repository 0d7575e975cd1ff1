"""Native rules run in the agent loop, window after window, through the same alert path."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch

from nis2triage import esclient
from nis2triage.demo import index_docs

from support import REPO, real_log_docs, run_agent, write_agent_config


def rule_file(tmp_path: Path, index: str, extra: str = "") -> Path:
    """The shipped SSH brute-force rule, pointed at the test's index."""
    rule = yaml.safe_load((REPO / "rules" / "detection" / "ssh-brute-force.yml").read_text())
    rule["index"] = index
    path = tmp_path / "rule.yml"
    path.write_text(yaml.safe_dump(rule) + extra)
    return path


@pytest.mark.usefixtures("agent_env")
def test_native_rule_alerts_once_across_restarts(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    index_docs(es, index_name, real_log_docs())
    rules = {"native": [str(rule_file(tmp_path, index_name))], "initial_lookback": "3d"}
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st", rules=rules)

    first = run_agent(config, es)
    second = run_agent(config, es)

    fired = {a.entity for a in first.alerts if a.kind == "rule"}
    assert {"183.62.140.253", "187.141.143.180", "103.99.0.122"} <= fired
    assert [a for a in second.alerts if a.kind == "rule"] == []
    es.indices.refresh(index=f"{index_name}-st-alerts")
    stored = es.count(index=f"{index_name}-st-alerts", query={"term": {"rule.category": "rule"}})
    assert stored["count"] == len([a for a in first.alerts if a.kind == "rule"])


@pytest.mark.usefixtures("agent_env")
def test_a_rule_the_node_refuses_is_paused_and_the_rest_go_on(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    index_docs(es, index_name, real_log_docs())
    broken = yaml.safe_load(rule_file(tmp_path, index_name).read_text())
    broken.update(name="counts on a text field", query_key="message")
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(broken))
    rules = {"native": [str(bad)], "initial_lookback": "3d"}
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st", rules=rules)

    with caplog.at_level(logging.ERROR, logger="nis2triage.rulerunner"):
        report = run_agent(config, es)

    assert [r.message for r in caplog.records if "paused" in r.message]
    assert "counts on a text field" in caplog.text
    assert report.events == 2000
    assert any(a.name == "ssh-brute-force" for a in report.alerts)
    assert not [a for a in report.alerts if a.kind == "rule"]
