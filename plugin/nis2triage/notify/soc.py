"""The SOC channel: what needs a person now, as a WARNING line and a dashboard document.

Escalations go to `<prefix>-escalations`, which the SOC dashboard reads. Each
has a deterministic id (incident, report, kind), so a watchdog that runs every
cycle raises a given escalation once, however often it looks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from nis2triage.records import stable_id
from nis2triage.store import Store

log = logging.getLogger(__name__)


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


class Soc:
    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    def raise_once(
        self,
        kind: str,
        incident_id: str,
        report: str,
        message: str,
        due: datetime | None = None,
        details: dict[str, Any] | None = None,
        once_per: str | None = None,
    ) -> bool:
        """Record one escalation; True (and a WARNING line) only the first time. `once_per`
        tells apart escalations of one kind that must each be raised (a moved deadline)."""
        doc = {
            "@timestamp": _iso(self.clock()),
            "kind": kind,
            "incident_id": incident_id,
            "report": report,
            "due": _iso(due) if due else None,
            "message": message,
            "details": details or {},
        }
        parts = [incident_id, report, kind] + ([once_per] if once_per else [])
        new = self.store.create("escalations", stable_id("escalation", *parts), doc)
        if new:
            log.warning("SOC %s: incident %s, %s: %s", kind, incident_id, report, message)
        return new
