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
    ) -> bool:
        """Record one escalation; True (and a WARNING line) only the first time, and again
        when its `due` has moved since (an analyst dated the awareness otherwise): the one
        document then says the new due, since the one said before is wrong."""
        said_due = _iso(due) if due else None
        doc: dict[str, Any] = {
            "@timestamp": _iso(self.clock()),
            "kind": kind,
            "incident_id": incident_id,
            "report": report,
            "due": said_due,
            "message": message,
            "details": details or {},
        }
        doc_id = _escalation_id(incident_id, report, kind)
        if self.store.create("escalations", doc_id, doc):
            log.warning("SOC %s: incident %s, %s: %s", kind, incident_id, report, message)
            return True
        was_due = self._moved(doc_id, said_due)
        if was_due is None:
            return False
        doc["details"] = {**(details or {}), "was_due": was_due}
        self.store.put("escalations", doc_id, doc)
        log.warning(
            "SOC %s: incident %s, %s (due moved from %s): %s",
            kind, incident_id, report, was_due, message,
        )  # fmt: skip
        return True

    def withdraw(
        self,
        kind: str,
        incident_id: str,
        report: str,
        message: str,
        unless_due: datetime | None = None,
    ) -> bool:
        """Take back an escalation that no longer holds (a due moved), so that the dashboard
        stops saying it and `raise_once` says it afresh should it hold again; one that says
        `unless_due` stays. True (and a WARNING line) when one was taken back."""
        doc_id = _escalation_id(incident_id, report, kind)
        if unless_due is not None:
            held = self.store.get("escalations", doc_id)
            if held is None or held.get("due") == _iso(unless_due):
                return False
        if not self.store.delete("escalations", doc_id):
            return False
        log.warning("SOC %s withdrawn: incident %s, %s: %s", kind, incident_id, report, message)
        return True

    def _moved(self, doc_id: str, due: str | None) -> str | None:
        """The due the escalation said before, when it was another; None otherwise."""
        if due is None:
            return None
        held = self.store.get("escalations", doc_id) or {}
        said = held.get("due")
        return str(said) if said and said != due else None


def _escalation_id(incident_id: str, report: str, kind: str) -> str:
    """One escalation of a kind per incident and report: raised once, rewritten, withdrawn."""
    return stable_id("escalation", incident_id, report, kind)
