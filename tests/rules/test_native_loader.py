"""Loading native rule files: every mistake named with its file, line, key and fix."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from nis2triage.errors import ConfigError
from nis2triage.rules.loader import load_rule, load_rules, rule_from_dict
from nis2triage.rules.native import BlacklistRule, FrequencyRule

REPO = Path(__file__).resolve().parents[2]

HEAD = "name: SSH brute force\nindex: logs-*\n"
FREQUENCY = HEAD + "type: frequency\nnum_events: 20\ntimeframe: 5m\n"

MISTAKES = [
    pytest.param(HEAD + "type: frequency\n  num_events: 20\n", 4, "not valid YAML", id="bad-yaml"),
    pytest.param(
        HEAD + "type: frequncy\n",
        3,
        r"unknown rule type 'frequncy'; did you mean 'frequency'\? "
        r"known types: any, frequency",
        id="unknown-type",
    ),
    pytest.param(
        HEAD + "num_events: 2\n", 1, r"type: missing; add 'type:' with one of: any,", id="no-type"
    ),
    pytest.param(
        FREQUENCY.replace("20", "twenty"),
        4,
        r"num_events: .*valid integer.*\(got 'twenty'\); "
        "write a whole number",
        id="wrong-field-type",
    ),
    pytest.param(
        FREQUENCY.replace("num_events", "num_event"),
        4,
        r"num_event: unknown key 'num_event'; did you mean 'num_events'\?$",
        id="misspelt-key",
    ),
    pytest.param(
        FREQUENCY + "triage:\n  early_warning: true\n",
        7,
        r"triage.early_warning: unknown key .*did you mean 'early_warning_candidate'",
        id="misspelt-nested-key",
    ),
    pytest.param(
        FREQUENCY.replace("timeframe: 5m\n", ""),
        1,
        r"timeframe: missing; a frequency rule needs it \(a duration such as",
        id="missing-key",
    ),
    pytest.param(
        FREQUENCY.replace("5m", "5"),
        5,
        r"timeframe: 5 has no unit; write e.g. '5s'",
        id="bare-number",
    ),
    pytest.param(
        FREQUENCY.replace("5m", "{minute: 5}"),
        5,
        r"unknown unit 'minute'; did you mean 'minutes'",
        id="duration-unit",
    ),
    pytest.param(
        FREQUENCY + "filter: 'user.name:/adm[/'\n",
        6,
        r"filter: bad regular expression /…/ at "
        "character 11: unterminated character set",
        id="bad-regex-in-lucene-filter",
    ),
    pytest.param(
        FREQUENCY + "filter:\n  regexp:\n    user.name: 'adm(in'\n",
        6,
        r"filter: bad regular expression in regexp on user.name: missing \)",
        id="bad-regex-in-dsl",
    ),
    pytest.param(
        FREQUENCY + "filter: 'event.outcome:\"failure'\n",
        6,
        r"quote at character 15 is never closed",
        id="unclosed-quote",
    ),
    pytest.param(
        HEAD + "type: blacklist\ncompare_key: process.name\n"
        "blacklist_regex:\n  - ok.*\n  - 'mimi(katz'\n",
        7,
        r"blacklist_regex.1: bad regular expression 'mimi\(katz': missing \): mimi\(katz; escape",
        id="bad-blacklist-regex",
    ),
    pytest.param(
        HEAD + "type: whitelist\ncompare_key: a\nwhitelist_files: [missing.txt]\n",
        5,
        r"whitelist_files.0: cannot read list file .*missing.txt: No such file",
        id="missing-list-file",
    ),
    # Written as a mapping, the list file crashed the loader with KeyError: 'path' (the
    # agent at start and `validate` alike); a number was said as "a dictionary or an
    # instance of ValueList".
    pytest.param(
        HEAD + "type: blacklist\ncompare_key: a\nblacklist_files:\n  - {path: tools.txt}\n",
        6,
        r"blacklist_files.0: a list file is named by its path, relative to the rule file's "
        r"folder \(got \{'path': 'tools.txt'\}\); write e.g. lists/tools.txt",
        id="list-file-as-a-mapping",
    ),
    pytest.param(
        HEAD + "type: whitelist\ncompare_key: a\nwhitelist_files: [5]\n",
        5,
        r"whitelist_files.0: a list file is named by its path, .* \(got 5\)",
        id="list-file-as-a-number",
    ),
    pytest.param(
        FREQUENCY + "tags: [T1110]\n", 6, r"tags.0: 'T1110' is not an ATT&CK tag", id="tag"
    ),
    pytest.param(
        FREQUENCY + "severity: urgent\n", 6, r"severity: Input should be 'low',", id="severity"
    ),
    pytest.param(
        HEAD + "type: cardinality\ncardinality_field: a\ntimeframe: 1h\n",
        1,
        "give max_cardinality, min_cardinality or both",
        id="cardinality-without-bound",
    ),
    pytest.param(
        HEAD + "type: metric_aggregation\nmetric_agg_key: b\nmetric_agg_type: percentiles\n"
        "timeframe: 1h\nmax_threshold: 5\n",
        1,
        "percentile_range .* goes with",
        id="percentile-range",
    ),
    pytest.param(
        FREQUENCY.replace("name: SSH brute force", "name: 'sigma:SSH brute force'"),
        1,
        r"name: a native rule's name may not begin with 'sigma:', which the agent keeps for "
        "Sigma rules",
        id="sigma-window-key",
    ),
    pytest.param(
        FREQUENCY.replace("name: SSH brute force", 'name: "SSH\u200bbrute\u202eforce"'),
        1,
        r"name: the name holds characters that do not show \(U\+200B, U\+202E\): remove them",
        id="invisible-characters-in-the-name",
    ),
    pytest.param(
        FREQUENCY.replace("name: SSH brute force", 'name: "SSH\u00a0brute force"'),
        1,
        r"name: the name holds characters that do not show \(U\+00A0\)",
        id="no-break-space-in-the-name",
    ),
    pytest.param(
        FREQUENCY.replace("name: SSH brute force", 'name: "SSH brute\ufe0f force\u3164"'),
        1,
        r"name: the name holds characters that do not show \(U\+FE0F, U\+3164\): remove them",
        id="blank-letters-and-variation-selectors-in-the-name",
    ),
    pytest.param(
        FREQUENCY.replace("name: SSH brute force", 'name: "SSH brute\u2800force\ue000"'),
        1,
        r"name: the name holds characters that do not show \(U\+2800, U\+E000\)",
        id="blank-braille-and-private-use-in-the-name",
    ),
    pytest.param(
        FREQUENCY.replace("name: SSH brute force", "name: 'SSH  brute force'"),
        1,
        r"name: the name has two spaces in a row: write 'SSH brute force'",
        id="two-spaces-in-the-name",
    ),
    pytest.param(
        FREQUENCY.replace("name: SSH brute force", "name: ' SSH brute force'"),
        1,
        r"name: the name has spaces around it: write 'SSH brute force'",
        id="spaces-around-the-name",
    ),
    pytest.param(
        FREQUENCY.replace("index: logs-*", 'index: "logs-*, filebeat-*"'),
        2,
        r"index: ' filebeat-\*' has a space around it: .*skips it without an error; "
        r"write 'logs-\*,filebeat-\*'",
        id="space-after-a-comma-in-index",
    ),
    pytest.param(
        FREQUENCY + 'query_key: "source.ip "\n',
        6,
        r"query_key: 'source\.ip ' has a space or a control character around it: write "
        r"'source\.ip'",
        id="space-after-a-field-name",
    ),
    pytest.param(
        # Counted by a terms aggregation on a field named so, the rule never fired, while
        # the count of documents without the key (an exists query, which expands the
        # pattern) found none to say.
        FREQUENCY + 'query_key: "source.*"\n',
        6,
        r"query_key: 'source\.\*' is a pattern, but the key names one field: .* name the "
        r"field itself, such as source\.ip",
        id="pattern-as-a-field-name",
    ),
    pytest.param(
        FREQUENCY + 'timestamp_field: ""\n',
        6,
        r"timestamp_field: a field name is needed",
        id="empty-time-field",
    ),
    pytest.param("- a\n- b\n", 1, "a rule file holds one mapping", id="not-a-mapping"),
    pytest.param(
        "title: x\nlogsource: {product: linux}\ndetection: {sel: {a: 1}, condition: sel}\n",
        1,
        "this is a Sigma rule",
        id="sigma-file",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), MISTAKES)
def test_mistake_names_file_line_and_fix(
    tmp_path: Path, text: str, line: int | None, message: str
) -> None:
    path = tmp_path / "rule.yml"
    path.write_text(text)

    with pytest.raises(ConfigError, match=message) as raised:
        load_rule(path)

    assert (raised.value.path, raised.value.line) == (str(path), line)


def test_every_mistake_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "rule.yml"
    path.write_text(HEAD + "type: frequency\nnum_events: x\ntimeframe: 5\n")

    with pytest.raises(ConfigError, match=r"num_events.*\n  also .*rule.yml:5:1: timeframe"):
        load_rule(path)


def test_a_valid_rule_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rule.yml"
    path.write_text(FREQUENCY + "query_key: source.ip\n")

    rule = load_rule(path)

    assert isinstance(rule, FrequencyRule)
    assert (rule.timeframe, rule.suppression, rule.timestamp_field, rule.severity) == (
        timedelta(minutes=5),
        timedelta(minutes=5),
        "@timestamp",
        "medium",
    )


@pytest.mark.parametrize(
    ("written", "length"),
    [
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        ("250ms", timedelta(milliseconds=250)),
        ({"hours": 1, "minutes": 30}, timedelta(minutes=90)),
    ],
    ids=["seconds", "fraction", "days", "milliseconds", "mapping"],
)
def test_durations(written: object, length: timedelta) -> None:
    rule = rule_from_dict(
        {"name": "r", "type": "frequency", "index": "i", "num_events": 1, "timeframe": written}
    )

    assert isinstance(rule, FrequencyRule) and rule.timeframe == length


def test_list_file_is_read_beside_the_rule(tmp_path: Path) -> None:
    (tmp_path / "tools.txt").write_text("# comment\nmimikatz.exe\n\n  procdump.exe  \n")
    path = tmp_path / "rule.yml"
    path.write_text(
        HEAD
        + "type: blacklist\ncompare_key: p\nblacklist: [nc.exe]\nblacklist_files: [tools.txt]\n"
    )

    rule = load_rule(path)

    assert isinstance(rule, BlacklistRule)
    assert rule.exact_values() == {"nc.exe", "mimikatz.exe", "procdump.exe"}


def test_duplicate_rule_names_in_a_folder(tmp_path: Path) -> None:
    for name in ("a.yml", "b.yml"):
        (tmp_path / name).write_text(FREQUENCY)

    with pytest.raises(ConfigError, match=r"also used by .*a\.yml; names must be unique") as raised:
        load_rules([tmp_path])

    assert raised.value.path == str(tmp_path / "b.yml")


@pytest.mark.parametrize(
    ("first", "second", "how"),
    [
        pytest.param("SSH-Brute-Force", "ssh-brute-force", "they differ only in case", id="case"),
        pytest.param(
            "Port scan",
            "Port sc\u0430n",
            r"this one has 'а' \(U\+0430 CYRILLIC SMALL LETTER A\) where it has 'a' "
            r"\(U\+0061 LATIN SMALL LETTER A\)",
            id="cyrillic-a",
        ),
        pytest.param(
            "Ivan's host",
            "lvan's host",
            r"this one has 'l' \(U\+006C LATIN SMALL LETTER L\) where it has 'I' "
            r"\(U\+0049 LATIN CAPITAL LETTER I\)",
            id="capital-i-small-l",
        ),
        pytest.param(
            "Port scan",
            "\uff30ort scan",
            r"this one has 'Ｐ' \(U\+FF30 FULLWIDTH LATIN CAPITAL LETTER P\) where it has 'P' "
            r"\(U\+0050 LATIN CAPITAL LETTER P\)",
            id="fullwidth",
        ),
    ],
)
def test_rule_names_an_analyst_cannot_tell_apart_are_refused_naming_both_files(
    tmp_path: Path, first: str, second: str, how: str
) -> None:
    # Kibana lists alerts by rule name: two rules reading alike would pass for one.
    (tmp_path / "a.yml").write_text(FREQUENCY.replace("SSH brute force", first))
    (tmp_path / "b.yml").write_text(FREQUENCY.replace("SSH brute force", second))

    with pytest.raises(ConfigError) as raised:
        load_rules([tmp_path])

    assert raised.value.path == str(tmp_path / "b.yml")
    assert re.search(
        rf"rule name {re.escape(repr(second))} looks like {re.escape(repr(first))}, the name "
        rf"of the rule in .*a\.yml \({how}\): their alerts would read as one rule's in Kibana",
        str(raised.value),
    )


def test_rule_names_that_merely_resemble_each_other_load(tmp_path: Path) -> None:
    for file, name in (("a.yml", "Port scan"), ("b.yml", "Port scans"), ("c.yml", "Port scan 2")):
        (tmp_path / file).write_text(FREQUENCY.replace("SSH brute force", name))

    assert [r.name for r in load_rules([tmp_path])] == ["Port scan", "Port scans", "Port scan 2"]


def test_shipped_rules_load() -> None:
    rules = load_rules([REPO / "rules" / "detection"])

    assert {r.type for r in rules} >= {"frequency", "flatline", "new_term"}
    assert all(r.tags and r.description for r in rules)
