"""The `incidents` section of the configuration: defaults and mistakes named with their line."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from nis2triage.config import AgentConfig, load_config
from nis2triage.errors import ConfigError
from nis2triage.notify import build

BASE = """\
elasticsearch: {hosts: [http://127.0.0.1:9200]}
entity:
  {legal_name: X NV, enterprise_number: "0403.019.261", sector: energy, entity_class: essential}
sources: [{name: auth, indices: [logs-*]}]
"""


def load(tmp_path: Path, extra: str) -> AgentConfig:
    path = tmp_path / "agent.yml"
    path.write_text(BASE + extra)
    return load_config(path)


def test_defaults_correlate_by_entity_for_an_hour_and_warn_6_hours_ahead(tmp_path: Path) -> None:
    cfg = load(tmp_path, "")

    assert cfg.incidents.correlate_by == ("entity",)
    assert cfg.incidents.window == timedelta(hours=1)
    assert cfg.incidents.escalate_before == timedelta(hours=6)
    assert cfg.incidents.channels == ("http",)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        pytest.param("incidents: {channels: [smtp]}\n",
                     r"agent.yml:5:\d+: incidents: .*needs an `smtp`", id="smtp-without-section"),
        pytest.param("incidents:\n  channels: [smtp]\n  smtp: {host: h, sender: a@b.be, "
                     "recipients: [c@d.be], username: soc}\n", r"username needs password_env",
                     id="smtp-user-without-password-env"),
        pytest.param("notifier: {mode: send}\n", r"needs notifier.endpoint",
                     id="http-send-no-endpoint"),
        pytest.param("incidents: {correlate_by: [host]}\n", r"incidents.correlate_by.0",
                     id="unknown-correlation"),
        pytest.param("incidents: {chanels: [http]}\n", r"did you mean 'channels'", id="misspelt"),
    ],
)  # fmt: skip
def test_mistakes_in_the_incidents_section_are_named(
    tmp_path: Path, extra: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load(tmp_path, extra)


def test_send_without_channels_says_http_is_the_default_and_names_manual(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, "notifier: {mode: send}\n")

    assert "incidents.channels is [http] when not given" in str(refused.value)
    assert "`channels: [manual]` writes the files a person submits" in str(refused.value)


def test_send_with_http_chosen_is_not_told_about_the_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, "notifier: {mode: send}\nincidents: {channels: [http]}\n")

    assert "needs notifier.endpoint" in str(refused.value)
    assert "when not given" not in str(refused.value)


@pytest.mark.parametrize(
    "endpoint",
    ["http://ccb.example/api", "http://10.0.0.8:8080/ew", "ftp://ccb.example/x", "ccb.example"],
)
def test_a_notifier_endpoint_off_this_machine_must_be_https(tmp_path: Path, endpoint: str) -> None:
    # The bearer token and the reports would cross the network in clear.
    with pytest.raises(ConfigError, match=r"agent.yml:5:\d+: notifier.endpoint: .*not an https"):
        load(tmp_path, f"notifier: {{mode: send, endpoint: '{endpoint}'}}\n")


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://ccb.example/api",
        "http://127.0.0.1:8443/ew",
        "http://[::1]:80/",
        "http://localhost/",
    ],
)
def test_https_anywhere_and_plain_http_on_loopback_are_taken(tmp_path: Path, endpoint: str) -> None:
    assert load(tmp_path, f"notifier: {{mode: send, endpoint: '{endpoint}'}}\n").notifier.endpoint


@pytest.mark.parametrize(
    ("endpoint", "match"),
    [
        ("http://127.0.0.1:99999/x", r"Port out of range.*a port is a number from 1 to 65535"),
        ("https://ccb.example:0/x", r"port 0 is no port"),
        ("https:///x", r"names no host"),
    ],
)
def test_an_endpoint_that_can_never_be_reached_is_refused_when_loaded(
    tmp_path: Path, endpoint: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=rf"agent.yml:5:\d+: notifier.endpoint: .*{match}"):
        load(tmp_path, f"notifier: {{mode: send, endpoint: '{endpoint}'}}\n")


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://jan:Pw-s3cret-77@ccb.example/api",
        "https://Pw-s3cret-77@ccb.example/api",
        "http://jan:Pw-s3cret-77@10.0.0.8/api",
        "http://jan:Pw-s3cret-77@127.0.0.1:8443/ew",
    ],
)
def test_a_notifier_endpoint_with_a_login_is_refused_without_showing_it(
    tmp_path: Path, endpoint: str
) -> None:
    # The channel sends no login from the URL: the password sat in the file (secrets come
    # from token_env) and the endpoint refused every report; an error quoted it whole.
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, f"notifier: {{mode: send, endpoint: '{endpoint}'}}\n")

    said = str(refused.value)
    assert "notifier.endpoint" in said and "token_env" in said
    assert "Pw-s3cret-77" not in said


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://ccb.example/api?token=Pw-s3cret-77",
        "https://ccb.example/api?tenant=be&api_key=Pw-s3cret-77",
        "https://ccb.example/api?X-Amz-Signature=Pw-s3cret-77",
        "https://ccb.example/api?access_token=Pw-s3cret-77#x",
    ],
)
def test_a_secret_in_the_endpoints_query_is_refused_without_showing_it(
    tmp_path: Path, endpoint: str
) -> None:
    # A token in the URL sits in the file and in every line that quotes the endpoint.
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, f"notifier: {{mode: send, endpoint: '{endpoint}'}}\n")

    said = str(refused.value)
    assert "notifier.endpoint" in said and "token_env" in said
    assert "Pw-s3cret-77" not in said


def test_an_endpoint_query_without_a_secret_is_taken(tmp_path: Path) -> None:
    cfg = load(tmp_path, "notifier: {mode: send, endpoint: 'https://ccb.example/api?tenant=be'}\n")

    assert cfg.notifier.endpoint == "https://ccb.example/api?tenant=be"


@pytest.mark.parametrize(
    ("written", "match"),
    [
        # The agent's manual channel stopped at start with a ValueError's traceback.
        pytest.param(r'"reports\0old"', r"agent.yml:6:\d+: incidents.report_dir: holds a NUL",
                     id="nul"),
        # Read as the configuration's own folder: TLP:AMBER reports beside the configuration.
        pytest.param('""', r"agent.yml:6:\d+: incidents.report_dir: is empty", id="empty"),
        pytest.param('"  "', r"agent.yml:6:\d+: incidents.report_dir: is empty", id="blank"),
    ],
)  # fmt: skip
def test_a_report_dir_that_names_no_folder_is_refused_with_its_line(
    tmp_path: Path, written: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load(tmp_path, f"incidents:\n  report_dir: {written}\n  channels: [manual]\n")


def test_http_and_manual_together_are_said_at_start_with_where_each_goes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Once http delivered a report, the manual channel still told the SOC to submit it
    # on the CCB's platform: to an endpoint of the CCB's, the report went twice.
    cfg = load(
        tmp_path,
        "notifier: {mode: send, endpoint: 'http://127.0.0.1:9/notify'}\n"
        "incidents: {channels: [http, manual], report_dir: out}\n",
    )
    soc = SimpleNamespace(store=None, raise_once=lambda *a, **k: None)

    with caplog.at_level(logging.WARNING, logger="nis2triage.notify.build"):
        built = build.channels(cfg, "token", soc)  # type: ignore[arg-type]
        build.channels(load(tmp_path, "notifier: {mode: send, endpoint: 'http://127.0.0.1:9/n'}\n"),
                       "token", soc)  # type: ignore[arg-type]  # fmt: skip

    assert sorted(built) == ["http", "manual"]
    [said] = [r.getMessage() for r in caplog.records]
    assert "http://127.0.0.1:9/notify" in said and str(tmp_path / "out") in said
    assert "twice" in said
