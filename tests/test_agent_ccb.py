"""End to end: early warnings reach a real HTTP server on loopback, exactly once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from nis2triage import esclient
from nis2triage.demo import index_docs

from ccb_server import CcbServer, running_ccb
from support import authentication_events, real_log_docs, write_agent_config

TOKEN = "test-ccb-token-s3cr3t"


@pytest.fixture
def ccb() -> Any:
    with running_ccb() as server:
        yield server


def send_config(
    tmp_path: Path, es_settings: esclient.ESSettings, index: str, ccb: CcbServer
) -> Path:
    notifier = {"mode": "send", "endpoint": ccb.url, "token_env": "NIS2TRIAGE_CCB_TOKEN"}
    return write_agent_config(tmp_path, es_settings, index, f"{index}-st", notifier)


def run_once(config: Path) -> str:
    """`nis2triage run --once` in its own process, as an operator would run it."""
    done = subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", "run", "--config", str(config), "--once"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def string_values(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in string_values(v)]
    if isinstance(value, list):
        return [s for v in value for s in string_values(v)]
    return []


def related_users_of_alerts(es: Elasticsearch, index: str) -> set[str]:
    es.indices.refresh(index=index)
    hits = es.search(index=index, query={"term": {"nis2triage.route": "early_warning"}}, size=100)
    return {u for h in hits["hits"]["hits"] for u in h["_source"]["related"]["user"]}


def origin_entities_of_alerts(es: Elasticsearch, index: str) -> set[str]:
    """The addresses alerts were keyed on as where an activity came from (`source.ip`)."""
    es.indices.refresh(index=index)
    query = {"term": {"nis2triage.entity.field": "source.ip"}}
    hits = es.search(index=index, query=query, size=1000)["hits"]["hits"]
    return {h["_source"]["nis2triage"]["entity"]["value"] for h in hits}


@pytest.fixture
def indexed(es: Elasticsearch, index_name: str) -> tuple[str, list[dict[str, Any]]]:
    docs = real_log_docs()
    index_docs(es, index_name, docs)
    return index_name, docs


@pytest.mark.usefixtures("agent_env")
def test_one_post_per_notification_with_token_and_key_and_no_personal_data(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    indexed: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
    ccb: CcbServer,
) -> None:
    index, docs = indexed
    run_once(send_config(tmp_path, es_settings, index, ccb))

    es.indices.refresh(index=f"{index}-st-outbox")
    outbox = es.search(index=f"{index}-st-outbox", size=100)["hits"]["hits"]
    assert len(outbox) >= 3
    assert sorted(ccb.idempotency_keys) == sorted(h["_id"] for h in outbox)
    assert all(h["_source"]["status"] == "sent" for h in outbox)
    assert {r.headers["Authorization"] for r in ccb.received} == {f"Bearer {TOKEN}"}
    raw_ips = {d["source"]["ip"] for d in docs if "source" in d}
    raw_users = {d["user"]["name"] for d in docs if "user" in d}
    raw_hosts = {d["host"]["name"] for d in docs if "host" in d}
    assert raw_hosts, "the events must name hosts for this check to mean anything"
    alerted_users = related_users_of_alerts(es, f"{index}-st-alerts")
    assert alerted_users, "the alerts must name users for this check to mean anything"
    # The attackers' addresses are indicators and stay as written; no other address does.
    attackers = origin_entities_of_alerts(es, f"{index}-st-alerts")
    plain: set[str] = set()
    for request in ccb.received:
        body = request.body.decode()
        values = string_values(request.json())
        plain |= raw_ips & set(re.findall(r"[0-9]+(?:\.[0-9]+){3}", body))
        assert not set(values) & ((raw_ips - attackers) | raw_users | raw_hosts)
        # Inside free text, as a whole word (the log has users called "0" and "user").
        word = r"(?<![\w.-]){}(?![\w.-])"
        named = alerted_users | raw_hosts
        leaked = [u for u in named for v in values if re.search(word.format(re.escape(u)), v)]
        assert not leaked
        assert request.json()["pseudonymised"] is True
    assert plain and plain <= attackers


@pytest.mark.usefixtures("agent_env")
def test_running_once_twice_creates_no_duplicate_alert_and_no_second_post(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    indexed: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
    ccb: CcbServer,
) -> None:
    index, docs = indexed
    config = send_config(tmp_path, es_settings, index, ccb)

    first = run_once(config)
    es.indices.refresh(index=f"{index}-st-alerts")
    alerts_after_first = es.count(index=f"{index}-st-alerts")["count"]
    posts_after_first = len(ccb.received)
    second = run_once(config)
    es.indices.refresh(index=f"{index}-st-alerts")

    assert alerts_after_first > 0 and posts_after_first > 0
    assert es.count(index=f"{index}-st-alerts")["count"] == alerts_after_first
    assert len(ccb.received) == posts_after_first
    assert f"{authentication_events(docs)} events read" in first
    assert "0 events read" in second


@pytest.mark.usefixtures("agent_env")
def test_a_429_with_retry_after_is_retried_once_the_time_has_come(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    indexed: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
    ccb: CcbServer,
) -> None:
    from datetime import UTC, datetime, timedelta

    from nis2triage.agent import Agent
    from nis2triage.config import load_config

    index, _ = indexed
    ccb.script = [(429, {"Retry-After": "120"})]
    now = [datetime.now(UTC)]
    agent = Agent(
        load_config(send_config(tmp_path, es_settings, index, ccb)),
        es,
        b"test-snapshot-key-0123456789abcdef",
        b"pseudonym-key-0123456789",
        clock=lambda: now[0],
        token=TOKEN,
    )
    agent.start()

    first = agent.run_once()
    refused_key = ccb.received[0].headers["Idempotency-Key"]
    assert first.notifications_sent == first.notifications_queued - 1
    now[0] += timedelta(seconds=60)
    assert agent.outbox.deliver_due(now[0]).sent == 0
    now[0] += timedelta(seconds=61)
    assert agent.outbox.deliver_due(now[0]).sent == 1
    assert ccb.idempotency_keys.count(refused_key) == 2


def after_a_dry_run_trial(
    es: Elasticsearch, es_settings: esclient.ESSettings, index: str, tmp_path: Path, ccb: CcbServer
) -> Any:
    """An agent in send mode over the state a dry-run trial left (its reports unsent)."""
    from nis2triage.agent import Agent
    from nis2triage.config import load_config

    run_once(write_agent_config(tmp_path / "trial", es_settings, index, f"{index}-st"))
    return Agent(
        load_config(send_config(tmp_path, es_settings, index, ccb)),
        es,
        b"test-snapshot-key-0123456789abcdef",
        b"pseudonym-key-0123456789",
        token=TOKEN,
    )


def dry_runs_said(agent: Any, caplog: pytest.LogCaptureFixture) -> str:
    """The one warning a start in send mode gives about reports made in dry-run."""
    import logging

    with caplog.at_level(logging.WARNING, logger="nis2triage.agent"):
        agent.start()
    [said] = [r.getMessage() for r in caplog.records if "dry-run" in r.getMessage()]
    return said


@pytest.mark.usefixtures("agent_env")
def test_reports_made_in_dry_run_are_named_at_a_start_in_send_mode(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    indexed: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
    ccb: CcbServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = after_a_dry_run_trial(es, es_settings, indexed[0], tmp_path, ccb)

    said = dry_runs_said(agent, caplog)
    assert "were made in dry-run and are not sent by themselves" in said
    assert "incidents report " in said and "--stage early-warning" in said
    assert ccb.received == []


@pytest.mark.usefixtures("agent_env")
def test_every_incident_with_a_dry_run_report_is_named_at_a_start_in_send_mode(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    indexed: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
    ccb: CcbServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The warning gave one command for the first report only: a user switching to send
    # could not tell which other incidents had reports waiting for a decision.
    from datetime import UTC, datetime

    agent = after_a_dry_run_trial(es, es_settings, indexed[0], tmp_path, ccb)
    made = agent.incidents.reporter.notifier.dry_runs(datetime(2000, 1, 1, tzinfo=UTC))
    incidents = sorted({entry["incident_id"][:12] for entry in made})

    said = dry_runs_said(agent, caplog)
    assert 2 <= len(incidents) <= 5
    assert sorted(said.split("; their incidents: ")[1].split(", ")) == incidents


@pytest.mark.usefixtures("agent_env")
def test_a_token_an_http_header_cannot_carry_stops_the_agent_before_it_runs(
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    ccb: CcbServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nis2triage.cli import main

    monkeypatch.setenv("NIS2TRIAGE_CCB_TOKEN", "ccb-token-\u20ac-S3CRET")

    done = main(
        ["run", "--config", str(send_config(tmp_path, es_settings, index_name, ccb)), "--once"]
    )

    said = capsys.readouterr().err
    assert done == 1 and "NIS2TRIAGE_CCB_TOKEN holds a character outside ASCII" in said
    assert "S3CRET" not in said and ccb.received == []


@pytest.mark.usefixtures("agent_env")
def test_dry_run_reports_recorded_as_submitted_are_not_named_again(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    indexed: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
    ccb: CcbServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A new user who had recorded the early warning as submitted (CCB-122) was still told
    # to send it with `incidents report`: the CCB would have had it twice.
    from datetime import UTC, datetime

    from nis2triage.reports.stages import BY_REPORT

    agent = after_a_dry_run_trial(es, es_settings, indexed[0], tmp_path, ccb)
    reporter = agent.incidents.reporter
    first, *others = reporter.notifier.dry_runs(datetime(2000, 1, 1, tzinfo=UTC))
    for entry in others:
        stage = BY_REPORT[entry["stage"]]
        reporter.submitted(entry["incident_id"], stage, "analyst", "CCB-122")

    said = dry_runs_said(agent, caplog)
    assert len(others) >= 1
    assert said.startswith("1 reports of the last 31 days were made in dry-run")
    assert f"incidents report {first['incident_id']} " in said
