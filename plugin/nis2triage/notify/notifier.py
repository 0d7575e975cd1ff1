"""From a report to an outbox entry: minimised, keyed, and queued for its channels.

Anything leaving the organisation is minimised first (GDPR Art. 5(1)(c)):
addresses and the user and host names involved become keyed pseudonyms, and the table
that maps them back stays in the entity's own `<prefix>-pseudonyms` index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from elasticsearch import ConflictError

from nis2triage.errors import StoreError
from nis2triage.notify.outbox import BY_HAND, channels_of
from nis2triage.notify.pseudonym import Pseudonymiser
from nis2triage.store import Store

log = logging.getLogger(__name__)


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


class Notifier:
    def __init__(
        self,
        store: Store,
        mode: str,
        channels: list[str],
        pseudonymiser: Pseudonymiser | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.mode = mode
        self.channels = channels
        self.pseudonymiser = pseudonymiser
        self.clock = clock

    def minimise(
        self,
        body: dict[str, Any],
        users: Iterable[str],
        hosts: Iterable[str] = (),
        as_is: Iterable[str] = (),
        written: Iterable[str] = (),
        names_everywhere: bool = False,
        kept_addresses: Iterable[str] = (),
    ) -> dict[str, Any]:
        """`body` with addresses, e-mail addresses and the named users and hosts
        pseudonymised, unless that is turned off (`Pseudonymiser.scrub` for the keys)."""
        if self.pseudonymiser is None:
            return {**body, "pseudonymised": False}
        scrubbed: dict[str, Any] = self.pseudonymiser.scrub(
            body, users, hosts, as_is, written, names_everywhere, kept_addresses
        )
        self._save_lookup()
        return {**scrubbed, "pseudonymised": True}

    def queue(self, key: str, kind: str, body: dict[str, Any], meta: dict[str, Any]) -> bool:
        """An outbox entry for an already minimised `body`; False if `key` was queued before."""
        now = _iso(self.clock())
        doc = {
            **meta,
            "kind": kind,
            "status": "dry-run" if self.mode == "dry-run" else "pending",
            "channels": list(self.channels),
            "created": now,
            "next_attempt": now,
            "attempts": 0,
            "payload": body,
        }
        new = self.store.create_many("outbox", [(key, doc)]) == 1
        if new:
            log.info(
                "%s queued (%s) for %s",
                _named(kind, key, meta),
                doc["status"],
                ", ".join(self.channels),
            )
        return new

    def requeue(self, key: str, body: dict[str, Any]) -> bool:
        """Queue again, for delivery, an entry made in dry-run: same key, the report as
        made now, the channels configured now. False if it is no longer a dry run."""
        now = _iso(self.clock())
        changes = {
            "status": "pending",
            "channels": list(self.channels),
            "next_attempt": now,
            "requeued": now,
            "attempts": 0,
            "deliveries": {},
            "payload": body,
        }
        if not self._rewrite_dry_run(key, changes):
            return False
        log.info("%s queued again, from dry-run, for %s", key, ", ".join(self.channels))
        return True

    def remake(self, key: str, body: dict[str, Any]) -> bool:
        """Replace the report of an entry made in dry-run by the one made now, still a dry
        run (a trial's analyst rewords and asks again). False if it is no longer one."""
        return self._rewrite_dry_run(key, {"payload": body, "remade": _iso(self.clock())})

    def _rewrite_dry_run(self, key: str, changes: dict[str, Any]) -> bool:
        """The entry `key` with `changes`, if it is still a dry run (False otherwise); the
        write fails if another writer changed it since it was read."""
        index = self.store.index("outbox")
        found = self.store.es.get(index=index, id=key)
        if found["_source"].get("status") != "dry-run":
            return False
        self.store.es.index(
            index=index,
            id=key,
            # Replaced whole: an update would merge the old report's fields into the new.
            document={**found["_source"], **changes},
            if_seq_no=found["_seq_no"],
            if_primary_term=found["_primary_term"],
            refresh=True,
        )
        return True

    def submitted_by_hand(self, key: str, who: str, reference: str) -> list[str]:
        """Stop the channels still trying to deliver entry `key`: a person submitted the
        report on the CCB's platform, and a channel's later success would make the CCB
        receive it twice. The channels stopped; none if the entry is no longer pending."""
        for _ in range(5):  # a delivery being saved meanwhile: read it again
            found = self.store.get_versioned("outbox", key)
            if found is None or found[0].get("status") != "pending":
                return []
            entry, seq_no, term = found
            stopped, update = _by_hand(entry, _iso(self.clock()), who, reference)
            try:
                self.store.es.update(
                    index=self.store.index("outbox"), id=key, doc=update, refresh=True,
                    if_seq_no=seq_no, if_primary_term=term,
                )  # fmt: skip
            except ConflictError:
                continue
            if stopped:
                log.info("%s submitted by hand (%s): no longer sent over %s", key, reference,
                         ", ".join(stopped))  # fmt: skip
            return stopped
        raise StoreError(
            f"outbox entry {key} kept changing while its hand submission was recorded; "
            "run `incidents submitted` again so that no channel sends it a second time"
        )

    def dry_runs(self, since: datetime) -> list[dict[str, Any]]:
        """Reports made in dry-run since `since`, which no channel delivers by itself."""
        self.store.refresh("outbox")
        resp = self.store.es.search(
            index=self.store.index("outbox"),
            query={"bool": {"filter": [
                {"term": {"status": "dry-run"}},
                {"term": {"kind": "incident_report"}},
                {"range": {"created": {"gte": _iso(since)}}},
            ]}},
            sort=[{"created": "asc"}],
            size=100,
        )  # fmt: skip
        return [hit["_source"] for hit in resp["hits"]["hits"]]

    def entry(self, key: str) -> dict[str, Any] | None:
        return self.store.get("outbox", key)

    def _save_lookup(self) -> None:
        """Keep the pseudonym -> value table in the entity's own index, never in a payload."""
        assert self.pseudonymiser is not None
        now = _iso(self.clock())
        docs = [
            (name, {"kind": name.split("-", 1)[0], "value": value, "@timestamp": now})
            for name, value in self.pseudonymiser.table.items()
        ]
        self.store.create_many("pseudonyms", docs)
        self.pseudonymiser.table.clear()


def _by_hand(
    entry: dict[str, Any], now: str, who: str, reference: str
) -> tuple[list[str], dict[str, Any]]:
    """(channels stopped, the entry's update) once a person submitted it by hand."""
    deliveries = {name: dict(state) for name, state in (entry.get("deliveries") or {}).items()}
    stopped = []
    for name in channels_of(entry):
        state = deliveries.setdefault(name, {"status": "pending", "attempts": 0})
        if state.get("status") == "pending":
            state.update(status=BY_HAND, at=now, next_attempt=None)
            stopped.append(name)
    update = {
        "deliveries": deliveries,
        "status": "sent",
        "sent_at": entry.get("sent_at") or now,
        "submitted_by_hand": {"at": now, "by": who, "reference": reference},
    }
    return stopped, update


def _named(kind: str, key: str, meta: dict[str, Any]) -> str:
    """What a log line calls an entry: a report by its stage and incident, as analysts know
    it ("incident_report" alone read as the incident notification), with its key."""
    if "stage" not in meta:
        return f"{kind} {key}"
    return f"{meta['stage']} of incident {str(meta.get('incident_id', '?'))[:12]} ({kind} {key})"
