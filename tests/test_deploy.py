"""The operator's files in deploy/: they parse, and the commands they run are valid."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nis2triage.cli import build_parser
from nis2triage.config import load_config

from support import REPO

DEPLOY = REPO / "deploy"


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / "nis2triage.service")
    return parser


@pytest.mark.parametrize(
    "path", ["nis2triage.example.yml", "compose/nis2triage.yml", "demo/nis2triage.yml"]
)
def test_every_shipped_configuration_validates(path: str) -> None:
    cfg = load_config(DEPLOY / path)

    assert cfg.sources


@pytest.mark.parametrize("path", ["nis2triage.example.yml", "demo/nis2triage.yml"])
def test_the_configurations_a_new_user_starts_from_report_through_the_manual_channel(
    path: str,
) -> None:
    # The CCB has no API: http there would need an endpoint of the user's own in send mode.
    assert load_config(DEPLOY / path).incidents.channels == ("manual",)


def test_the_units_command_line_is_one_the_cli_accepts() -> None:
    command = shlex.split(unit()["Service"]["ExecStart"])

    args = build_parser().parse_args(command[1:])

    assert (args.command, args.metrics_port, args.metrics_host) == ("run", 9464, "127.0.0.1")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("User", "nis2triage"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("Restart", "on-failure"),
        ("EnvironmentFile", "/etc/nis2triage/nis2triage.env"),
    ],
)
def test_the_unit_runs_unprivileged_and_hardened(key: str, value: str) -> None:
    assert unit()["Service"][key] == value


@pytest.mark.parametrize("service", ["setup", "agent"])
def test_the_compose_services_run_commands_the_cli_accepts(service: str) -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yml").read_text())

    args = build_parser().parse_args(compose["services"][service]["command"])

    assert args.command == ("setup" if service == "setup" else "run")
    assert Path(args.config) == Path("/etc/nis2triage/nis2triage.yml")


def test_compose_publishes_ports_on_loopback_only() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yml").read_text())

    ports = [p for s in compose["services"].values() for p in s.get("ports", [])]

    assert ports and all(p.startswith("127.0.0.1:") for p in ports)


def test_the_compose_agent_gets_its_own_secrets_and_not_the_administrators() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yml").read_text())

    agent = compose["services"]["agent"]

    assert set(agent["environment"]) == {
        "NIS2TRIAGE_ES_PASSWORD",
        "NIS2TRIAGE_SNAPSHOT_KEY",
        "NIS2TRIAGE_PSEUDONYM_KEY",
    }
    assert "env_file" not in agent


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed for this check (Debian package systemd)"
    installed = Path(sys.executable).with_name("nis2triage")
    text = (DEPLOY / "systemd" / "nis2triage.service").read_text()
    # The unit names /opt/nis2triage/bin/nis2triage; verify needs an executable that exists.
    copy = tmp_path / "nis2triage.service"
    copy.write_text(text.replace("/opt/nis2triage/bin/nis2triage", str(installed)))

    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)

    assert "/opt/nis2triage/bin/nis2triage" in text
    assert done.returncode == 0, done.stderr
    assert "nis2triage.service" not in done.stderr, done.stderr


def test_the_unit_leaves_the_boot_id_readable_for_the_lease() -> None:
    # ProcSubset=pid hides /proc/sys: without the boot id, an agent restarted after a crash
    # cannot tell its holder's pid is gone on this very kernel, and stood by until the
    # lease expired (2 minutes and more) instead of taking over at once.
    assert unit()["Service"].get("ProcSubset", "all") == "all"


def test_the_unit_starts_after_the_clock_is_synchronised() -> None:
    # A hardware clock days ahead after a reboot, before NTP: the lease, the checkpoints and
    # the NIS2 deadlines the agent writes would all be dated days ahead.
    assert "time-sync.target" in unit()["Unit"]["After"].split()
    # Ordered after it, not pulling it in (systemd.special(7)).
    assert "time-sync.target" not in unit()["Unit"]["Wants"].split()
