"""Native rules run in the agent loop, window after window, through the same alert path."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch

from nis2triage import esclient
from nis2triage.agent import Agent
from nis2triage.config import load_config
from nis2triage.demo import index_docs
from nis2triage.errors import ConfigError, SnapshotError
from nis2triage.rules import winlog, winlog_mapping
from nis2triage.validate import validate

from support import (
    REPO,
    authentication_events,
    client_for,
    real_log_docs,
    run_agent,
    shared_data,
    write_agent_config,
)


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
    assert report.events == authentication_events(real_log_docs())
    assert any(a.name == "ssh-brute-force" for a in report.alerts)
    assert not [a for a in report.alerts if a.kind == "rule"]


def index_first_sigma_case(es: Elasticsearch, index: str) -> tuple[Path, dict[str, Any]]:
    """The first SigmaHQ regression case's real event, indexed half an hour ago into `index`
    as the Windows mapping stores it: the case's folder (its rule.yml beside the event) and
    the document indexed."""
    case = sorted(p for p in shared_data("sigma-regression", "cases").iterdir() if p.is_dir())[0]
    [event] = winlog.read_exported((case / "event.json").read_text(), str(case))[:1]
    doc = winlog.to_document(event)
    doc["@timestamp"] = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    es.indices.create(index=index, **winlog_mapping.index_body())
    es.index(index=index, document=doc, refresh=True)
    return case, doc


@pytest.mark.usefixtures("agent_env")
def test_sigma_rule_in_the_agent_loop_alerts_on_a_real_sysmon_event(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    case, doc = index_first_sigma_case(es, index_name)
    rules = {
        "sigma": [str(case / "rule.yml")],
        "sigma_indices": [index_name],
        "initial_lookback": "2h",
    }
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st", rules=rules)

    report = run_agent(config, es)

    [alert] = [a for a in report.alerts if a.kind == "rule"]
    title = yaml.safe_load((case / "rule.yml").read_text())["title"]
    assert alert.name == title
    assert alert.entity == doc["host"]["name"]
    assert alert.route in {"soc", "early_warning", "contain"}


@pytest.mark.usefixtures("agent_env")
def test_rule_paths_that_match_nothing_stop_the_agent_at_start(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    rules = {"native": ["rulez/*.yml"], "sigma": ["sigmaa/"]}
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st", rules=rules)

    with pytest.raises(ConfigError) as refused:
        run_agent(config, es)

    assert str(refused.value) == (
        "rules.native: no file matches rulez/*.yml; rules.sigma: no file matches sigmaa/ "
        "(paths are relative to the configuration's folder)"
    )


@pytest.mark.usefixtures("agent_env")
def test_rule_folders_without_rule_files_stop_the_agent_at_start(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # Native rules are read from a folder itself, not from the folders under it.
    (tmp_path / "nested" / "detection").mkdir(parents=True)
    rule_file(tmp_path / "nested" / "detection", index_name)
    (tmp_path / "sigma").mkdir()
    (tmp_path / "sigma" / "notes.txt").write_text("rules come later\n")
    rules = {"native": [str(tmp_path / "nested")], "sigma": [str(tmp_path / "sigma")]}
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st", rules=rules)

    with pytest.raises(ConfigError) as refused:
        run_agent(config, es)

    assert str(refused.value) == (
        f"rules.native: no rule file in {tmp_path / 'nested'}; rules.sigma: no rule file in "
        f"{tmp_path / 'sigma'} (paths are relative to the configuration's folder)"
    )
    [finding] = validate([str(config)])
    assert finding.problem is not None
    assert (
        f"rules.sigma: '{tmp_path / 'sigma'}' holds no rule file (.yml, .yaml)" in finding.problem
    )


@pytest.mark.usefixtures("agent_env")
def test_an_agent_whose_credentials_miss_a_rules_index_refuses_to_start(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # A rule over an index the key may not read found nothing, said nothing, and its window
    # moved past the events for good (a new user's rule over packetbeat-*).
    other = f"{index_name}-packets-*"
    prefix = f"{index_name}-st"
    rules = {"native": [str(rule_file(tmp_path, other))], "initial_lookback": "3d"}
    config = load_config(write_agent_config(tmp_path, es_settings, index_name, prefix, rules=rules))
    readable = [index_name, f"{prefix}-*"]
    with (
        client_for(es, es_settings, f"{index_name}-rule", readable) as part,
        pytest.raises(ConfigError) as refused,
    ):
        Agent(config, part, b"k" * 32, b"p" * 32).start()

    assert str(refused.value).startswith(
        f"rule 'SSH brute force from one address': the agent's credentials may not read {other}: "
        "run `nis2triage setup` again"
    )


@pytest.mark.usefixtures("agent_env")
def test_a_rules_exclusion_pattern_is_not_taken_for_an_index_it_cannot_read(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # has_privileges reads `-x` as a literal index name, which no role grants.
    prefix = f"{index_name}-st"
    pattern = f"{index_name}*,-{index_name}-old*"
    rules = {"native": [str(rule_file(tmp_path, pattern))], "initial_lookback": "3d"}
    config = load_config(write_agent_config(tmp_path, es_settings, index_name, prefix, rules=rules))
    readable = [f"{index_name}*", f"{prefix}-*"]
    with client_for(es, es_settings, f"{index_name}-excl", readable) as part:
        agent = Agent(config, part, b"k" * 32, b"p" * 32)
        agent.start()
        assert agent.rules_runner is not None
        assert agent.rules_runner.indices() == [
            ("SSH brute force from one address", [f"{index_name}*", f"-{index_name}-old*"])
        ]


@pytest.mark.usefixtures("agent_env")
def test_a_native_rule_file_reached_twice_is_one_rule(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # Named by its folder and by itself (a pattern, then an exception spelt out), it was
    # refused at start as "also used by" itself.
    (tmp_path / "native").mkdir()
    rule = rule_file(tmp_path / "native", index_name)
    index_docs(es, index_name, real_log_docs())
    rules = {"native": [str(rule.parent), str(rule)], "initial_lookback": "3d"}
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st", rules=rules)

    report = run_agent(config, es)

    assert {a.name for a in report.alerts if a.kind == "rule"} == {
        "SSH brute force from one address"
    }


@pytest.mark.usefixtures("agent_env")
def test_a_sigma_rule_file_reached_twice_alerts_once(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # Named by its folder and by itself, it ran twice, the second copy under its id: two
    # alerts for one event.
    case, _ = index_first_sigma_case(es, index_name)
    rules = {
        "sigma": [str(case / "rule.yml"), str(case)],
        "sigma_indices": [index_name],
        "initial_lookback": "2h",
    }
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st", rules=rules)

    report = run_agent(config, es)

    title = yaml.safe_load((case / "rule.yml").read_text())["title"]
    assert [a.name for a in report.alerts if a.kind == "rule"] == [title]


@pytest.mark.usefixtures("agent_env")
@pytest.mark.parametrize(
    ("saved", "said"),
    [
        (5, "rules is 5, not an object"),
        ({"ssh-brute-force": 5}, "rule 'ssh-brute-force' is 5, not an object"),
        (
            {"ssh-brute-force": {"window_end": "yesterday"}},
            "rule 'ssh-brute-force': window_end is 'yesterday', not an ISO 8601 time",
        ),
        ({"ssh-brute-force": {"state": {"buckets": 7}}}, "rule 'ssh-brute-force': state "),
    ],
)
def test_an_unreadable_rules_state_stops_the_start_naming_the_document(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    saved: object,
    said: str,
) -> None:
    # Edited by hand or by another tool, it ended the start in a traceback (AttributeError,
    # pydantic's ValidationError) that named neither the document nor the way out.
    rules = {"native": [str(rule_file(tmp_path, index_name))]}
    prefix = f"{index_name}-st"
    config = write_agent_config(tmp_path, es_settings, index_name, prefix, rules=rules)
    agent = Agent(load_config(config), es, b"k" * 32, b"p" * 32)
    agent.store.ensure_indices()
    agent.store.put("state", "rules", {"kind": "rules_state", "rules": saved}, refresh=True)

    with pytest.raises(SnapshotError) as refused:
        agent.start()

    assert said in str(refused.value)
    host = es_settings.hosts[0].rstrip("/")
    assert f"-X DELETE '{host}/{prefix}-state/_doc/rules'" in str(refused.value)
