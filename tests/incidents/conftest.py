"""Alerts, configurations and an incident flow on the real node, with a clock the test moves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from nis2triage.assets import Asset
from nis2triage.config import AgentConfig
from nis2triage.incidents.flow import IncidentFlow
from nis2triage.notify import build
from nis2triage.records import Alert
from nis2triage.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LAB = Asset(
    name="labsz", hosts=["LabSZ"], criticality="high", service="research", users_served=1200
)


def alert(
    entity: str = "203.0.113.9",
    at: datetime = T0,
    route: str = "early_warning",
    users: tuple[str, ...] = ("oracle",),
    hints: tuple[str, ...] = ("malicious",),
) -> Alert:
    return Alert(
        kind="detector",
        name="ssh-brute-force",
        version="1",
        severity="high",
        timestamp=at,
        start=at - timedelta(minutes=5),
        end=at,
        score=0.97,
        threshold=0.8,
        entity_field="source.ip",
        entity=entity,
        message=f"{entity} failed 40 SSH logins, trying {len(users)} distinct accounts",
        index_pattern="t-none-logs",
        query=f'source.ip:"{entity}"',
        related_ips=(entity,),
        related_users=users,
        related_hosts=("LabSZ",),
        evidence={"events": 40},
        hints=hints,
        route=route,  # type: ignore[arg-type]
        route_reason=f"test route {route}",
    )


def agent_config(
    prefix: str, mode: str = "dry-run", notifier: dict[str, Any] | None = None, **incidents: Any
) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "elasticsearch": {"hosts": ["http://127.0.0.1:9200"]},
            "entity": {
                "legal_name": "Test Entity NV",
                "enterprise_number": "0403.019.261",
                "sector": "energy",
                "entity_class": "essential",
            },
            "sources": [{"name": "auth", "indices": ["t-none-logs"]}],
            "incidents": incidents,
            "notifier": {"mode": mode, **(notifier or {})},
            "state": {"index_prefix": prefix},
        }
    )


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def to(self, moment: datetime) -> None:
        self.now = moment


MakeFlow = Callable[..., IncidentFlow]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_flow(es: Elasticsearch, index_name: str, clock: Clock) -> MakeFlow:
    """make_flow(mode, notifier options, **incidents options): an incident flow on fresh indices."""

    def make(
        mode: str = "dry-run", notifier: dict[str, Any] | None = None, **incidents: Any
    ) -> IncidentFlow:
        cfg = agent_config(index_name, mode, notifier, **incidents)
        store = Store(es, index_name)
        store.ensure_indices()
        notifier = build.notifier(cfg, store, b"pseudonym-key-0123456789", clock)
        return IncidentFlow(cfg, store, notifier, clock)

    return make
