"""A burst of alerts is handled under the lease, checked between shares of it.

A scan of tens of thousands of addresses closes as many alerts in one slot (40,006 took
90 s to route, write and file on this machine), longer than the lease holds unrenewed
(two minutes by default): a standby agent could take over meanwhile, and the first went
on writing alerts, containment requests and incidents beside it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from test_agent_restart import index_part

from nis2triage import agent as agent_module
from nis2triage import esclient
from nis2triage.agent import Agent, CycleReport
from nis2triage.config import load_config
from nis2triage.errors import LeaseLost

from support import real_log_docs, write_agent_config


def alerts_of_the_real_log(
    es: Elasticsearch, es_settings: esclient.ESSettings, index: str, tmp_path: Path
) -> list[agent_module.Alert]:
    index_part(es, index, real_log_docs(), 0)
    config = write_agent_config(tmp_path / "once", es_settings, index, f"{index}-once")
    agent = Agent(load_config(config), es, b"k" * 32, b"p" * 32)
    agent.start()
    return agent.run_once().alerts


def agent_at(es: Elasticsearch, config: Path, ahead: timedelta) -> Agent:
    """An agent whose clock runs `ahead` of the real one."""
    agent = Agent(
        load_config(config), es, b"k" * 32, b"p" * 32, clock=lambda: datetime.now(UTC) + ahead
    )
    agent.start()
    return agent


def leading_in_shares_of_two(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[agent_module.Alert], Path, Agent]:
    """The real log's alerts, and an agent holding the lease of a fresh prefix that
    handles alerts two at a time (its configuration too, for a standby)."""
    alerts = alerts_of_the_real_log(es, es_settings, index, tmp_path)
    monkeypatch.setattr(agent_module, "ALERTS_PER_LEASE_CHECK", 2)
    config = write_agent_config(tmp_path / "burst", es_settings, index, f"{index}-b")
    agent = agent_at(es, config, timedelta(0))
    assert agent.hold_for_one_pass() is None
    return alerts, config, agent


@pytest.mark.usefixtures("agent_env")
def test_an_agent_whose_lease_was_taken_during_a_burst_writes_no_more_of_it(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alerts, config, first = leading_in_shares_of_two(
        es, es_settings, index_name, tmp_path, monkeypatch
    )
    assert len(alerts) > 4
    first.handle_alerts(alerts[:2], CycleReport())

    # The first agent's lease has expired for a standby whose clock is past it: it takes
    # over while the first is still busy with the burst.
    standby = agent_at(es, config, timedelta(hours=1))
    assert standby.lease.hold() is None
    with pytest.raises(LeaseLost):
        first.handle_alerts(alerts[2:], CycleReport())

    es.indices.refresh(index=f"{index_name}-b-alerts")
    written = es.count(index=f"{index_name}-b-alerts")["count"]
    assert written == 2


@pytest.mark.usefixtures("agent_env")
def test_a_burst_renews_the_lease_between_its_shares(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alerts, _, agent = leading_in_shares_of_two(es, es_settings, index_name, tmp_path, monkeypatch)
    before = es.get(index=f"{index_name}-b-state", id="lease")["_seq_no"]

    report = CycleReport()
    agent.handle_alerts(alerts, report)

    after = es.get(index=f"{index_name}-b-state", id="lease")["_seq_no"]
    assert after - before == (len(alerts) + 1) // 2
    assert report.new_alerts == len(alerts)
