"""State documents (a source's checkpoint, the rules' state) saved under a size guard.

Each is one request to Elasticsearch. Sent past the node's limit
(`http.max_content_length`), a document is refused (413) on every attempt, and the
loop would take that for an outage for ever: replaying a source from its last
checkpoint, or failing every cycle on the rules' state, saying only "413". So a
document no node would take is refused here, naming its largest parts and what to
lower, and one that nears the limit is said once, while there is still room to act.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError

from nis2triage.errors import LeaseLost
from nis2triage.snapshots import SnapshotTooLarge
from nis2triage.store import DEFAULT_REQUEST_LIMIT, Store

log = logging.getLogger(__name__)
# A document past this share of the request limit is said (once per document).
LARGE_SHARE = 0.8


@dataclass(frozen=True)
class StateNamed:
    """How the size guard of a state document names it, its parts and what to lower."""

    what: str
    # Worked out only when said: sizing each detector's part pickles it.
    largest: Callable[[], list[str]]
    advice: str


class StateWriter:
    """Reads and writes the agent's state documents, each checked against the request limit
    and, first, against the lease (`keep_lease` raises when another agent took over), so an
    agent that lost the lease does not write its older state over the new holder's.

    The lease check and the write are two requests: an agent frozen between them (SIGSTOP,
    a pause, a write held up on the network) past the lease's expiry would still overwrite
    what the new holder saved meanwhile. So each document is written only if it is still
    the version this agent last read or wrote; otherwise LeaseLost."""

    def __init__(self, store: Store, keep_lease: Callable[[], None]) -> None:
        self.store = store
        self.keep_lease = keep_lease
        # The largest request the nodes take, read again by `read_limit` at start.
        self.request_limit = DEFAULT_REQUEST_LIMIT
        self.said_large: set[str] = set()
        # Per document, the version last read or written (None: it did not exist).
        self.versions: dict[str, tuple[int, int] | None] = {}

    def read_limit(self) -> None:
        self.request_limit = self.store.request_limit()

    def read(self, doc_id: str) -> dict[str, Any] | None:
        """The document `doc_id` of the state index, remembering its version for `put`."""
        found = self.store.get_versioned("state", doc_id)
        self.versions[doc_id] = found[1:] if found is not None else None
        return found[0] if found is not None else None

    def put(self, doc_id: str, doc: dict[str, Any], named: StateNamed) -> None:
        """Save `doc` as `doc_id` of the state index, or raise SnapshotTooLarge."""
        size = encoded_size(doc)
        if size > self.request_limit:
            raise SnapshotTooLarge(self._too_large(named, size, self.request_limit))

        self._say_if_near(doc_id, named, size)
        self.keep_lease()
        try:
            self._write(doc_id, doc)
        except ApiError as exc:
            if exc.meta.status != 413:
                raise
            # A proxy in front of the node, or a node configured lower than it says.
            raise SnapshotTooLarge(self._too_large(named, size, None)) from exc

    def _write(self, doc_id: str, doc: dict[str, Any]) -> None:
        if doc_id not in self.versions:
            # Never read by this writer (a pass run without restoring first): nothing to
            # compare with.
            self.store.put("state", doc_id, doc, refresh=True)
            return

        written = self.store.put_versioned("state", doc_id, doc, self.versions[doc_id])
        if written is None:
            del self.versions[doc_id]  # read again (`read`) before the next write
            raise LeaseLost(
                f"{doc_id} of {self.store.index('state')} was written by someone else since "
                "this agent read it (another agent that took the lease while this one was "
                "paused, or a hand edit); not overwritten"
            )
        self.versions[doc_id] = written

    def _say_if_near(self, doc_id: str, named: StateNamed, size: int) -> None:
        share = size / self.request_limit
        if share <= LARGE_SHARE or doc_id in self.said_large:
            return
        self.said_large.add(doc_id)
        log.warning(
            "%s is %s, %.0f%% of the %s Elasticsearch takes in one request; past it the "
            "agent stops. Largest: %s",
            named.what,
            mb(size),
            100 * share,
            mb(self.request_limit),
            "; ".join(named.largest()),
        )

    def _too_large(self, named: StateNamed, size: int, limit: int | None) -> str:
        allowed = (
            f"the {mb(limit)} Elasticsearch takes in one request (http.max_content_length)"
            if limit is not None
            else "what Elasticsearch (or a proxy in front of it) takes in one request"
        )
        return (
            f"{named.what} is {mb(size)}, over {allowed}, so it cannot be saved in "
            f"{self.store.index('state')}; the agent stops rather than retry it for ever. "
            f"Largest: {'; '.join(named.largest())}. {named.advice}, or raise "
            "http.max_content_length on every node"
        )


def encoded_size(doc: dict[str, Any]) -> int:
    """Bytes of `doc` as the client sends it (a snapshot's base64 counted, not copied)."""
    snapshot = doc.get("snapshot")
    if snapshot is None:
        return json_size(doc)
    return len(snapshot["blob"]) + json_size({**doc, "snapshot": {**snapshot, "blob": ""}})


def json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def largest_rules(rules: dict[str, Any]) -> list[str]:
    """The three rules whose saved state is largest, with its size."""
    sizes = {name: json_size(saved) for name, saved in rules.items()}
    largest = sorted(sizes, key=sizes.__getitem__, reverse=True)[:3]
    return [f"rule {name!r} {mb(sizes[name])}" for name in largest]


def mb(size: int) -> str:
    # In Elasticsearch's units (its "100mb" is 100 x 1024 x 1024 bytes), so the figures
    # compare with the setting as written.
    size_mb = size / 1024 / 1024
    if size_mb >= 1:
        return f"{size_mb:.1f} MB"
    return f"{size / 1024:.0f} kB" if size >= 1024 else f"{size} B"
