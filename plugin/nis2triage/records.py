"""Plain typed records passed between the stages of the flow.

A stage never hands another stage an Elasticsearch response: it hands it one
of these. They are frozen so that no stage mutates what another produced (all but
Event, for speed: see there).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

Route = Literal["contain", "early_warning", "soc"]
Severity = Literal["low", "medium", "high", "critical"]
SEVERITY_RANK: dict[str, int] = {"low": 1, "medium": 2, "high": 3, "critical": 4}


@dataclass(slots=True)
class Event:
    """One source document: where it came from, its time and its ECS body.

    The one record that is not frozen: one is made per document read, and building a
    frozen dataclass (and its cached time) cost a tenth of the agent's per-event work
    on a catch-up (`make bench`); nothing assigns to it. The time is kept as the epoch
    milliseconds Elasticsearch sorts by; the datetime is made only when asked for.
    """

    index: str
    id: str
    ts_ms: int
    doc: dict[str, Any]

    @classmethod
    def at(cls, index: str, doc_id: str, timestamp: datetime, doc: dict[str, Any]) -> Event:
        """An event from an aware datetime rather than epoch milliseconds."""
        return cls(index, doc_id, int(timestamp.timestamp() * 1000), doc)

    @property
    def timestamp(self) -> datetime:
        return ms_to_datetime(self.ts_ms)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds as an aware datetime, exactly: in integer arithmetic, since a
    float of seconds loses the last millisecond near year 9999. OverflowError outside
    the years 1 to 9999."""
    return _EPOCH + timedelta(milliseconds=ms)


@dataclass(frozen=True)
class Alert:
    """A detection, from an anomaly detector or a rule, before or after triage."""

    kind: Literal["detector", "rule"]
    name: str
    version: str
    severity: Severity
    timestamp: datetime
    start: datetime
    end: datetime
    score: float
    threshold: float
    entity_field: str
    entity: str
    message: str
    index_pattern: str
    query: str
    related_ips: tuple[str, ...] = ()
    related_users: tuple[str, ...] = ()
    related_hosts: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()
    route: Route | None = None
    route_reason: str | None = None

    @property
    def id(self) -> str:
        """Deterministic: the same detection over the same window always gets the same id."""
        return stable_id(self.kind, self.name, self.entity_field, self.entity, self.start, self.end)


def stable_id(*parts: object) -> str:
    """A hash of what makes a document unique, used as its `_id`."""
    text = json.dumps([p.isoformat() if isinstance(p, datetime) else p for p in parts])
    return hashlib.sha256(text.encode()).hexdigest()[:32]
