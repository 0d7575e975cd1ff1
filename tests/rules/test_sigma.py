"""Sigma rule files, loaded safely and converted per log source; bad rules skipped, not raised."""

from __future__ import annotations

from pathlib import Path

import pytest

from nis2triage.errors import ConfigError
from nis2triage.rules.sigma import SigmaConverter, SigmaQuery, SkippedRule, rule_files
from nis2triage.rules.sigma_backend import FieldMapping, load_pipeline_file, load_renames_file

from support import shared_data

RULE = """\
title: Reg query
id: 11111111-2222-3333-4444-555555555555
level: {level}
tags: [attack.discovery, attack.t1082, car.2013-01-002]
logsource: {{category: process_creation, product: windows}}
detection:
    sel:
        Image|endswith: '\\reg.exe'
        CommandLine|contains: 'query'
    condition: sel
"""


def write(tmp_path: Path, text: str, name: str = "rule.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def convert(path: Path, mapping: FieldMapping | None = None) -> SigmaQuery:
    result = SigmaConverter(mapping).load_file(path)
    assert isinstance(result, SigmaQuery), result
    return result


def test_windows_rule_gets_sysmon_and_ecs_fields(tmp_path: Path) -> None:
    rule = convert(write(tmp_path, RULE.format(level="high")))

    assert rule.query == (
        "winlog.channel:Microsoft\\-Windows\\-Sysmon\\/Operational AND (event.code:1 AND "
        "(process.executable.caseless:*\\\\reg.exe AND process.command_line:*query*))"
    )
    assert (rule.name, rule.severity, rule.tags) == (
        "Reg query",
        "high",
        ("attack.discovery", "attack.t1082"),
    )
    assert set(rule.fields) == {
        "winlog.channel",
        "event.code",
        "process.executable.caseless",
        "process.command_line",
    }


@pytest.mark.parametrize(
    ("level", "severity"),
    [("informational", "low"), ("low", "low"), ("medium", "medium"), ("critical", "critical")],
)
def test_sigma_level_maps_to_severity(tmp_path: Path, level: str, severity: str) -> None:
    assert convert(write(tmp_path, RULE.format(level=level))).severity == severity


def test_site_renames_apply_after_ecs(tmp_path: Path) -> None:
    mapping = FieldMapping(renames={"process.command_line": "cmd"})

    rule = convert(write(tmp_path, RULE.format(level="low")), mapping)

    assert "cmd:*query*" in rule.query
    assert "process.command_line" not in rule.query


def test_extra_pipeline_file_is_applied(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path,
        """\
name: site
priority: 100
transformations:
  - type: field_name_prefix
    prefix: "site."
    rule_conditions: [{type: logsource, product: linux}]
""",
        "pipeline.yml",
    )
    linux = RULE.format(level="low").replace("product: windows", "product: linux")

    rule = convert(write(tmp_path, linux), FieldMapping(extra=load_pipeline_file(pipeline)))

    assert rule.query == "site.Image:*\\\\reg.exe AND site.CommandLine:*query*"


def test_broken_pipeline_file_names_file_and_line(tmp_path: Path) -> None:
    pipeline = write(tmp_path, "name: x\ntransformations:\n  - type: no_such_thing\n", "p.yml")

    with pytest.raises(ConfigError, match=r"p\.yml:2:\d+: transformations: not a valid pySigma"):
        load_pipeline_file(pipeline)


FIELDREF = RULE.format(level="low").replace(
    "CommandLine|contains: 'query'", "CommandLine|fieldref: ParentCommandLine"
)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (FIELDREF, 9, "field references"),
        (RULE.format(level="low").replace("'\\reg.exe'", "'\\reg.exe"), 9, "not valid YAML"),
        ("- just\n- a list\n", 1, "not a mapping"),
        ("title: c\ncorrelation:\n  type: event_count\n", 2, "correlation rules"),
        (RULE.format(level="loud"), 3, "level"),
        (
            RULE.format(level="low").replace("query'", "query'\n        X|re: '(?=a)'"),
            10,
            "lookaround",
        ),
    ],
    ids=["fieldref", "yaml", "list", "correlation", "bad-level", "regex"],
)
def test_unconvertible_rule_is_skipped_with_line_and_reason(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    skipped = SigmaConverter().load_file(write(tmp_path, text))

    assert isinstance(skipped, SkippedRule)
    assert skipped.line == line
    assert reason in skipped.reason


def test_loading_a_folder_never_raises(tmp_path: Path) -> None:
    write(tmp_path, RULE.format(level="low"), "a.yml")
    write(tmp_path, FIELDREF, "b.yml")
    write(tmp_path, "\x00\x01 not yaml: [", "c.yaml")

    rules = SigmaConverter().load(rule_files(tmp_path))

    assert [Path(q.path).name for q in rules.queries] == ["a.yml"]
    assert sorted(Path(s.path).name for s in rules.skipped) == ["b.yml", "c.yaml"]


def test_zeek_rules_use_the_zeek_pipeline() -> None:
    path = next(iter(rule_files(shared_data("sigma-rules", "rules", "network", "zeek"))))

    rule = convert(path)

    assert rule.query.startswith("event.dataset:zeek.")


def test_renames_file_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "process.command_line: cmd\nhost.name: agent.name\n", "renames.yml")

    assert load_renames_file(path) == {"process.command_line": "cmd", "host.name": "agent.name"}


def test_renames_file_with_a_list_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "process.command_line: cmd\nhost.name: [a, b]\n", "renames.yml")

    with pytest.raises(ConfigError, match=r"renames\.yml:2:\d+: host\.name: each rename maps"):
        load_renames_file(path)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        pytest.param(
            RULE.format(level="low").replace("id: 1111", "id: 5\nx: 1111"),
            2,
            "id must be text, not 5; quote it",
            id="number-id",
        ),
        pytest.param(
            RULE.format(level="low").replace("Image|endswith", "5"),
            8,
            "5 in the detection must be text",
            id="number-field",
        ),
        pytest.param(
            RULE.format(level="low")
            .replace("    sel:", "    7:")
            .replace("condition: sel", "condition: '7'"),
            7,
            "7 in the detection must be text",
            id="number-selection",
        ),
    ],
)
def test_numbers_where_sigma_wants_text_are_skipped_with_the_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    skipped = SigmaConverter().load_file(write(tmp_path, text))

    assert isinstance(skipped, SkippedRule)
    assert (skipped.line, skipped.reason[: len(reason)]) == (line, reason)


def test_rules_sharing_a_title_each_get_a_name_of_their_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    original = RULE.format(level="high")
    write(tmp_path, original, "a.yml")
    write(tmp_path, original.replace("-555555555555", "-666666666666"), "b.yml")
    write(tmp_path, original, "c.yml")
    write(tmp_path, original, "d.yml")

    rules = SigmaConverter().load(rule_files(tmp_path))

    assert [q.name for q in rules.queries] == [
        "Reg query",
        "Reg query [11111111-2222-3333-4444-666666666666]",
        "Reg query [11111111-2222-3333-4444-555555555555]",
        f"Reg query [{tmp_path / 'd.yml'}]",
    ]
    assert f"{tmp_path / 'b.yml'} has the title of {tmp_path / 'a.yml'}" in caplog.text
