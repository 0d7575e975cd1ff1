"""Sigma rules whose conversion would match other events than the rule says are refused:
a selector naming no detection, a numeric comparison on a field mapped as text."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch, helpers

from nis2triage.rules import winlog_mapping
from nis2triage.rules.sigma import SigmaConverter, SigmaQuery, SkippedRule
from nis2triage.rules.sigma_run import RunSettings, run_rule
from nis2triage.validate import check_file

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
RULE = """\
title: Cond test
logsource: {logsource}
detection:
    selection_img:
        Image|endswith: '\\x.exe'
    selection_cmd:
        CommandLine|contains: 'go'
    condition: {condition}
"""
PROCESS = "{category: process_creation, product: windows}"
COMPARE = """\
title: Compare test
logsource: {{category: process_creation, product: windows}}
detection:
    selection:
        {field}|{op}: {number}
    condition: selection
"""


def load(tmp_path: Path, text: str) -> SigmaQuery | SkippedRule:
    path = tmp_path / "rule.yml"
    path.write_text(text)
    return SigmaConverter().load_file(path)


@pytest.mark.parametrize(
    ("logsource", "condition"),
    [
        pytest.param(PROCESS, "1 of foo*", id="any-of-nothing"),
        pytest.param("{product: windows}", "1 of foo*", id="product-only"),
        pytest.param(PROCESS, "all of foo*", id="all-of-nothing"),
        pytest.param(PROCESS, "selection_img and not 1 of filter*", id="filter-of-nothing"),
    ],
)
def test_selector_naming_no_detection_is_skipped(
    tmp_path: Path, logsource: str, condition: str
) -> None:
    result = load(tmp_path, RULE.format(logsource=logsource, condition=condition))

    assert isinstance(result, SkippedRule), result
    selector = " ".join(condition.split()[-3:])
    assert result.reason.startswith(
        f"condition '{selector}' names no detection (the rule has: selection_cmd, selection_img)"
    )
    assert "fix the name in the condition or add the detection" in result.reason
    assert result.line == 8


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("1 of selection_*", "process.executable.caseless:*\\\\x.exe OR process.command_line:*go*"),
        ("all of them", "process.executable.caseless:*\\\\x.exe AND process.command_line:*go*"),
    ],
)
def test_selector_naming_detections_still_converts(
    tmp_path: Path, condition: str, expected: str
) -> None:
    result = load(tmp_path, RULE.format(logsource=PROCESS, condition=condition))

    assert isinstance(result, SigmaQuery), result
    assert expected in result.query


def test_validate_reports_the_selector(tmp_path: Path) -> None:
    path = tmp_path / "rule.yml"
    path.write_text(RULE.format(logsource=PROCESS, condition="1 of foo*"))

    finding = check_file(path)

    assert finding.problem is not None
    assert finding.problem.startswith(f"{path}:8: condition '1 of foo*' names no detection")


@pytest.mark.parametrize(("op", "number"), [("gt", 5), ("lt", 7), ("gte", 10)])
def test_numeric_comparison_on_a_keyword_field_is_skipped(
    tmp_path: Path, op: str, number: int
) -> None:
    result = load(tmp_path, COMPARE.format(field="EventID", op=op, number=number))

    assert isinstance(result, SkippedRule), result
    assert result.line == 5  # the EventID|op key
    assert result.reason.startswith(
        f"numeric comparison ({op} {number}) on event.code, which is not mapped as a number: "
        "Elasticsearch would compare it as text"
    )
    assert "process.pid" in result.reason


@pytest.mark.parametrize(("op", "number", "matched"), [("gt", 5, [10]), ("lt", 7, [3])])
def test_numeric_comparison_on_a_number_field_compares_numbers(
    es: Elasticsearch, index_name: str, tmp_path: Path, op: str, number: int, matched: list[int]
) -> None:
    rule = load(tmp_path, COMPARE.format(field="ProcessId", op=op, number=number))
    assert isinstance(rule, SigmaQuery), rule
    es.indices.create(index=index_name, **winlog_mapping.index_body())
    docs = [
        {
            "@timestamp": T0.isoformat(),
            "winlog": {"channel": "Microsoft-Windows-Sysmon/Operational"},
            "event": {"code": "1"},
            "host": {"name": f"pid{pid}"},
            "process": {"pid": pid},
        }
        for pid in (3, 10)
    ]
    helpers.bulk(es, ({"_index": index_name, "_source": d} for d in docs), refresh=True)

    alerts = run_rule(es, rule, RunSettings(index_name), T0, T0.replace(hour=11))

    assert sorted(a.entity for a in alerts) == [f"pid{pid}" for pid in matched]
