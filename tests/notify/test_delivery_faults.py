"""The CCB endpoint misbehaving: down for hours, 5xx, stalls, drips, floods, 429, redirects.

The agent runs in-process with an injected clock, so six hours pass in seconds.
Each case ends with the same checks: delivered once when the endpoint recovers
(counted by idempotency key), or refused for good when retrying cannot help.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch

from nis2triage import esclient
from nis2triage.agent import Agent
from nis2triage.config import load_config
from nis2triage.demo import index_docs

from ccb_server import CcbServer, running_ccb
from support import real_log_docs, write_agent_config

TOKEN = "test-ccb-token-s3cr3t"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def ccb() -> Any:
    with running_ccb() as server:
        yield server


def make_agent(
    es: Elasticsearch, es_settings: esclient.ESSettings, index: str, tmp_path: Path, ccb: CcbServer
) -> tuple[Agent, Clock]:
    notifier = {"mode": "send", "endpoint": ccb.url, "timeout": "1s", "deadline": "2s",
                "max_answer_bytes": 4096, "max_attempts": 4}  # fmt: skip
    config = write_agent_config(tmp_path, es_settings, index, f"{index}-st", notifier)
    data = yaml.safe_load(config.read_text())
    # One detector, so the whole test is about one or a few notifications.
    data["detectors"] = [d.replace("*.yml", "ssh-brute-force.yml") for d in data["detectors"]]
    config.write_text(yaml.safe_dump(data))
    clock = Clock()
    agent = Agent(load_config(config), es, b"k" * 32, b"p" * 32, clock=clock, token=TOKEN)
    agent.start()
    return agent, clock


def statuses(es: Elasticsearch, index: str) -> Counter[str]:
    es.indices.refresh(index=f"{index}-st-outbox")
    hits = es.search(index=f"{index}-st-outbox", size=100)["hits"]["hits"]
    return Counter(h["_source"]["status"] for h in hits)


@pytest.fixture
def indexed(es: Elasticsearch, index_name: str) -> str:
    index_docs(es, index_name, real_log_docs())
    return index_name


@pytest.mark.usefixtures("agent_env")
def test_endpoint_down_for_six_hours_then_delivered_once(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    indexed: str,
    tmp_path: Path,
    ccb: CcbServer,
) -> None:
    ccb.down = True
    agent, clock = make_agent(es, es_settings, indexed, tmp_path, ccb)
    report = agent.run_once()
    queued = report.notifications_queued
    for _ in range(6 * 12):  # six hours in five-minute steps
        clock.now += timedelta(minutes=5)
        agent.outbox.deliver_due(clock.now)
    tried_while_down = len(ccb.received)
    ccb.down = False
    clock.now += timedelta(minutes=31)
    agent.outbox.deliver_due(clock.now)
    clock.now += timedelta(minutes=31)
    agent.outbox.deliver_due(clock.now)

    assert queued >= 3
    # Backoff doubles from 5 s to a 30-minute cap (with jitter, 15 to 30 minutes): about
    # 20 tries per entry in 6 hours, where polling every 5 minutes would make 72.
    assert queued * 12 <= tried_while_down <= queued * 30
    assert statuses(es, indexed) == Counter({"sent": queued})
    delivered = ccb.idempotency_keys[tried_while_down:]
    assert sorted(delivered) == sorted(set(delivered)) and len(delivered) == queued


@pytest.mark.parametrize(
    ("trouble", "script", "fault"),
    [
        pytest.param("5xx", [(503, {}), (502, {}), (500, {})], {}, id="5xx"),
        pytest.param("429", [(429, {"Retry-After": "90"})], {}, id="429-retry-after"),
        pytest.param("stall", [], {"stall": 2.5}, id="timeout"),
        # A byte every 100 ms: no read times out, the 2 s deadline of the attempt does.
        pytest.param("drip", [], {"drip": 0.1}, id="drip-past-deadline"),
        pytest.param("flood", [], {"body": b"x" * 100_000}, id="answer-over-cap"),
    ],
)
@pytest.mark.usefixtures("agent_env")
def test_transient_failures_are_retried_until_delivered_once(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    indexed: str,
    tmp_path: Path,
    ccb: CcbServer,
    trouble: str,
    script: list[tuple[int, dict[str, str]]],
    fault: dict[str, Any],
) -> None:
    ccb.script = list(script)
    for name, value in fault.items():
        setattr(ccb, name, value)
    agent, clock = make_agent(es, es_settings, indexed, tmp_path, ccb)
    queued = agent.run_once().notifications_queued
    ccb.stall, ccb.drip, ccb.body = 0.0, 0.0, b"{}"
    for _ in range(12):
        clock.now += timedelta(minutes=2)
        agent.outbox.deliver_due(clock.now)

    assert statuses(es, indexed) == Counter({"sent": queued})
    keys = Counter(ccb.idempotency_keys)
    assert len(keys) == queued
    # Every first try stalls, drips or floods (one retry each); or each scripted answer costs one.
    assert sum(keys.values()) == queued + (queued if fault else len(script))


@pytest.mark.usefixtures("agent_env")
def test_a_redirect_is_refused_and_never_followed(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    indexed: str,
    tmp_path: Path,
    ccb: CcbServer,
) -> None:
    ccb.script = [(307, {"Location": "http://192.0.2.10/steal"})] * 50
    agent, clock = make_agent(es, es_settings, indexed, tmp_path, ccb)
    queued = agent.run_once().notifications_queued
    for _ in range(5):
        clock.now += timedelta(hours=1)
        agent.outbox.deliver_due(clock.now)

    assert statuses(es, indexed) == Counter({"failed": queued})
    assert len(ccb.received) == queued  # one try each; nothing went to the other host
