"""Rule regexes against hostile input: RE2 at match time, refusals at load time, ES's bounds."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from nis2triage.config import RulesConfig
from nis2triage.errors import ConfigError, RuleExecutionError
from nis2triage.rulerunner import RuleRunner
from nis2triage.rules.linear_regex import RulePattern
from nis2triage.rules.loader import load_rule

from native_support import CaseIndex, at, case_index, ev, run

HOSTILE = "(a+)+$"
LONG = "a" * 30_000
# What Python's `re` would need exponential time on: a long run of `a` that fails at the end.
LONG_FAILING = LONG + "!"


@pytest.fixture(scope="module")
def cases(es: Elasticsearch) -> Iterator[CaseIndex]:
    yield from case_index(es, "regex")


def rule_yaml(index: str, label: str, kind: str, regexes: list[str]) -> str:
    listed = "".join(f"  - {json.dumps(r)}\n" for r in regexes)
    return (
        f"name: hostile {kind}\ntype: {kind}\nindex: {index}\n"
        f"filter: 'labels.case:\"{label}\"'\n"
        f"compare_key: process.name\nquery_key: host.name\nrealert: 0s\n"
        f"{kind}_regex:\n{listed}"
    )


# Loads the rule file and runs it on the node in a child process, which the test can
# abandon: a backtracking engine would hold it (and the GIL) for longer than the universe.
CHILD = """
import json, sys
from datetime import datetime
from nis2triage import esclient
from nis2triage.rules.engine import run_rule
from nis2triage.rules.loader import load_rule
from nis2triage.rules.state import RuleState
es = esclient.connect(esclient.dev_settings())
rule = load_rule(sys.argv[1])
alerts = run_rule(es, rule, datetime.fromisoformat(sys.argv[2]),
                  datetime.fromisoformat(sys.argv[3]), RuleState())
print(json.dumps(sorted(a.entity for a in alerts)))
"""


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("blacklist", ["long-run", "short-run"]),
        ("whitelist", ["long-run-then-bang", "other"]),
    ],
)
def test_hostile_regex_against_a_long_value_finishes_with_the_right_matches(
    cases: CaseIndex, tmp_path: Path, kind: str, expected: list[str]
) -> None:
    case = cases.add(
        [
            ev(1, process=LONG, host="long-run"),
            ev(2, process=LONG_FAILING, host="long-run-then-bang"),
            ev(3, process="aaaa", host="short-run"),
            ev(4, process="notepad.exe", host="other"),
        ]
    )
    path = tmp_path / "hostile.yml"
    path.write_text(rule_yaml(case.index, case.label, kind, [HOSTILE]))

    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), at(0).isoformat(), at(10).isoformat()],
        capture_output=True,
        text=True,
        timeout=20,
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected


UNSUPPORTED = [
    pytest.param("(?=admin).*", "'(?=' at character 1 is a lookahead", id="lookahead"),
    pytest.param("(?!svc-).*", "'(?!' at character 1 is a negative lookahead", id="neg-lookahead"),
    pytest.param(".*(?<=\\.exe)", "'(?<=' at character 3 is a lookbehind", id="lookbehind"),
    pytest.param("(\\w)\\1+", "'\\\\1' at character 5 is a backreference", id="backref"),
    pytest.param("(?P<c>a)(?P=c)", "'(?P=' at character 9 is a named backreference", id="named"),
    pytest.param("(?>a+)b", "'(?>' at character 1 is an atomic group", id="atomic"),
    pytest.param("a++b", "'++' at character 2 is a possessive quantifier", id="possessive"),
    pytest.param("(a)?(?(1)b|c)", "'(?(' at character 5 is a conditional group", id="conditional"),
    pytest.param("[(?=]x\\Z", "'\\\\Z' at character 7 is Python's end of text", id="end-Z"),
    pytest.param("(?x) a b", "'(?x)' at character 1 is the flag 'x'", id="verbose-flag"),
]


@pytest.mark.parametrize(("pattern", "what"), UNSUPPORTED)
def test_unsupported_syntax_is_refused_at_its_file_line_and_column(
    tmp_path: Path, pattern: str, what: str
) -> None:
    path = tmp_path / "rule.yml"
    path.write_text(rule_yaml("logs-*", "x", "blacklist", ["ok.*", pattern]))

    with pytest.raises(ConfigError, match=r"blacklist_regex\.1: unsupported") as raised:
        load_rule(path)

    assert (raised.value.path, raised.value.line, raised.value.column) == (str(path), 10, 5)
    assert f"{what}, which RE2 (the linear-time engine rules run on) does not" in str(raised.value)


def test_validate_prints_the_same_refusal(tmp_path: Path) -> None:
    path = tmp_path / "rule.yml"
    path.write_text(rule_yaml("logs-*", "x", "whitelist", ["(?!svc-).*"]))
    with pytest.raises(ConfigError) as raised:
        load_rule(path)

    done = subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", "validate", str(path)],
        capture_output=True,
        text=True,
    )

    assert done.returncode == 1
    assert f"{path}:9:5: whitelist_regex.0: unsupported regular expression" in str(raised.value)
    assert str(raised.value) in done.stdout


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("mimi(katz", r"bad regular expression 'mimi\(katz': missing \)"),
        ("a{1001}", r"invalid repetition size.*RE2 counts repeats up to 1000"),
        (r"\pL{1000}", r"pattern too large.*at most 8 MiB"),
    ],
    ids=["unbalanced", "count-over-1000", "too-large"],
)
def test_patterns_re2_cannot_compile_say_why(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RulePattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("(?i)psexec(64)?\\.exe", "PsExec64.exe", True),
        ("psexec", "psexec.exe", False),
        (HOSTILE, LONG_FAILING, False),
        (".*", "half a surrogate \ud800", True),
        ("[^x]*", "ünïcödé", True),
    ],
    ids=["flags", "whole-value-only", "hostile", "lone-surrogate", "non-ascii"],
)
def test_rule_pattern_matches_whole_values(pattern: str, value: str, matches: bool) -> None:
    assert RulePattern(pattern).fullmatch(value) is matches


def test_rule_patterns_compare_by_their_text() -> None:
    assert RulePattern("a.*") == RulePattern("a.*") != RulePattern("b.*")
    assert len({RulePattern("a.*"), RulePattern("a.*")}) == 1


# --- regular expressions Elasticsearch evaluates ------------------------------

TOO_COMPLEX = {"regexp": {"process.name": ".*a.{20}"}}


def test_a_rule_may_not_raise_elasticsearchs_automaton_bound(tmp_path: Path) -> None:
    path = tmp_path / "rule.yml"
    path.write_text(
        "name: r\ntype: any\nindex: logs-*\nfilter:\n  regexp:\n    process.name:\n"
        "      value: '.*a.{20}'\n      max_determinized_states: 1000000\n"
    )

    with pytest.raises(ConfigError, match="may not raise Elasticsearch's bound of 10000") as raised:
        load_rule(path)

    assert raised.value.line == 4


def test_a_lucene_regex_nested_too_deeply_is_refused_not_crashed(tmp_path: Path) -> None:
    path = tmp_path / "rule.yml"
    path.write_text(f"name: r\ntype: any\nindex: logs-*\nfilter: 'p:/{'(' * 5000}a{')' * 5000}/'\n")

    with pytest.raises(ConfigError, match="nested too deeply to check") as raised:
        load_rule(path)

    assert raised.value.line == 4


def test_a_regexp_too_complex_for_elasticsearch_names_the_fix(
    es: Elasticsearch, cases: CaseIndex
) -> None:
    case = cases.add([ev(1, process="aaaa", host="h")])

    with pytest.raises(RuleExecutionError, match=r"Determinizing .*too complex.*blacklist_regex"):
        run(es, case.rule("any", filter=TOO_COMPLEX), 0, 10)


def test_the_agent_pauses_a_rule_elasticsearch_finds_too_complex(
    es: Elasticsearch, cases: CaseIndex, caplog: pytest.LogCaptureFixture
) -> None:
    case = cases.add([ev(1, process="aaaa", host="h")])
    bad = case.rule("any", filter=TOO_COMPLEX).model_copy(update={"name": "too complex"})
    good = case.rule("any", query_key="host.name").model_copy(update={"name": "fine"})
    times = iter([at(15), at(20)])
    settings = RulesConfig(initial_lookback=timedelta(minutes=15))
    runner = RuleRunner(es, settings, [bad, good], [], clock=lambda: next(times))

    with caplog.at_level(logging.ERROR, logger="nis2triage.rulerunner"):
        first = runner.run_due()
        second = runner.run_due()

    assert [(a.name, a.entity) for a in first] == [("fine", "h")]
    assert second == []
    [logged] = caplog.records
    assert logged.getMessage().startswith("rule too complex paused: rule 'too complex': ")
    paused = runner.progress["too complex"].paused or ""
    assert "too complex for Elasticsearch's automaton" in paused
