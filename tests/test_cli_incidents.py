"""`nis2triage incidents`: argument parsing, and the commands against the real node."""

from __future__ import annotations

import argparse
import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from nis2triage import cli_incidents, esclient
from nis2triage.cli import build_parser, main
from nis2triage.config import load_config
from nis2triage.incidents import reporting
from nis2triage.incidents.flow import IncidentFlow
from nis2triage.incidents.record import Incident
from nis2triage.nis2.brussels import show
from nis2triage.notify import build
from nis2triage.notify.notifier import Notifier
from nis2triage.records import Alert
from nis2triage.reports.render import claim
from nis2triage.reports.stages import BY_CLI
from nis2triage.store import Store

from report_sample import ASSET, T0, sample_alert
from support import write_agent_config

EARLY = BY_CLI["early-warning"]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["incidents", *argv])


def test_impact_flags_become_facts_of_the_right_type() -> None:
    args = parse("impact", "abc123", "-c", "a.yml", "--users", "12", "--loss", "2500.5",
                 "--severe-disruption", "yes", "--fact", "deaths=0",
                 "--fact", "death_risk=no")  # fmt: skip

    assert (args.users, args.loss, args.severe_disruption) == (12, 2500.5, True)
    assert args.fact == [("deaths", 0), ("death_risk", False)]


@pytest.mark.parametrize("typed", ["20.000", "1.500.000", "20,000", "20.000,50"])
def test_a_loss_written_with_thousands_separators_is_refused_not_read_as_cents(
    typed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Written as Belgians write twenty thousand euros, "20.000" was recorded as 20.0 and
    # went into the CCB's report so; "20,000" was refused as an "invalid float value".
    with pytest.raises(SystemExit) as stopped:
        parse("impact", "abc123", "-c", "a.yml", "--loss", typed)

    assert stopped.value.code == 2
    assert capsys.readouterr().err.endswith(
        f"argument --loss: {typed!r} is not an amount in euros as this option takes it: "
        "write the digits without thousands separators and at most two decimals after "
        "a point, e.g. 20000 or 1250.50\n"
    )


@pytest.mark.parametrize(("typed", "euros"), [("20000", 20000.0), ("1250.5", 1250.5),
                                              ("1250.50", 1250.5), ("0", 0.0)])  # fmt: skip
def test_a_loss_in_euros_and_cents_is_taken(typed: str, euros: float) -> None:
    assert parse("impact", "abc123", "-c", "a.yml", "--loss", typed).loss == euros


@pytest.mark.parametrize("command", [["list"], ["show", "abc123"]])
def test_without_c_the_usage_error_names_the_file_the_readme_installs(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # The README installs /etc/nis2triage/nis2triage.yml; the hint named agent.yml, a file
    # the user never made. A usage error, so argparse's status 2, not a failure's 1.
    with pytest.raises(SystemExit) as stopped:
        main(["incidents", *command])

    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        f"nis2triage incidents {command[0]}: the agent's configuration is needed: "
        f"nis2triage incidents {command[0]} -c /etc/nis2triage/nis2triage.yml\n"
    )


@pytest.mark.parametrize(
    ("shown", "typed"),
    [("early_warning", "early-warning"), ("incident_notification", "notification"),
     ("final_report", "final"), ("early-warning", "early-warning")],
)  # fmt: skip
@pytest.mark.parametrize("command", ["report", "submitted"])
def test_stage_takes_the_report_names_incidents_show_prints(
    command: str, shown: str, typed: str
) -> None:
    reference = ["--reference", "CCB-1"] if command == "submitted" else []

    args = parse(command, "abc123", "-c", "a.yml", "--stage", shown, *reference)

    assert args.stage == typed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--malicious", "maybe"], "answer yes or no", id="yes-no"),
        pytest.param(["--fact", "deaths"], "NAME=VALUE", id="fact-without-value"),
        pytest.param(["--fact", "deaths=many"], "yes, no or a number", id="fact-not-a-number"),
    ],
)
def test_bad_impact_arguments_say_what_is_expected(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse("impact", "abc123", "-c", "a.yml", *argv)

    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["list", "--limit", "-1"], "give 1 to 10,000", id="limit-negative"),
        pytest.param(["ack", "abc123", "--at", "0001-01-01T00:00+14:00"],
                     "lies before the year 1 in UTC", id="at-before-year-one"),
        pytest.param(["impact", "abc123", "--personal-data-at", "0001-01-01T05:00+06:00"],
                     "lies before the year 1 in UTC", id="personal-data-at-before-year-one"),
        pytest.param(["list", "--limit", "20000"], "give 1 to 10,000", id="limit-past-a-search"),
        pytest.param(["ack", "abc123", "--by", " "], "empty: give a name", id="by-blank"),
        pytest.param(["request", "abc123", "", "--due", "48h"], "empty", id="ref-empty"),
        pytest.param(["request", "abc123", "R1", "--due", "0s"], "not in the future", id="due-now"),
        pytest.param(["submitted", "abc123", "--stage", "final", "--reference", "a\nb"],
                     "control character", id="reference-two-lines"),
        pytest.param(["ack", "abc123", "--by", "alice\u2028bob"], "line break",
                     id="by-unicode-line-break"),
        pytest.param(["ack", "abc123", "--by", "ana\udcfflyst"], "is not UTF-8 text",
                     id="by-not-utf8"),
        pytest.param(["close", "abc123", "--reason", "handled\x1b[2J\x1b]0;pwned\x07"],
                     "holds U+0007, U+001B: control or direction characters", id="reason-escape"),
        pytest.param(["impact", "abc123", "--root-cause", "ok \u202eexe.pdf"], "holds U+202E",
                     id="root-cause-bidi"),
        pytest.param(["impact", "abc123", "--description", "line1\rline2"], "holds U+000D",
                     id="description-lone-carriage-return"),
    ],
)  # fmt: skip
def test_arguments_an_audit_trail_cannot_use_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse(*argv[:1], "-c", "a.yml", *argv[1:])

    assert message in capsys.readouterr().err


def test_prose_keeps_its_lines_and_tabs_and_windows_line_ends_become_lines() -> None:
    assert cli_incidents._prose(" first line\r\n\tsecond, indented \n") == (
        "first line\n\tsecond, indented"
    )


def test_a_due_time_is_absolute_with_an_offset_or_a_duration_from_now() -> None:
    soon = cli_incidents._when("48h") - datetime.now(UTC)

    assert timedelta(hours=47, minutes=59) < soon <= timedelta(hours=48)
    assert cli_incidents._when("2026-03-02T10:00:00+01:00") == datetime(2026, 3, 2, 9, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError, match="give the offset"):
        cli_incidents._when("2026-03-02T10:00:00")
    with pytest.raises(argparse.ArgumentTypeError, match=r"999999999d': date value out of range"):
        cli_incidents._when("999999999d")


def with_incident(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    notifier: dict[str, object] | None = None,
    *alerts: Alert,
) -> tuple[Path, Notifier, Incident]:
    """A configuration, its notifier, and the incident `alerts` (by default one
    early-warning alert) open on the real node."""
    config = write_agent_config(tmp_path, es_settings, index_name, index_name, notifier)
    cfg = load_config(config)
    store = Store(es, index_name)
    store.ensure_indices()
    sender = build.notifier(cfg, store, b"k" * 16, lambda: T0)
    flow = IncidentFlow(cfg, store, sender, lambda: T0)
    flow.desk.take([(a, ASSET) for a in alerts or (sample_alert(),)])
    return config, sender, flow.desk.book.find({"match_all": {}})[0]


@pytest.mark.usefixtures("agent_env")
def test_a_missing_pseudonym_key_is_asked_for_as_the_agents_own_not_a_new_one(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # An analyst's shell without the key was told to make one (openssl rand -hex 32): the
    # incident's addresses and accounts would then take other pseudonyms than the agent's.
    config, _, incident = with_incident(es, es_settings, index_name, tmp_path)
    monkeypatch.delenv("NIS2TRIAGE_PSEUDONYM_KEY")
    capsys.readouterr()

    assert main(["incidents", "ack", incident.id, "-c", str(config)]) == 1

    assert capsys.readouterr().err == (
        "nis2triage: notifier.pseudonymise is on but NIS2TRIAGE_PSEUDONYM_KEY is not set: "
        "set it to the key the agent runs with (another key gives every address and account "
        "new pseudonyms); for a first installation make one with openssl rand -hex 32, or "
        "turn pseudonymise off\n"
    )


@pytest.mark.usefixtures("agent_env")
def test_list_show_and_refusals_against_the_real_node(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    soc_only = dataclasses.replace(sample_alert(T0 - timedelta(hours=3)), route="soc")
    alerts = (soc_only, sample_alert())
    config, notifier, incident = with_incident(es, es_settings, index_name, tmp_path, None, *alerts)
    capsys.readouterr()

    assert main(["incidents", "list", "-c", str(config), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(i["id"], i["status"], i["alerts"]) for i in listed] == [(incident.id, "aware", 1)]
    # For scripts: ISO times in UTC, as `status --json` gives them, not the table's text.
    early_due = next(d.due for d in incident.deadlines if d.key == "early_warning")
    assert listed[0]["opened"] == incident.opened_at.isoformat()
    assert listed[0]["next_due"] == {"key": "early_warning", "due": early_due.isoformat()}
    assert main(["incidents", "show", incident.id[:8], "-c", str(config)]) == 0
    shown = capsys.readouterr().out
    assert "serious detection" in shown
    # The incident's time is the first detection's: "opened" read as when it was recorded.
    assert "first detected" in shown and show(incident.opened_at) in shown
    assert main(["incidents", "impact", incident.id, "-c", str(config)]) == 1
    assert "nothing to record" in capsys.readouterr().err
    assert main(["incidents", "show", "", "-c", str(config)]) == 1
    assert "no incident id given" in capsys.readouterr().err
    assert main(["incidents", "report", incident.id, "-c", str(config), "--stage", "final"]) == 1
    assert "follows the incident notification" in capsys.readouterr().err
    again = ["--stage", "early-warning", "--request", "again"]
    assert main(["incidents", "report", incident.id, "-c", str(config), *again]) == 1
    assert "--request belongs to intermediate reports" in capsys.readouterr().err
    assert notifier.entry(reporting.report_key(incident.id, EARLY, "again", b"k" * 16)[1]) is None
    # Reading needs no pseudonym key; making a report does.
    monkeypatch.delenv("NIS2TRIAGE_PSEUDONYM_KEY")
    assert main(["incidents", "show", incident.id, "-c", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["incident"]["id"] == incident.id
    early = ["--stage", "early-warning"]
    assert main(["incidents", "report", incident.id, "-c", str(config), *early]) == 1
    assert "NIS2TRIAGE_PSEUDONYM_KEY is not set" in capsys.readouterr().err


@pytest.mark.usefixtures("agent_env")
@pytest.mark.parametrize(
    ("mode", "told"),
    [
        # No agent runs here: "the running agent sends it" sent the reader waiting for none.
        ("send", "not sent yet, and no agent holds the lease of "),
        ("dry-run", "dry-run: stored in the outbox as it would be sent, and not sent"),
    ],
)
def test_a_queued_report_says_whether_and_when_it_is_sent(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], mode: str, told: str,
) -> None:  # fmt: skip
    sending = {"mode": mode, "endpoint": "http://127.0.0.1:9/notifications"}
    config, _, incident = with_incident(es, es_settings, index_name, tmp_path, sending)
    capsys.readouterr()

    argv = ["incidents", "report", incident.id, "-c", str(config), "--stage", "early-warning"]
    assert main([*argv, "--out", str(tmp_path / "reports")]) == 0

    said = capsys.readouterr().out
    assert "for http" in said
    assert told in said


@pytest.mark.usefixtures("agent_env")
def test_a_dry_run_report_asked_for_again_says_it_was_made_again(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    config, _, incident = with_incident(es, es_settings, index_name, tmp_path)
    argv = ["incidents", "report", incident.id, "-c", str(config), "--stage", "early-warning"]
    assert main([*argv, "--out", str(tmp_path / "reports")]) == 0
    capsys.readouterr()

    assert main([*argv, "--out", str(tmp_path / "reports")]) == 0

    said = capsys.readouterr().out
    assert "made again (dry-run) for http" in said and "already queued" not in said


@pytest.mark.usefixtures("agent_env")
def test_a_report_folder_that_cannot_be_written_is_said_not_a_traceback(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    config, _, incident = with_incident(es, es_settings, index_name, tmp_path)
    taken = tmp_path / "a-file"
    taken.write_text("not a folder\n")
    capsys.readouterr()

    argv = ["incidents", "report", incident.id, "-c", str(config), "--stage", "early-warning"]
    assert main([*argv, "--out", str(taken)]) == 1

    said = capsys.readouterr().err
    assert f"its files cannot be written to {taken}" in said
    assert "Traceback" not in said


@pytest.mark.usefixtures("agent_env")
def test_the_configuration_may_come_before_the_subcommand_and_its_absence_is_said(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    config, _, incident = with_incident(es, es_settings, index_name, tmp_path)
    capsys.readouterr()

    # `incidents -c FILE list` read FILE as the subcommand's name, refused as a choice.
    assert main(["incidents", "-c", str(config), "list", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["incidents", "list", "--json", "-c", str(config)]) == 0
    assert first == json.loads(capsys.readouterr().out)
    assert [i["id"] for i in first] == [incident.id]
    with pytest.raises(SystemExit, match="2"):
        main(["incidents", "list"])
    assert "needed: nis2triage incidents list -c /etc/" in capsys.readouterr().err


@pytest.mark.usefixtures("agent_env")
@pytest.mark.parametrize("command", [["list"], ["show", "abcdef12"]])
def test_a_prefix_no_agent_ran_with_is_said_and_no_index_is_made(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], command: list[str],
) -> None:  # fmt: skip
    # A misspelt state.index_prefix listed no incident, exit 0, and made nine empty
    # indices under it, after which `status` no longer saw that no agent ever ran there.
    misspelt = f"{index_name}-typo"
    config = write_agent_config(tmp_path, es_settings, index_name, misspelt)

    assert main(["incidents", *command, "-c", str(config)]) == 1

    err = capsys.readouterr().err
    assert f"no index {misspelt}-incidents" in err and "state.index_prefix" in err
    assert es.indices.get(index=f"{misspelt}-*", allow_no_indices=True) == {}


@pytest.mark.usefixtures("agent_env")
def test_closing_says_every_report_still_owed_with_its_due_time(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # Closed with only a dry run behind it, the incident still owes the authority its
    # reports; "the final report is due a month after the notification" hid them.
    config, _, incident = with_incident(es, es_settings, index_name, tmp_path)
    personal = ["--personal-data", "yes"]
    assert main(["incidents", "impact", incident.id, "-c", str(config), *personal]) == 0
    capsys.readouterr()

    assert main(["incidents", "close", incident.id, "-c", str(config), "--reason", "done"]) == 0

    said = " ".join(capsys.readouterr().out.split())
    assert main(["incidents", "show", incident.id, "-c", str(config), "--json"]) == 0
    owed = json.loads(capsys.readouterr().out)["incident"]
    assert "early_warning" in owed["pending"]
    due = {d["key"]: datetime.fromisoformat(d["due"]) for d in owed["deadlines"]}
    for key in owed["pending"]:
        assert f"{cli_incidents._owed_label(key)} due {show(due[key])}" in said
    assert "still owed" in said
    # The GDPR duty is one of the pending deadlines: said once, in words.
    assert "gdpr_breach_notification" in owed["pending"]
    assert said.count("GDPR notification") == 1


@pytest.mark.usefixtures("agent_env")
def test_an_acknowledgement_says_what_is_owed_and_what_is_already_overdue(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # A mistyped year in --at moved the clocks a year back with no word of it: the
    # deadlines showed as missed only at the agent's next pass.
    config, _, incident = with_incident(es, es_settings, index_name, tmp_path)
    capsys.readouterr()
    year_early = (T0 - timedelta(days=365)).isoformat()

    assert main(["incidents", "ack", incident.id, "-c", str(config), "--at", year_early]) == 0

    said = " ".join(capsys.readouterr().out.split())
    assert main(["incidents", "show", incident.id, "-c", str(config), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["incident"]
    due = {d["key"]: datetime.fromisoformat(d["due"]) for d in shown["deadlines"]}
    assert due["early_warning"] == T0 - timedelta(days=365) + timedelta(hours=24)
    early = f"{cli_incidents._owed_label('early_warning')} due {show(due['early_warning'])}"
    assert f"{early} (OVERDUE: send it now)" in said
    assert f"aware before the first detection ({show(incident.opened_at)})" in said


@pytest.mark.usefixtures("agent_env")
def test_a_personal_data_breach_known_earlier_is_due_from_then_and_said(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    config, _, incident = with_incident(es, es_settings, index_name, tmp_path)
    capsys.readouterr()
    known = T0 - timedelta(days=4)
    flags = ["--personal-data", "yes", "--personal-data-at", known.isoformat()]

    assert main(["incidents", "impact", incident.id, "-c", str(config), *flags]) == 0

    said = " ".join(capsys.readouterr().out.split())
    assert main(["incidents", "show", incident.id, "-c", str(config), "--json"]) == 0
    gdpr = json.loads(capsys.readouterr().out)["incident"]["gdpr"]
    assert datetime.fromisoformat(gdpr["due"]) == known + timedelta(hours=72)
    due = show(known + timedelta(hours=72))
    assert f"GDPR notification to the GBA/APD due {due} (OVERDUE: notify it now)" in said
    # As `ack --at` says it: possible (the DPO told first), or a mistyped date.
    assert f"breach known before the first detection ({show(incident.opened_at)})" in said


@pytest.mark.usefixtures("agent_env")
def test_a_report_is_on_time_up_to_its_due_instant_when_an_acknowledgement_says_it(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # As the deadlines' watch and `status` hold (`clocks.watchdog`): not yet overdue at the
    # due instant itself, overdue a millisecond after it.
    _, _, incident = with_incident(es, es_settings, index_name, tmp_path)
    due = {d.key: d.due for d in incident.deadlines}["early_warning"]

    monkeypatch.setattr(cli_incidents, "_now", lambda: due)
    assert "OVERDUE" not in cli_incidents._owed_now(incident)
    monkeypatch.setattr(cli_incidents, "_now", lambda: due + timedelta(milliseconds=1))
    assert "early warning due" in cli_incidents._owed_now(incident).replace("-", " ").lower()
    assert "OVERDUE" in cli_incidents._owed_now(incident)


def deadline_row(shown: str, key: str) -> list[str]:
    """The cells of `key`'s row in the deadlines table `incidents show` printed."""
    row = next(line for line in shown.splitlines() if line.strip("│ ").startswith(f"{key} "))
    return [cell.strip() for cell in row.strip("│").split("│")]


@pytest.mark.usefixtures("agent_env")
def test_show_and_list_say_a_deadline_passed_since_the_last_pass_and_one_a_later_report_discharged(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # Only an agent's pass marks a deadline overdue: moved into the past by `ack --at`, the
    # early warning showed as `open`, and still `open` once the notification discharged it.
    config, _, incident = with_incident(es, es_settings, index_name, tmp_path)
    year_early = (T0 - timedelta(days=365)).isoformat()
    assert main(["incidents", "ack", incident.id, "-c", str(config), "--at", year_early]) == 0
    capsys.readouterr()

    assert main(["incidents", "show", incident.id, "-c", str(config)]) == 0
    late = deadline_row(capsys.readouterr().out, "early_warning")
    assert main(["incidents", "list", "-c", str(config)]) == 0
    listed = capsys.readouterr().out

    stage = ["--stage", "notification"]
    out = ["--out", str(tmp_path / "reports")]
    assert main(["incidents", "report", incident.id, "-c", str(config), *stage, *out]) == 0
    sent = ["--reference", "CCB-1"]
    assert main(["incidents", "submitted", incident.id, "-c", str(config), *stage, *sent]) == 0
    capsys.readouterr()
    assert main(["incidents", "show", incident.id, "-c", str(config)]) == 0
    shown = capsys.readouterr().out

    assert late[2] == "OVERDUE"
    assert show(T0 - timedelta(days=364)) in listed and "(OVERDUE)" in listed
    assert deadline_row(shown, "early_warning")[2] == "discharged"
    assert deadline_row(shown, "incident_notification")[2] == "delivered"


@pytest.mark.usefixtures("agent_env")
def test_a_report_folder_of_another_index_prefix_is_refused(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    config, _, incident = with_incident(es, es_settings, index_name, tmp_path)
    claim(tmp_path / "reports", "staging")
    capsys.readouterr()

    argv = ["incidents", "report", incident.id, "-c", str(config), "--stage", "early-warning"]
    assert main([*argv, "--out", str(tmp_path / "reports")]) == 1

    said = capsys.readouterr().err
    assert "holds the reports of the agent with index prefix 'staging'" in said
    assert f"this one's prefix is {index_name!r}" in said
    assert not (tmp_path / "reports" / incident.id).exists()


@pytest.mark.usefixtures("agent_env")
def test_list_json_says_the_deadlines_passed_since_the_last_pass(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # No agent's pass ran: the table, `show` and `status` said OVERDUE, the JSON `[]`.
    config, _, incident = with_incident(es, es_settings, index_name, tmp_path)
    capsys.readouterr()

    assert main(["incidents", "list", "-c", str(config), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)

    assert incident.overdue == ()
    assert listed[0]["overdue"] == ["early_warning", "incident_notification", "progress_report"]


@pytest.mark.usefixtures("agent_env")
def test_list_json_gives_the_gdpr_deadline_in_utc(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    # Given in Brussels' winter time, the awareness's 72 hours came out as +01:00.
    config, _, incident = with_incident(es, es_settings, index_name, tmp_path)
    aware = (T0 - timedelta(days=3)).astimezone(timezone(timedelta(hours=1))).isoformat()
    known = ["--personal-data", "yes", "--personal-data-at", aware]
    assert main(["incidents", "impact", incident.id, "-c", str(config), *known]) == 0
    capsys.readouterr()

    assert main(["incidents", "list", "-c", str(config), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)

    assert aware == "2026-02-27T10:00:00+01:00"
    assert listed[0]["next_due"] == {
        "key": "gdpr_breach_notification",
        "due": "2026-03-02T09:00:00+00:00",
    }
