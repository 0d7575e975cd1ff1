"""The loop wakes when a bucket can close, not only at the next poll; alerts are searchable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch

from nis2triage import esclient
from nis2triage.agent import MIN_PAUSE_S, Agent
from nis2triage.config import load_config
from nis2triage.records import Event

from support import write_agent_config

NOW = datetime(2026, 12, 4, 12, 0, 7, tzinfo=UTC)  # 7 s into a 5-minute bucket
POLL_S = 120.0


@pytest.fixture
def agent(
    tmp_path: Path,
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    agent_env: None,
) -> Agent:
    """An agent with the shipped detectors, a 2-minute poll and a 30 s lateness, at NOW."""
    path = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    settings = yaml.safe_load(path.read_text())
    settings["sources"][0].update(poll_interval="120s", max_lateness="30s")
    path.write_text(yaml.safe_dump(settings))
    agent = Agent(load_config(path), es, b"k" * 32, b"p" * 32, clock=lambda: NOW)
    agent.start()
    return agent


def failed_login(at: datetime) -> Event:
    doc = {
        "event": {"category": "authentication", "outcome": "failure"},
        "source": {"ip": "198.51.100.7"},
        "user": {"name": "root"},
        "system": {"auth": {"ssh": {"event": "Failed", "method": "password"}}},
    }
    return Event.at("logs", "1", at, doc)


def test_with_no_open_bucket_the_loop_waits_for_the_next_poll(agent: Agent) -> None:
    assert agent._pause(POLL_S) == POLL_S


def test_an_open_bucket_wakes_the_loop_when_its_end_plus_lateness_has_passed(
    agent: Agent,
) -> None:
    for detector in agent.runs[0].detectors:
        detector.ingest(failed_login(NOW - timedelta(seconds=2)))

    # The 5-minute bucket from 12:00:00 ends at 12:05:00; plus 30 s of lateness.
    assert agent._pause(POLL_S) == pytest.approx(POLL_S)
    assert agent._pause(400.0) == pytest.approx(5 * 60 + 30 - 7)


def test_a_bucket_already_closable_does_not_spin_the_loop(agent: Agent) -> None:
    for detector in agent.runs[0].detectors:
        detector.ingest(failed_login(NOW - timedelta(hours=1)))

    assert agent._pause(POLL_S) == MIN_PAUSE_S
