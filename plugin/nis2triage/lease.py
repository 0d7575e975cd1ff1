"""One agent per state prefix: a lease document in `<prefix>-state`.

Two agents on the same prefix would read the same sources, fight over the same
checkpoint and deliver the same notifications twice: the outbox is exactly-once
for one agent, not for two. The agent's loop therefore holds a lease, a document
naming its host, process and run, with an expiry that it renews every cycle and at
every checkpoint. Writes are guarded by the document's sequence number, so two
agents starting together cannot both take it.

Another agent may take the lease when it has expired, when it was released (a clean
stop deletes it), or at once when its holder ran under the same running kernel (its
boot id) and in the same process namespace, and that process is gone: a crash followed
by a restart need not wait for the expiry. The host name alone does not say that a pid
means the same process: two containers sharing a host name each see their own pid 1,
and two machines (a cloned VM) can share a host name and the initial pid namespace's
number; for them only the expiry counts. An agent that cannot take it waits in standby
and tries again every poll: a second instance is a hot standby, not a second sender.
The holder checks the lease before every checkpoint and every notification it sends,
so once another agent holds it, it neither overwrites that agent's state nor sends
beside it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nis2triage.localnode import pid_alive
from nis2triage.store import Store

log = logging.getLogger(__name__)
LEASE_ID = "lease"
# The running kernel's boot id (Linux): random at every boot.
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
PID_NAMESPACE_PATH = "/proc/self/ns/pid"


@dataclass(frozen=True)
class Holder:
    """Who holds the lease, as its document says."""

    host: str
    pid: int
    run: str
    expires: datetime
    pid_namespace: str = ""
    boot_id: str = ""
    # How long the holder's lease runs from each renewal, by its own clock (expires minus
    # updated); None when the document does not say.
    ttl: timedelta | None = None

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}, until {self.expires.isoformat()}"


class Lease:
    def __init__(
        self,
        store: Store,
        ttl: timedelta,
        clock: Callable[[], datetime],
        host: str | None = None,
        pid: int | None = None,
        elapsed: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        # Seconds on a clock no one sets (monotonic), for how long another holder's lease
        # has gone unrenewed as this agent watched it.
        self.elapsed = elapsed
        self.watched: tuple[str, int, int] | None = None
        self.watched_since = 0.0
        self.host = host or socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.pid_namespace = _pid_namespace()
        self.boot_id = _boot_id()
        if not (self.boot_id and self.pid_namespace):
            self._say_no_quick_takeover()
        self.run = uuid.uuid4().hex
        self.held = False
        # Whether the last `hold` took the lease (there was none, or another run's) rather
        # than renewed this run's own: whoever held it meanwhile may have saved state since.
        self.taken = False

    def hold(self) -> Holder | None:
        """Take or renew the lease; None when held, else who holds it."""
        self.taken = False
        found = self.store.get_versioned("state", LEASE_ID)
        if found is None:
            took = self.store.create("state", LEASE_ID, self._doc())
            self.taken = took
            return self._result(took)
        doc, seq_no, term = found
        holder = holder_of(doc)
        # The run too: a state index made again numbers its documents from 0 again.
        unrenewed = self._unrenewed_for((str(doc.get("run")), seq_no, term))
        if holder is not None and not self._may_take(holder, unrenewed):
            self.held = False
            return holder
        took = self.store.put_if("state", LEASE_ID, self._doc(), (seq_no, term))
        self.taken = took and (holder is None or holder.run != self.run)
        return self._result(took)

    def release(self) -> None:
        """Give the lease up (a clean stop), if this run still holds it."""
        found = self.store.get_versioned("state", LEASE_ID)
        if found is None or found[0].get("run") != self.run:
            return
        self.store.es.options(ignore_status=(404, 409)).delete(
            index=self.store.index("state"),
            id=LEASE_ID,
            if_seq_no=found[1],
            if_primary_term=found[2],
            refresh=True,
        )
        self.held = False
        log.info(
            "released the lease of %s; a standby agent may take over now",
            self.store.index("state"),
        )

    def _unrenewed_for(self, version: tuple[str, int, int]) -> float:
        """Seconds this agent has seen the lease document at `version`, unchanged."""
        if version != self.watched:
            self.watched, self.watched_since = version, self.elapsed()
        return self.elapsed() - self.watched_since

    def _may_take(self, holder: Holder, unrenewed: float) -> bool:
        if holder.run == self.run or holder.expires <= self.clock():
            return True
        # The expiry is the holder's clock's: one days ahead (a hardware clock after a reboot,
        # before NTP) wrote a lease that looked live for days after its holder died. Not
        # renewed for its whole term as watched here, it is dead whatever the clocks say.
        if holder.ttl is not None and unrenewed >= holder.ttl.total_seconds():
            return True
        # A holder whose process is gone crashed; a restart need not wait. Only where its pid
        # means the same process as here: the same running kernel and pid namespace.
        mine = (self.host, self.boot_id, self.pid_namespace)
        visible = (holder.host, holder.boot_id, holder.pid_namespace) == mine
        known = bool(self.boot_id and self.pid_namespace)
        return visible and known and not pid_alive(holder.pid)

    def _say_no_quick_takeover(self) -> None:
        # Said because the shipped unit once hid /proc/sys (ProcSubset=pid): every restart
        # after a crash then stood by for the whole lease, with nothing in the log saying why.
        unread = BOOT_ID_PATH if not self.boot_id else PID_NAMESPACE_PATH
        log.warning(
            "%s cannot be read (hidden by systemd's ProcSubset=pid, or not Linux): after a "
            "crash, a restart of this agent waits for the lease to expire (%s) instead of "
            "taking over at once; leave /proc/sys readable to the service",
            unread,
            self.ttl,
        )

    def _result(self, taken: bool) -> Holder | None:
        if taken:
            self.held = True
            return None
        # Someone else wrote it between our read and our write: theirs, for now.
        self.held = False
        found = self.store.get("state", LEASE_ID)
        holder = holder_of(found) if found else None
        return holder or Holder("?", 0, "?", self.clock())

    def _doc(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "kind": "lease",
            "updated": now.isoformat(),
            "host": self.host,
            "pid": self.pid,
            "pid_namespace": self.pid_namespace,
            "boot_id": self.boot_id,
            "run": self.run,
            "expires": (now + self.ttl).isoformat(),
        }


def holder_of(doc: dict[str, Any]) -> Holder | None:
    """The holder a lease document names; None when it names none readable."""
    try:
        expires = datetime.fromisoformat(str(doc["expires"]))
        if expires.tzinfo is None:
            # Elasticsearch reads a time without a zone as UTC; compared as it was with the
            # aware clock, a lease written by hand so failed every start with a TypeError.
            expires = expires.replace(tzinfo=UTC)
        return Holder(
            str(doc["host"]),
            int(doc["pid"]),
            str(doc["run"]),
            expires,
            str(doc.get("pid_namespace", "")),
            str(doc.get("boot_id", "")),
            _term(doc, expires),
        )
    except (KeyError, TypeError, ValueError):
        return None  # an unreadable lease document is no lease: it is taken over


def _term(doc: dict[str, Any], expires: datetime) -> timedelta | None:
    """How long the holder's lease runs from a renewal (expires minus updated, both by its
    clock); None when `updated` is missing or unreadable."""
    try:
        updated = datetime.fromisoformat(str(doc["updated"]))
    except (KeyError, ValueError):
        return None
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    term = expires - updated
    return term if term > timedelta(0) else None


def _pid_namespace() -> str:
    """This process's pid namespace (Linux), or "" where it cannot be known."""
    try:
        return os.readlink(PID_NAMESPACE_PATH)
    except OSError:
        return ""


def _boot_id() -> str:
    """The running kernel's boot id (Linux): random at every boot, so another machine, a
    cloned VM included, has another; containers on one host share it. "" where unknown."""
    try:
        with open(BOOT_ID_PATH) as fh:
            return fh.read().strip()
    except OSError:
        return ""
