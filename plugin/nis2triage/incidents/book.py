"""Incidents in Elasticsearch: read, created once, changed under optimistic concurrency.

The agent and analysts' commands may change one incident at the same time, so
every change re-reads the record, applies a pure function and writes it back
only if nobody wrote in between (`if_seq_no`), retrying otherwise. After each
write the history is copied to `<prefix>-audit` with `op_type=create` under
ids that depend only on the incident and the step's number: the audit index is
only ever appended to, and a copy missed by a crash is made at the next write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from nis2triage.errors import IncidentError
from nis2triage.incidents.record import Incident
from nis2triage.notify.pseudonym import reveal
from nis2triage.records import stable_id
from nis2triage.store import Store

# Incidents read per request when every one of a query must be reached (`Book.each`).
PAGE = 500

log = logging.getLogger(__name__)
MAX_TRIES = 5
MIN_PREFIX = 6


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


class Book:
    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    def get(self, incident_id: str) -> Incident:
        """An incident by id, by the `incident-...` reference its reports carry, or by a
        unique prefix of at least six characters of its id."""
        if not incident_id.strip():
            raise IncidentError("no incident id given; `incidents list` shows them")
        incident_id = reveal(self.store, incident_id, "incident") or incident_id
        doc = self.store.get("incidents", incident_id)
        if doc is None:
            doc = self._by_prefix(incident_id)
        return Incident.from_doc(doc)

    def _by_prefix(self, prefix: str) -> dict[str, Any]:
        if len(prefix) < MIN_PREFIX:
            raise IncidentError(
                f"no incident {prefix!r}; give at least {MIN_PREFIX} characters of its id"
            )
        hits = self.search({"prefix": {"id": prefix}}, size=2)
        if len(hits) != 1:
            what = "no incident" if not hits else "more than one incident"
            raise IncidentError(
                f"{what} starts with {prefix!r}; `nis2triage incidents list` shows the ids"
            )
        return hits[0]

    def search(
        self, query: dict[str, Any], size: int = 100, sort: str = "opened_at"
    ) -> list[dict[str, Any]]:
        self.store.refresh("incidents")
        resp = self.store.es.search(
            index=self.store.index("incidents"), query=query, size=size, sort=[{sort: "desc"}]
        )
        return [dict(h["_source"]) for h in resp["hits"]["hits"]]

    def find(self, query: dict[str, Any], size: int = 100) -> list[Incident]:
        return [Incident.from_doc(d) for d in self.search(query, size)]

    def each(self, query: dict[str, Any], page: int | None = None) -> Iterator[Incident]:
        """Every incident `query` matches, oldest first, a page at a time: the watch over
        deadlines must reach them all, the oldest (the likeliest overdue) above all."""
        self.store.refresh("incidents")
        page = page or PAGE
        after: list[Any] | None = None
        while True:
            resp = self.store.es.search(
                index=self.store.index("incidents"), query=query, size=page,
                sort=[{"opened_at": "asc"}, {"id": "asc"}], search_after=after,
            )  # fmt: skip
            hits = resp["hits"]["hits"]
            yield from (Incident.from_doc(dict(h["_source"])) for h in hits)
            if len(hits) < page:
                return
            after = hits[-1]["sort"]

    def create(self, incident: Incident) -> bool:
        """Store a new incident; False if one with its id exists (a replayed first alert)."""
        new = self.store.create("incidents", incident.id, incident.to_doc(self.clock()))
        if new:
            self._audit(incident)
        return new

    def update(self, incident_id: str, change: Callable[[Incident], Incident]) -> Incident:
        """Apply `change` to the stored incident, retrying when someone else wrote first."""
        for _ in range(MAX_TRIES):
            found = self.store.get_versioned("incidents", incident_id)
            if found is None:
                raise IncidentError(f"no incident {incident_id}")
            doc, seq_no, term = found
            before = Incident.from_doc(doc)
            after = change(before)
            if after == before:
                return before
            if self.store.put_if(
                "incidents", incident_id, after.to_doc(self.clock()), (seq_no, term)
            ):
                self._audit(after)
                return after
            log.debug("incident %s changed under us; trying again", incident_id)
        raise IncidentError(f"incident {incident_id} keeps changing; try again in a moment")

    def _audit(self, incident: Incident) -> None:
        docs = [
            (
                stable_id("audit", incident.id, t.seq),
                {
                    "@timestamp": _iso(t.at),
                    "incident_id": incident.id,
                    "seq": t.seq,
                    "action": t.action,
                    "who": t.who,
                    "why": t.why,
                    "from": t.from_status,
                    "to": t.to_status,
                    "details": t.details,
                },
            )
            for t in incident.history
        ]
        self.store.create_many("audit", docs)

    def audit_trail(self, incident_id: str) -> list[dict[str, Any]]:
        self.store.refresh("audit")
        resp = self.store.es.search(
            index=self.store.index("audit"),
            query={"term": {"incident_id": incident_id}},
            sort=[{"seq": "asc"}],
            size=1000,
        )
        return [dict(h["_source"]) for h in resp["hits"]["hits"]]


def any_key(keys: Iterable[str]) -> dict[str, Any]:
    return {"terms": {"keys": list(keys)}}
