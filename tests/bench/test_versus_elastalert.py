"""ElastAlert 2's files: the same rule in its format, and only ever aimed at loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nis2triage.bench.throughput import shipped_rule
from nis2triage.bench.versus_elastalert import ElastAlertUnavailable, write_files
from nis2triage.localnode import NodeInfo
from nis2triage.rules.native import FrequencyRule


def frequency_rule() -> FrequencyRule:
    rule = shipped_rule("logs-bench-1000")
    assert isinstance(rule, FrequencyRule)
    return rule


def test_the_shipped_frequency_rule_is_written_in_elastalert_s_terms(tmp_path: Path) -> None:
    node = NodeInfo("http://127.0.0.1:9250", "elastic", "secret-pw", 1)

    config, rule_file = write_files(tmp_path, node, frequency_rule())
    ea_rule = yaml.safe_load(rule_file.read_text())

    assert (ea_rule["type"], ea_rule["index"], ea_rule["query_key"]) == (
        "frequency",
        "logs-bench-1000",
        "source.ip",
    )
    assert (ea_rule["num_events"], ea_rule["timeframe"], ea_rule["realert"]) == (
        20,
        {"seconds": 300.0},
        {"seconds": 1800.0},
    )
    assert yaml.safe_load(config.read_text())["es_port"] == 9250
    assert "secret-pw" not in config.read_text()


def test_a_node_off_loopback_is_refused(tmp_path: Path) -> None:
    node = NodeInfo("http://192.0.2.5:9200", "elastic", "pw", 1)

    with pytest.raises(ElastAlertUnavailable, match="loopback only"):
        write_files(tmp_path, node, frequency_rule())
