"""The line `run --once` ends with, on the real node and the real SSH log."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch
from test_agent_restart import index_part

from nis2triage import esclient
from nis2triage.cli import main
from nis2triage.reports.render import OWNER_FILE, claim

from ccb_server import running_ccb
from support import real_log_docs, write_agent_config


def manual_config(
    tmp_path: Path, es_settings: esclient.ESSettings, index_name: str, notifier: dict[str, str]
) -> Path:
    """An agent's configuration whose reports go by the manual channel, into `reports`."""
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st", notifier)
    data = yaml.safe_load(config.read_text())
    data["incidents"] = {"channels": ["manual"], "report_dir": "reports"}
    config.write_text(yaml.safe_dump(data))
    return config


@pytest.mark.usefixtures("agent_env")
def test_reports_the_manual_channel_wrote_are_counted_not_left_out_of_zero_sent(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index_part(es, index_name, real_log_docs(), 0)
    config = manual_config(tmp_path, es_settings, index_name, {"mode": "send"})

    assert main(["run", "-c", str(config), "--once"]) == 0

    line = capsys.readouterr().out.strip()
    written = len(list((tmp_path / "reports").glob("*/early_warning-*.pdf")))
    assert written > 0
    assert re.search(r"notifications queued, 0 sent, (\d+) written to incidents.report_dir", line)
    assert line.endswith(
        f", {written} written to incidents.report_dir for a person to submit "
        "(see `nis2triage incidents submitted`)"
    )


@pytest.mark.usefixtures("agent_env")
def test_reports_the_endpoint_did_not_take_are_counted_not_left_out_of_zero_sent(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With the endpoint down the line said "0 sent" and nothing else: the failure was in a
    # WARNING line only.
    index_part(es, index_name, real_log_docs(), 0)
    monkeypatch.setenv("NIS2TRIAGE_CCB_TOKEN", "test-token")
    with running_ccb() as ccb:
        ccb.down = True
        notifier = {"mode": "send", "endpoint": ccb.url, "token_env": "NIS2TRIAGE_CCB_TOKEN"}
        config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st", notifier)

        assert main(["run", "-c", str(config), "--once"]) == 0

    line = capsys.readouterr().out.strip()
    queued = int(re.search(r"(\d+) notifications queued, 0 sent", line)[1])  # type: ignore[index]
    assert queued > 0
    assert line.endswith(
        f", {queued} not delivered yet (retried at the next cycles; see {index_name}-st-outbox)"
    )


@pytest.mark.usefixtures("agent_env")
def test_an_agent_refuses_to_start_on_the_report_folder_of_another_index_prefix(
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = manual_config(tmp_path, es_settings, index_name, {"mode": "send"})
    claim(tmp_path / "reports", "production")

    assert main(["run", "-c", str(config), "--once"]) != 0

    said = capsys.readouterr().err
    assert "holds the reports of the agent with index prefix 'production'" in said
    assert f"this one's prefix is '{index_name}-st'" in said
    assert "Traceback" not in said
    assert (tmp_path / "reports" / OWNER_FILE).read_text() == "production\n"


@pytest.mark.usefixtures("agent_env")
def test_send_mode_over_the_manual_channel_alone_needs_no_http_token(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The example configuration keeps token_env (commented "unused with `manual`") beside
    # `channels: [manual]`; switched to send, `run` stopped at once on the unset token.
    index_part(es, index_name, real_log_docs(), 0)
    monkeypatch.delenv("NIS2TRIAGE_CCB_TOKEN")
    notifier = {"mode": "send", "token_env": "NIS2TRIAGE_CCB_TOKEN"}
    config = manual_config(tmp_path, es_settings, index_name, notifier)

    assert main(["run", "-c", str(config), "--once"]) == 0

    line = capsys.readouterr().out.strip()
    written = len(list((tmp_path / "reports").glob("*/early_warning-*.pdf")))
    assert written > 0
    assert line.endswith(
        f", {written} written to incidents.report_dir for a person to submit "
        "(see `nis2triage incidents submitted`)"
    )
