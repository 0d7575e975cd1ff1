from __future__ import annotations

import os
import subprocess
import sys

import pytest

import nis2triage
from nis2triage.cli import build_parser, main

from support import REPO


def test_version_flag_prints_the_package_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", "--version"], capture_output=True, text=True
    )

    assert out.returncode == 0
    assert out.stdout.strip() == f"nis2triage {nis2triage.__version__}"


def test_help_lists_the_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", "--help"], capture_output=True, text=True
    )

    assert out.returncode == 0
    assert "demo" in out.stdout


def test_replay_times_far_past_the_calendar_are_a_usage_error_not_a_traceback() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nis2triage.cli",
            "replay",
            "-c",
            "a.yml",
            "--from",
            "now-99999999d",
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 2
    assert "'now-99999999d' reaches before the year 1: give a shorter duration" in done.stderr
    assert "Traceback" not in done.stderr


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "nis2triage.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00", "1969-12-31T23:59", "9999-12-31T22:00", "now-30000d"]
)
def test_replay_times_its_rules_cannot_step_from_are_a_usage_error(when: str) -> None:
    done = cli("replay", "-c", "a.yml", "--from", when)

    assert done.returncode == 2
    assert f"{when!r} is outside the times a replay can read" in done.stderr
    assert "from 1970-01-01 to before 9000-01-01" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_metrics_port_outside_1_to_65535_is_a_usage_error(port: str) -> None:
    done = cli("run", "-c", "a.yml", "--metrics-port", port)

    assert done.returncode == 2
    assert f"{port!r} is not a port: give 1 to 65535" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_duration_after_now_that_is_none_says_how_to_write_one() -> None:
    done = cli("replay", "-c", "a.yml", "--from", "now-60y")

    assert done.returncode == 2
    assert "after now-: '60y' is not a duration: write it like 30s, 5m, 1h or 2d" in done.stderr


def test_the_command_lines_console_prints_text_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    # An Elasticsearch refusal names the field and index in brackets, which rich read as
    # style tags and dropped ("Fielddata is disabled on  in .", a new user's replay).
    from rich.table import Table

    from nis2triage.terminal import text_console

    table = Table()
    table.add_row("why: [bold]not[/bold] bold :warning:")
    console = text_console(width=120)
    console.print("Fielddata is disabled on [user.name] in [logs-x].")
    console.print(table)

    out = capsys.readouterr().out
    assert "Fielddata is disabled on [user.name] in [logs-x]." in out
    assert "why: [bold]not[/bold] bold :warning:" in out


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [
        (["validate", "x.yml"], False),
        (["-v", "validate", "x.yml"], True),
        (["validate", "-v", "x.yml"], True),
        (["run", "-c", "x.yml", "--verbose"], True),
        (["status", "-v", "-c", "x.yml"], True),
        (["incidents", "list", "-c", "x.yml", "-v"], True),
        (["setup", "-c", "x.yml", "-v"], True),
    ],
)
def test_verbose_may_come_before_or_after_the_command(argv: list[str], verbose: bool) -> None:
    assert build_parser().parse_args(argv).verbose is verbose


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    # `nis2triage incidents list --json | head` is how scripts use --json; when the reader
    # exits first the command printed a BrokenPipeError traceback. The read end is closed
    # before the command starts, so its first write meets the broken pipe every time.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "nis2triage.cli", "validate", "--no-references", "rules/"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write_end)

    assert "Traceback" not in done.stderr
    assert done.stderr == ""
    assert done.returncode == 141  # 128 + SIGPIPE, as a shell reports a command so cut off


def test_a_first_setup_without_an_administrator_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The agent has no key before its first setup; the error sent the user to
    # `setup --create-api-key`, the command that had just failed.
    monkeypatch.delenv("NIS2TRIAGE_ES_API_KEY", raising=False)
    example = str(REPO / "deploy" / "nis2triage.example.yml")

    assert main(["setup", "-c", example, "--create-api-key"]) == 1

    said = " ".join(capsys.readouterr().err.split())
    assert "NIS2TRIAGE_ES_API_KEY is not set" in said
    assert "the first setup needs an administrator's: --admin-user elastic" in said


def test_replay_help_says_how_to_write_its_times() -> None:
    # It said only "--from START  start": the forms it takes showed only after a wrong one.
    done = cli("replay", "--help")

    text = " ".join(done.stdout.split())
    assert done.returncode == 0
    assert (
        "--from START start: 2026-12-01T00:00 (UTC unless an offset is given), 2026-12-01 or now-2d"
        in text
    )
    assert "--to END end, written as --from (default: now)" in text


@pytest.mark.parametrize(
    ("command", "what"),
    [
        ("run", "poll, detect, triage and notify"),
        ("setup", "create or update index templates"),
        ("validate", "check configuration, rules and detector files"),
        ("replay", "run detectors and rules over a past time range"),
        ("demo", "the whole flow on a local node with the real SSH log"),
        ("status", "is an agent running, are the sources caught up"),
        ("incidents", "list, show, acknowledge and report incidents"),
        ("incidents show", "one incident with its timeline"),
    ],
)
def test_each_commands_own_help_says_what_it_does(
    command: str, what: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `demo --help` and the others showed their options only (new-user run).
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command.split(), "--help"])

    rest = capsys.readouterr().out.partition("\n\n")[2]
    assert rest.startswith(what), rest[:200]
