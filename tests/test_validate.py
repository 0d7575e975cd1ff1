"""`nis2triage validate` on broken files: each error names the right file, line and column."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nis2triage import esclient
from nis2triage.config import load_config
from nis2triage.validate import validate

from support import DETECTORS, REPO, write_agent_config

RULE = "name: r\ntype: frequency\nindex: logs-*\nnum_events: 5\ntimeframe: 5m\n"
DETECTOR = (REPO / "detectors" / "ssh-brute-force.yml").read_text()

BROKEN = [
    pytest.param(
        "bad.yml",
        "name: r\ntype: [frequency\nindex: x\n",
        r"bad\.yml:3:\d+: not valid YAML",
        id="bad-yaml",
    ),
    pytest.param(
        "type.yml",
        RULE.replace("frequency", "frequancy"),
        r"type\.yml:2:\d+: .*frequency",
        id="unknown-type",
    ),
    pytest.param(
        "field.yml",
        RULE.replace("num_events: 5", "num_events: five"),
        r"field\.yml:4:\d+: num_events",
        id="wrong-type",
    ),
    pytest.param(
        "regex.yml",
        RULE.replace("type: frequency", "type: blacklist").replace(
            "num_events: 5\ntimeframe: 5m\n",
            "compare_key: process.name\nblacklist_regex: ['(unclosed']\n",
        ),
        r"regex\.yml:\d+:\d+: .*(regular expression|regex)",
        id="bad-regex",
    ),
    pytest.param(
        "estimator.yml",
        DETECTOR.replace("anomaly.HalfSpaceTrees", "anomaly.HalfSpaceForest"),
        r"estimator\.yml:\d+:\d+: model: .*unknown River estimator 'anomaly\.HalfSpaceForest'",
        id="unknown-estimator",
    ),
    pytest.param(
        "limits.yml",
        DETECTOR.replace("limits: {failures:", "limits: {failure:"),
        r"limits\.yml:\d+:\d+: model: .*limits name \['failure'\], which the model is not given",
        id="limits-of-no-feature",
    ),
    pytest.param(
        "year.yml",
        DETECTOR.replace("bucket: 5m", "bucket: 400d"),
        r"year\.yml:16:\d+: bucket: .*31 days",
        id="bucket-longer-than-a-month",
    ),
    pytest.param(
        "never.yml",
        DETECTOR.replace("warmup: 10", "warmup: 100000000000000000000000"),
        r"never\.yml:29:\d+: warmup: .*1000000",
        id="warmup-that-never-ends",
    ),
    pytest.param(
        "bool.yml",
        DETECTOR.replace("warmup: 10", "warmup: true"),
        r"bool\.yml:29:\d+: warmup: .*integer",
        id="warmup-true",
    ),
    pytest.param(
        "huge.yml",
        DETECTOR.replace("warmup: 10", "warmup: 10\nmax_entities: 100000000000"),
        r"huge\.yml:30:\d+: max_entities: .*1000000",
        id="entities-beyond-memory",
    ),
]


@pytest.mark.parametrize(("name", "text", "match"), BROKEN)
def test_broken_file_is_reported_with_file_line_and_column(
    tmp_path: Path, name: str, text: str, match: str
) -> None:
    (tmp_path / name).write_text(text)

    [finding] = validate([str(tmp_path / name)])

    assert not finding.ok
    assert finding.problem is not None
    assert re.search(match, finding.problem, re.S), finding.problem


def test_estimator_error_points_at_the_model_line(tmp_path: Path) -> None:
    path = tmp_path / "d.yml"
    path.write_text(DETECTOR.replace("anomaly.HalfSpaceTrees", "anomaly.Nope"))
    model_line = DETECTOR.splitlines().index("model:") + 1

    [finding] = validate([str(path)])

    assert f"d.yml:{model_line}:" in (finding.problem or "")


def test_shipped_files_are_valid() -> None:
    # The example and compose configurations name files on the agent's machine.
    findings = validate(
        [str(REPO / "rules"), str(REPO / "detectors"), str(REPO / "deploy")], references=False
    )
    [demo] = validate([str(REPO / "deploy" / "demo" / "nis2triage.yml")])

    assert demo.ok, demo.problem

    assert [f.problem for f in findings if not f.ok] == []
    assert {f.kind for f in findings} >= {"native rule", "detector", "triage", "configuration"}


def test_cli_exits_non_zero_on_any_error(tmp_path: Path) -> None:
    (tmp_path / "good.yml").write_text(RULE)
    (tmp_path / "bad.yml").write_text("what: is this\n")
    done = subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
    )

    assert done.returncode == 1
    assert "2 files checked, 1 with errors" in done.stdout
    assert "cannot tell what this file is" in done.stdout


def test_a_configuration_naming_missing_files_is_refused(
    tmp_path: Path, es_settings: esclient.ESSettings
) -> None:
    path = write_agent_config(tmp_path, es_settings, "logs-x", "x-st")
    path.write_text(path.read_text().replace(str(DETECTORS), str(tmp_path / "nope")))

    [finding] = validate([str(path)])

    assert finding.problem is not None
    assert re.search(
        r"nis2triage\.yml:\d+:1: detectors: '.*nope/\*\.yml' matches no file", finding.problem
    )
    # Only absolute paths are missing: where relative ones are read from is beside the point.
    assert finding.problem.endswith("\n  (--no-references skips this check)")
    assert validate([str(path)], references=False)[0].ok


def test_a_missing_ca_file_and_criteria_folder_are_named(
    tmp_path: Path, es_settings: esclient.ESSettings
) -> None:
    path = write_agent_config(tmp_path, es_settings, "logs-x", "x-st")
    settings = yaml.safe_load(path.read_text())
    settings["elasticsearch"].update(hosts=["https://127.0.0.1:9200"], ca_file="ca.pem")
    settings["incidents"] = {"criteria": "no-criteria-here"}
    path.write_text(yaml.safe_dump(settings))

    [finding] = validate([str(path)])

    assert finding.problem is not None
    assert re.search(r"elasticsearch\.ca_file: 'ca\.pem' matches no file", finding.problem)
    assert re.search(r"incidents\.criteria: 'no-criteria-here' matches no file", finding.problem)
    assert f"(relative paths are read from {tmp_path}; --no-references" in finding.problem


@pytest.mark.parametrize("key", ["password_file", "api_key_file"])
def test_a_missing_credential_file_is_named(
    tmp_path: Path, es_settings: esclient.ESSettings, key: str
) -> None:
    # `validate` said ok to a misspelt password_file; the agent then stopped at once.
    path = write_agent_config(tmp_path, es_settings, "logs-x", "x-st")
    settings = yaml.safe_load(path.read_text())
    for credential in ("username", "password_env", "password_file", "api_key_env"):
        settings["elasticsearch"].pop(credential, None)
    if key == "password_file":
        settings["elasticsearch"]["username"] = "elastic"
    settings["elasticsearch"][key] = "secret-pasword"
    path.write_text(yaml.safe_dump(settings))

    [finding] = validate([str(path)])

    assert finding.problem is not None
    assert re.search(rf"elasticsearch\.{key}: 'secret-pasword' matches no file", finding.problem)


def test_a_criteria_folder_without_criteria_is_refused(
    tmp_path: Path, es_settings: esclient.ESSettings
) -> None:
    path = write_agent_config(tmp_path, es_settings, "logs-x", "x-st")
    (tmp_path / "empty").mkdir()
    settings = yaml.safe_load(path.read_text())
    settings["incidents"] = {"criteria": "empty"}
    path.write_text(yaml.safe_dump(settings))

    [finding] = validate([str(path)])

    assert finding.problem is not None and "criterion" in finding.problem


def test_a_native_rule_the_configuration_names_is_checked_too(
    tmp_path: Path, es_settings: esclient.ESSettings
) -> None:
    rule = tmp_path / "rules" / "typo.yml"
    rule.parent.mkdir()
    rule.write_text(RULE.replace("frequency", "frequncy"))
    path = write_agent_config(
        tmp_path, es_settings, "logs-x", "x-st", rules={"native": [str(rule.parent / "*.yml")]}
    )

    [finding] = validate([str(path)])

    assert finding.problem is not None
    assert re.search(r"typo\.yml:2:\d+: .*frequency", finding.problem)


def test_a_sigma_rule_the_configuration_names_is_converted_too(
    tmp_path: Path, es_settings: esclient.ESSettings
) -> None:
    # The agent skips such a rule with a warning and runs without it; validate said "ok".
    folder = tmp_path / "sigma"
    folder.mkdir()
    (folder / "typo.yml").write_text(
        "title: typo\nlogsource: {product: windows, category: process_creation}\n"
        "detection:\n  selection: {Image|endswith: '\\\\x.exe'}\n  condition: selectionn\n"
    )
    path = write_agent_config(
        tmp_path, es_settings, "logs-x", "x-st", rules={"sigma": [str(folder)]}
    )

    [finding] = validate([str(path)])

    assert finding.problem is not None
    assert re.search(r"typo\.yml:5: .*'selectionn' not defined", finding.problem)
    assert finding.problem.endswith("(the agent would skip these Sigma rules and run without them)")


def test_a_detector_reading_a_source_the_configuration_lacks_is_refused(
    tmp_path: Path, es_settings: esclient.ESSettings
) -> None:
    detector = tmp_path / "detectors" / "ssh.yml"
    detector.parent.mkdir()
    detector.write_text(DETECTOR.replace("source: auth", "source: authentication"))
    path = write_agent_config(tmp_path, es_settings, "logs-x", "x-st")
    path.write_text(path.read_text().replace(str(DETECTORS), str(detector.parent)))

    [finding] = validate([str(path)])

    assert finding.problem is not None
    assert "source 'authentication' is not configured (auth)" in finding.problem
    line = DETECTOR.splitlines().index("source: auth") + 1
    assert f"ssh.yml:{line}:" in finding.problem


def test_two_detectors_of_one_name_are_refused_naming_both_files(
    tmp_path: Path, es_settings: esclient.ESSettings
) -> None:
    folder = tmp_path / "detectors"
    folder.mkdir()
    (folder / "a-ssh.yml").write_text(DETECTOR)
    (folder / "b-copy.yml").write_text(DETECTOR)
    path = write_agent_config(tmp_path, es_settings, "logs-x", "x-st")
    path.write_text(path.read_text().replace(str(DETECTORS), str(folder)))

    [finding] = validate([str(path)])

    assert finding.problem is not None
    assert re.search(
        r"b-copy\.yml:\d+:\d+: name: 'ssh-brute-force' is also the name of the detector in ",
        finding.problem,
    )
    assert "a-ssh.yml" in finding.problem


def test_a_folder_with_two_detectors_or_rules_of_one_name_fails_the_later_file(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "loaded-together"
    folder.mkdir()
    (folder / "a-ssh.yml").write_text(DETECTOR)
    (folder / "b-copy.yml").write_text(DETECTOR)
    (folder / "c-rule.yml").write_text(RULE)
    (folder / "d-rule-copy.yml").write_text(RULE.replace("num_events: 5", "num_events: 9"))
    (folder / "e-other.yml").write_text(RULE.replace("name: r", "name: s"))
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "ssh.yml").write_text(DETECTOR)
    # An old copy in a subfolder (the agent reads a folder without its subfolders), and a
    # link to a file of the folder (the agent loads it once).
    (folder / "old").mkdir()
    (folder / "old" / "rule-before.yml").write_text(RULE)
    (folder / "z-link.yml").symlink_to(folder / "a-ssh.yml")

    findings = {Path(f.path).name: f for f in validate([str(folder), str(staging)])}

    assert findings["a-ssh.yml"].ok and findings["c-rule.yml"].ok
    assert findings["e-other.yml"].ok
    # Another folder may hold a copy under the same name (it is never loaded with this one).
    assert findings["ssh.yml"].ok
    assert findings["rule-before.yml"].ok and findings["z-link.yml"].ok
    detector, rule = findings["b-copy.yml"].problem, findings["d-rule-copy.yml"].problem
    assert detector is not None and rule is not None
    assert re.search(
        r"b-copy\.yml:2:\d+: name: 'ssh-brute-force' is also the name of the "
        r"detector in .*a-ssh\.yml",
        detector,
    )
    assert re.search(
        r"d-rule-copy\.yml:1:\d+: name: 'r' is also the name of the rule in "
        r".*c-rule\.yml",
        rule,
    )


def test_one_file_checked_is_said_in_the_singular(tmp_path: Path) -> None:
    (tmp_path / "good.yml").write_text(RULE)
    done = subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", "validate", str(tmp_path / "good.yml")],
        capture_output=True,
        text=True,
    )

    assert (done.returncode, done.stdout.splitlines()[-1]) == (0, "1 file checked, 0 with errors")


def test_a_configurations_line_says_whether_the_files_it_names_were_checked(
    tmp_path: Path, es_settings: esclient.ESSettings
) -> None:
    # "1 file checked" counts the files given; the configuration's own are checked with it.
    path = write_agent_config(tmp_path, es_settings, "logs-x", "x-st")

    def ok_line(*flags: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "nis2triage.cli", "validate", *flags, str(path)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.splitlines()[0]

    assert ok_line() == f"ok      {path} (configuration, with the files it names)"
    assert ok_line("--no-references") == (
        f"ok      {path} (configuration; the files it names not checked)"
    )


def test_an_unknown_placeholder_in_a_detectors_message_is_said_at_its_line(
    tmp_path: Path,
) -> None:
    detector = tmp_path / "ssh.yml"
    detector.write_text(DETECTOR.replace("{failures}", "{sources}", 1))
    line = (
        DETECTOR.splitlines().index(
            next(x for x in DETECTOR.splitlines() if x.startswith("message:"))
        )
        + 1
    )

    [finding] = validate([str(detector)])

    assert finding.problem is not None
    assert f"ssh.yml:{line}:" in finding.problem
    assert "message: names unknown fields ['sources']" in finding.problem


def test_a_detector_two_patterns_match_is_one_detector(
    tmp_path: Path, es_settings: esclient.ESSettings
) -> None:
    folder = tmp_path / "detectors"
    folder.mkdir()
    (folder / "ssh.yml").write_text(DETECTOR)
    path = write_agent_config(tmp_path, es_settings, "logs-x", "x-st")
    settings = yaml.safe_load(path.read_text())
    settings["detectors"] = [str(folder / "*.yml"), str(folder / "ssh.yml")]
    path.write_text(yaml.safe_dump(settings))

    [finding] = validate([str(path)])

    assert finding.problem is None
    assert load_config(path).detector_files() == [folder / "ssh.yml"]


def test_a_rule_whose_name_only_looks_like_another_in_its_folder_fails_naming_both(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.yml").write_text(RULE.replace("name: r", "name: Port scan"))
    (tmp_path / "b.yml").write_text(RULE.replace("name: r", "name: Port sc\u0430n"))

    findings = {Path(f.path).name: f for f in validate([str(tmp_path)])}

    assert findings["a.yml"].ok
    assert findings["b.yml"].problem is not None
    assert re.search(
        r"b\.yml:1:\d+: name: 'Port scаn' looks like 'Port scan', the name of the rule in "
        r".*a\.yml \(this one has 'а' \(U\+0430 CYRILLIC SMALL LETTER A\) where it has 'a' ",
        findings["b.yml"].problem,
    )


def test_a_native_rule_named_like_a_detector_fails_the_configuration_naming_both(
    tmp_path: Path, es_settings: esclient.ESSettings
) -> None:
    # An alert carries its name alone: triage's `names: [ssh-brute-force]` and Kibana took
    # the rule's alerts for the detector's.
    rule = tmp_path / "rules" / "ssh.yml"
    rule.parent.mkdir()
    rule.write_text(RULE.replace("name: r", "name: SSH-Brute-Force"))
    path = write_agent_config(
        tmp_path, es_settings, "logs-x", "x-st", rules={"native": [str(rule.parent)]}
    )

    [finding] = validate([str(path)])

    assert finding.problem is not None
    assert re.search(
        r"native rule 'SSH-Brute-Force' has the name of the detector in .*ssh-brute-force\.yml "
        r"\(it looks like 'ssh-brute-force'\): an alert carries its name alone",
        finding.problem,
    )


def test_a_misspelt_detector_in_detector_processes_fails_the_configuration(
    tmp_path: Path, es_settings: esclient.ESSettings
) -> None:
    # `validate` said ok and `run` then stopped at start on the same file (new-user run).
    path = write_agent_config(tmp_path, es_settings, "logs-x", "x-st")
    path.write_text(path.read_text() + "detector_processes: [auth-volume-per-usr]\n")

    [finding] = validate([str(path)])

    assert finding.problem is not None
    line = path.read_text().splitlines().index("detector_processes: [auth-volume-per-usr]") + 1
    assert re.search(
        rf"nis2triage\.yml:{line}:\d+: detector_processes\.0: no loaded detector is named "
        r"'auth-volume-per-usr'",
        finding.problem,
    )


def test_a_report_folder_holding_another_prefixs_reports_fails_the_configuration(
    tmp_path: Path, es_settings: esclient.ESSettings
) -> None:
    # The agent refuses to start on it (and `incidents report` to write there): validate
    # said ok, and the refusal came at the deployment.
    path = write_agent_config(tmp_path, es_settings, "logs-x", "staging")
    settings = yaml.safe_load(path.read_text())
    settings["incidents"] = {"report_dir": "reports", "channels": ["manual"]}
    path.write_text(yaml.safe_dump(settings))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / ".nis2triage-prefix").write_text("production\n")

    [finding] = validate([str(path)])

    assert finding.problem is not None
    line = path.read_text().splitlines().index("  report_dir: reports") + 1
    assert re.search(
        rf"nis2triage\.yml:{line}:\d+: incidents\.report_dir: the report folder .*reports "
        r"holds the reports of the agent with index prefix 'production'",
        finding.problem,
    )
    assert "'staging'" in finding.problem
    # Read, never written: validate may run where the agent's files are not its own.
    assert (tmp_path / "reports" / ".nis2triage-prefix").read_text() == "production\n"
    assert [p.name for p in (tmp_path / "reports").iterdir()] == [".nis2triage-prefix"]


def test_a_report_dir_that_is_a_file_fails_the_configuration(
    tmp_path: Path, es_settings: esclient.ESSettings
) -> None:
    # The agent starts, and each report is retried for ever as a folder it cannot write.
    path = write_agent_config(tmp_path, es_settings, "logs-x", "x-st")
    settings = yaml.safe_load(path.read_text())
    settings["incidents"] = {"report_dir": "reports.pdf", "channels": ["manual"]}
    path.write_text(yaml.safe_dump(settings))
    (tmp_path / "reports.pdf").write_bytes(b"%PDF-1.4\n")

    [finding] = validate([str(path)])

    assert finding.problem is not None
    assert re.search(
        r"nis2triage\.yml:\d+:\d+: incidents\.report_dir: .*reports\.pdf is a file, not a "
        r"folder",
        finding.problem,
    )
