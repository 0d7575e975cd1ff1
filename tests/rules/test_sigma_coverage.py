"""The coverage script: rules converted and executed on the real node, per log source."""

from __future__ import annotations

from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from nis2triage.rules.sigma import SigmaConverter, rule_files
from nis2triage.rules.sigma_coverage import keyword_fields, main, measure, sample

from support import shared_data

RULE = """\
title: {title}
logsource: {{category: process_creation, product: windows}}
detection:
    sel:
        CommandLine|re: '{regex}'
    condition: sel
"""


def test_sample_of_100_rules_executes_at_98_percent(es: Elasticsearch) -> None:
    files = sample(rule_files(shared_data("sigma-rules")), 100)

    coverage = measure(es, files, SigmaConverter())

    total = coverage.total()
    print(
        f"\nsigma coverage sample: {total.rules} rules, {total.converted} converted, "
        f"{total.executed} executed"
    )
    assert total.rules == 100
    assert total.converted >= 98
    assert total.executed / total.converted >= 0.98
    assert len(coverage.sources) > 5


def test_sample_is_deterministic_and_spread() -> None:
    files = rule_files(shared_data("sigma-rules"))

    picked = sample(files, 100)

    assert picked == sample(list(reversed(files)), 100)
    assert len({p.parent for p in picked}) > 20


def test_refused_query_is_counted_with_its_reason(es: Elasticsearch, tmp_path: Path) -> None:
    (tmp_path / "ok.yml").write_text(RULE.format(title="ok", regex="whoami"))
    (tmp_path / "huge.yml").write_text(RULE.format(title="huge", regex=".{1000,}"))

    coverage = measure(es, rule_files(tmp_path), SigmaConverter())

    counts = coverage.sources["windows/process_creation/-"]
    assert (counts.rules, counts.converted, counts.executed) == (2, 2, 1)
    assert [(q.title, "Determinizing" in reason) for q, reason in coverage.refused] == [
        ("huge", True)
    ]


def test_script_prints_table_and_totals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], es: Elasticsearch
) -> None:
    (tmp_path / "ok.yml").write_text(RULE.format(title="ok", regex="whoami"))
    (tmp_path / "bad.yml").write_text(RULE.format(title="bad", regex="(?=x)"))

    assert main([str(tmp_path)]) == 0

    out, err = capsys.readouterr()
    assert "windows/process_creation/-                                2      1      1" in out
    assert "TOTAL" in out and "lookaround" in out
    assert "executed 1/1" in err


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([["winlog.event_data.Foo", "process.pid"]], ["winlog.event_data.Foo"]),
        ([["process.executable.caseless", "process.command_line.text"]], []),
        ([["a", "a.b"]], ["a.b"]),
        ([["process.pid.x", "zeek.*.arg"]], []),
    ],
    ids=["typed-left-out", "known-subfield", "object-parent", "under-leaf-and-wildcard"],
)
def test_keyword_fields(fields: list[list[str]], expected: list[str]) -> None:
    assert keyword_fields(fields) == expected
