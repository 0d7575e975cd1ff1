"""Triage files that would leave a route dead are refused at load, naming file, line and route."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nis2triage.errors import ConfigError
from nis2triage.triage import HINTS, KINDS, load_rules, unknown_names
from nis2triage.validate import check_file

from support import TRIAGE


def write(tmp_path: Path, routes: str, default: str = "soc") -> Path:
    path = tmp_path / "triage.yml"
    path.write_text(f"default: {default}\nroutes:\n{routes}")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    return str(caught.value)


def test_known_values_are_what_alerts_carry() -> None:
    assert KINDS == ("detector", "rule")
    assert HINTS == (
        "early_warning_candidate",
        "malicious",
        "unauthorised_access",
        "data_compromised",
    )


def test_typos_in_kinds_and_hints_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - name: typo\n"
        "    route: early_warning\n"
        "    when: {kinds: [detectr], hints_any: [early_warning_candiate]}\n",
    )

    assert refusal(path) == (
        f"{path}:5:20: routes.0.when.kinds.0: route 'typo': no alert has 'detectr', so this "
        "never holds: did you mean 'detector'? known kinds: detector, rule\n"
        f"{path}:5:42: routes.0.when.hints_any.0: route 'typo': no alert has "
        "'early_warning_candiate', so this never holds: did you mean "
        "'early_warning_candidate'? known hints: early_warning_candidate, malicious, "
        "unauthorised_access, data_compromised"
    )


def test_an_empty_list_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "  - name: none\n    route: contain\n    when: {hints_any: []}\n")

    assert refusal(path) == (
        f"{path}:5:12: routes.0.when.hints_any: route 'none': an empty list never holds; "
        "list values or remove the condition"
    )


def test_duplicate_route_names_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - name: same\n    route: contain\n    when: {kinds: [rule]}\n"
        "  - name: same\n    route: soc\n    when: {kinds: [detector]}\n",
    )

    assert refusal(path) == (
        f"{path}:6:5: routes.1.name: route name 'same' is already used by the route on line 3; "
        "an alert's reason names its route, so give each route its own name"
    )


@pytest.mark.parametrize(
    "when",
    [
        "",
        "    when: {}\n",
        "    when: {severity_at_least: low}\n",
        "    when: {kinds: [rule, detector], severity_at_least: low}\n",
    ],
    ids=["no-when", "empty-when", "lowest-severity", "every-kind"],
)
def test_a_catch_all_before_other_routes_is_refused(tmp_path: Path, when: str) -> None:
    path = write(
        tmp_path,
        f"  - name: everything\n    route: soc\n{when}"
        "  - name: reportable\n    route: early_warning\n"
        "    when: {hints_any: [early_warning_candidate]}\n"
        "  - name: rules\n    route: contain\n    when: {kinds: [rule]}\n",
    )

    assert refusal(path) == (
        f"{path}:3:5: routes.0: route 'everything' has no condition an alert can fail, so it "
        "claims every alert and the routes after it ('reportable', 'rules') are never tried; "
        "give it conditions, move it last, or drop it and write `default: soc`"
    )


def test_a_catch_all_last_and_known_values_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - name: reportable\n    route: early_warning\n"
        "    when: {kinds: [detector, rule], hints_any: [malicious, early_warning_candidate]}\n"
        "  - name: everything else\n    route: soc\n",
    )

    rules = load_rules(path)

    assert [r.name for r in rules.routes] == ["reportable", "everything else"]


def test_validate_reports_every_problem_by_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - name: a\n    route: soc\n"
        "  - name: a\n    route: contain\n    when: {kinds: [rules]}\n",
    )

    finding = check_file(path)

    assert finding.kind == "triage"
    assert finding.problem is not None
    assert [line.split(": ")[0] for line in finding.problem.splitlines()] == [
        f"{path}:3:5",
        f"{path}:5:5",
        f"{path}:7:20",
    ]


def test_names_no_rule_has_are_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(
        tmp_path,
        "  - name: brute\n    route: early_warning\n"
        "    when: {names: [ssh-brute-forse, Reg query]}\n",
    )
    rules = load_rules(path)

    with caplog.at_level(logging.WARNING, logger="nis2triage.triage"):
        said = unknown_names(rules, ["ssh-brute-force", "Reg query"])

    assert said == [
        "triage route 'brute': no rule or detector is named 'ssh-brute-forse' "
        "(did you mean 'ssh-brute-force'?), so this condition never holds"
    ]
    assert caplog.messages == said


def test_shipped_routes_load() -> None:
    assert [r.name for r in load_rules(TRIAGE).routes] == [
        "high-confidence-threat-on-critical-asset",
        "serious-detection-on-important-asset",
        "rule-flagged-reportable",
    ]


@pytest.mark.parametrize("condition", ["events_at_least: true", "score_ratio_at_least: yes"])
def test_a_yes_or_true_where_a_number_is_meant_is_refused(tmp_path: Path, condition: str) -> None:
    path = write(tmp_path, f"  - name: many\n    route: soc\n    when: {{{condition}}}\n")

    key = condition.split(":")[0]
    kind = "integer" if key == "events_at_least" else "number"
    assert refusal(path) == f"{path}:5:12: routes.0.when.{key}: Input should be a valid {kind}"


def test_a_route_a_high_severity_alert_can_fail_is_no_catch_all(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  - name: not-low\n    route: soc\n    when: {severity_at_least: medium}\n"
        "  - name: rules\n    route: contain\n    when: {kinds: [rule]}\n",
    )

    assert [r.name for r in load_rules(path).routes] == ["not-low", "rules"]


@pytest.mark.parametrize("value", [".inf", ".nan"])
def test_a_ratio_no_alert_can_reach_is_refused(tmp_path: Path, value: str) -> None:
    # An infinite ratio is a bar no finite score passes: a route that never holds.
    path = write(
        tmp_path,
        f"  - name: never\n    route: contain\n    when: {{score_ratio_at_least: {value}}}\n",
    )

    assert refusal(path) == (
        f"{path}:5:12: routes.0.when.score_ratio_at_least: Input should be a finite number"
    )
