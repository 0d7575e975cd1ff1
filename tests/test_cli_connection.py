"""What `status`, `incidents` and `replay` say when they cannot talk to the node: the
address and what to check, as `run` says it, not only the kind of error."""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from nis2triage import esclient
from nis2triage.cli import main

from support import write_agent_config


def _free_loopback_port() -> int:
    """A loopback port nothing listens on once this returns."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def plain_http_server() -> Iterator[int]:
    """A loopback server answering plain HTTP (a TLS hello gets a 400), and its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _config_at(tmp_path: Path, settings: esclient.ESSettings, host: str) -> Path:
    moved = dataclasses.replace(settings, hosts=(host,))
    return write_agent_config(tmp_path, moved, "t-cli-connection", "t-cli-connection-st")


@pytest.mark.usefixtures("agent_env")
def test_status_names_the_address_it_could_not_reach_and_what_to_check(
    es_settings: esclient.ESSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_loopback_port()
    config = _config_at(tmp_path, es_settings, f"http://127.0.0.1:{port}")

    code = main(["status", "-c", str(config)])

    said = capsys.readouterr().err
    assert code == 1
    assert f"port={port}" in said
    assert "check elasticsearch.hosts in the configuration file" in said


@pytest.mark.usefixtures("agent_env")
def test_incidents_over_https_to_a_plain_http_node_say_to_use_http(
    es_settings: esclient.ESSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A plain HTTP server of the test's own, whatever the test cluster speaks.
    with plain_http_server() as port:
        config = _config_at(tmp_path, es_settings, f"https://127.0.0.1:{port}")

        code = main(["incidents", "list", "-c", str(config)])

    assert code == 1
    assert "the node may serve plain HTTP; use an http:// host" in capsys.readouterr().err


@pytest.mark.usefixtures("agent_env")
def test_a_refused_password_is_said_without_the_empty_answers_none(
    es_settings: esclient.ESSettings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config_at(tmp_path, es_settings, es_settings.hosts[0])
    monkeypatch.setenv("NIS2TRIAGE_TEST_ES_PASSWORD", "not-the-password")

    code = main(["incidents", "list", "-c", str(config)])

    said = capsys.readouterr().err
    assert code == 1
    refused = "Elasticsearch refuses the agent (401): check its role and credentials"
    whose = "the configuration gives user elastic's password in $NIS2TRIAGE_TEST_ES_PASSWORD"
    assert said == f"nis2triage: {refused}; {whose}\n"


@pytest.mark.usefixtures("agent_env")
def test_a_node_that_takes_the_connection_but_never_answers_is_a_timeout_not_a_wrong_address(
    es_settings: esclient.ESSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as silent:
        # The kernel completes the handshake for a listening socket; nothing ever answers.
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        config = _config_at(tmp_path, es_settings, f"http://127.0.0.1:{silent.getsockname()[1]}")
        data = yaml.safe_load(config.read_text())
        data["elasticsearch"]["request_timeout"] = "1s"
        config.write_text(yaml.safe_dump(data))

        code = main(["status", "-c", str(config)])

    said = capsys.readouterr().err
    assert code == 1
    assert "Elasticsearch did not answer in time" in said
    assert "raise elasticsearch.request_timeout in the configuration file" in said


@pytest.mark.usefixtures("agent_env")
def test_run_once_names_the_configuration_whose_address_it_could_not_reach(
    es_settings: esclient.ESSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "check elasticsearch.hosts in the configuration file" named no file; status does.
    port = _free_loopback_port()
    config = _config_at(tmp_path, es_settings, f"http://127.0.0.1:{port}")

    code = main(["run", "-c", str(config), "--once"])

    said = capsys.readouterr().err
    assert code == 1
    assert f"http://127.0.0.1:{port} (elasticsearch in {config}): " in said
    assert "check elasticsearch.hosts in the configuration file" in said
