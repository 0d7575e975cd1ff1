"""`nis2triage status`: is an agent running, is each source caught up, is anything owed?

What an engineer on call asks first, answered from the agent's own indices (the lease,
each source's checkpoint, the outbox, the incidents) with read access and no key, from
any machine: the agent need not expose `/health`. The exit status says whether anything
needs attention, so a monitoring check can run the command as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import ApiError
from pydantic import ValidationError

from nis2triage.config import AgentConfig
from nis2triage.incidents.record import Incident
from nis2triage.lease import LEASE_ID, Holder, holder_of
from nis2triage.nis2.brussels import show
from nis2triage.store import INDICES, Store, describe_closed, lift_block

# A source whose checkpoint is older than this many poll intervals, and than STALE_FLOOR,
# is said to lag: the loop saves one at the end of every poll, and /health turns stale
# after as long.
STALE_POLLS = 5
STALE_FLOOR = timedelta(minutes=5)
# With the agent run from a timer, a checkpoint older than this many of its intervals: one
# run missed is a late timer, two are a stopped one.
TIMER_RUNS = 2
# An early warning is due 24 hours after awareness (NIS2 Art. 23(4)(a)): a notification
# still unsent that long after it was queued is late whatever its stage.
NOTIFICATION_DUE = timedelta(hours=24)
# A time written this far ahead of the clock `status` runs on says one of the two clocks is
# wrong: the lease and the checkpoints' ages mean nothing until it is set right.
CLOCK_TOLERANCE = timedelta(minutes=1)


@dataclass(frozen=True)
class SourceStatus:
    name: str
    poll_interval: timedelta
    # When the checkpoint was last saved, and the latest event time it has read (None:
    # never saved, or no event yet).
    saved: datetime | None
    read_up_to: datetime | None
    events: int
    # Why the checkpoint document could not be read (a field of the wrong type, written
    # by hand or by another tool), None when it could.
    unreadable: str | None = None
    # What no read reaches, as the agent last counted it (`Source.unread`).
    unread: Unread = field(default_factory=lambda: Unread())


@dataclass(frozen=True)
class Unread:
    untimed_indices: tuple[str, ...] = ()
    without_time: int = 0
    without_time_in: tuple[str, ...] = ()


@dataclass(frozen=True)
class Owed:
    """The incidents' reports: open incidents, the earliest deadline, the overdue ones."""

    open_incidents: int = 0
    next_due: tuple[str, datetime] | None = None
    overdue: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Status:
    checked: datetime
    prefix: str
    holder: Holder | None
    sources: list[SourceStatus]
    outbox: dict[str, int]
    late_notifications: int
    owed: Owed
    # Whether the state index exists: without it no agent ever ran with this prefix.
    state_index: bool = True
    # Own indices closed or under a block, said with the request that fixes each.
    index_faults: list[str] = field(default_factory=list)
    # How often a timer runs `run --once`, when the agent runs so (`status --every`): no
    # agent holds the lease between its passes.
    every: timedelta | None = None

    @property
    def live_holder(self) -> Holder | None:
        """Who holds the lease, unless it has expired (its holder stopped or died)."""
        if self.holder is None or self.holder.expires <= self.checked:
            return None
        return self.holder

    def concerns(self) -> list[str]:
        """What needs someone's attention, one sentence each; empty when all is well."""
        said = list(self.index_faults)
        if not self.state_index:
            said.append(
                f"there is no index {self.prefix}-state: no agent has run with "
                f"state.index_prefix {self.prefix}; if one runs, compare that setting with "
                "its configuration"
            )
        elif self.holder is not None and self.live_holder is None:
            said.append(_lease_expired(self.prefix, self.holder))
        elif self.live_holder is None:
            # Run from a timer (`every`), no agent holds it between two passes: the
            # checkpoints' ages then say whether it runs.
            if self.every is None:
                said.append(f"no agent holds the lease of {self.prefix}-state: none is running")
        else:
            said += _lease_ahead(self.prefix, self.live_holder, self.checked)
        for src in self.sources:
            said += _source_concerns(src, self.checked, self.every)
        if self.late_notifications:
            said.append(
                f"{self.late_notifications} notifications unsent {_hours(NOTIFICATION_DUE)} "
                f"after they were queued (see {self.prefix}-outbox)"
            )
        if self.outbox.get("failed"):
            said.append(
                f"{self.outbox['failed']} notifications failed for good: send them by hand "
                "(the agent's log names them)"
            )
        if self.owed.overdue:
            said.append(f"incidents with an overdue report: {', '.join(self.owed.overdue)}")
        return said


def read_status(
    cfg: AgentConfig, store: Store, now: datetime, every: timedelta | None = None
) -> Status:
    """Everything `status` shows, read from the agent's indices; `every`: how often a timer
    runs the agent's passes, when it runs so."""
    # First: a closed index fails the reads below, and the agent's log may be far away.
    faults = index_faults(store)
    lease = store.get("state", LEASE_ID)
    return Status(
        checked=now,
        prefix=cfg.state.index_prefix,
        holder=holder_of(lease) if lease else None,
        sources=[_source(store, s.name, s.poll_interval) for s in cfg.sources],
        outbox=outbox_counts(store),
        late_notifications=late_notifications(store, now),
        owed=_owed(store, now),
        state_index=_exists(store, "state"),
        index_faults=faults,
        every=every,
    )


def index_faults(store: Store) -> list[str]:
    """The agent's indices that are closed or blocked: the agent fails every cycle on them,
    and `status` said only, minutes later, that the checkpoint was getting old."""
    names = ",".join(f"{store.index(what)}*" for what in INDICES)
    wanted = "*.settings.index.blocks,*.settings.index.verified_before_close"
    try:
        found = store.es.indices.get_settings(
            index=names, expand_wildcards="all", filter_path=wanted
        ).body
    except ApiError:
        return []  # may not read settings: the rest of status still says what it can
    said = []
    for index, body in sorted(found.items()):
        settings = body["settings"]["index"]
        if settings.get("verified_before_close") == "true":
            said.append(describe_closed(index))
        blocks = settings.get("blocks", {}).items()
        said += [_blocked(index, name) for name, on in blocks if str(on).lower() == "true"]
    return said


def _blocked(index: str, name: str) -> str:
    setting = f"index.blocks.{name}"
    lift = lift_block(index, setting, flood=name == "read_only_allow_delete")
    return f"{index} has the block {setting}: the agent fails its cycles on it; {lift}"


def _exists(store: Store, what: str) -> bool:
    """Whether the index exists; yes when the credential may not ask (403): a role
    reading its own indices need not see their metadata."""
    answer = store.es.options(ignore_status=403).indices.exists(index=store.index(what))
    return answer.meta.status != 404


def _source(store: Store, name: str, poll_interval: timedelta) -> SourceStatus:
    doc_id = f"source-{name}"
    doc = store.get("state", doc_id)
    try:
        saved, read_up_to, events = _checkpoint(doc or {})
        unread = _unread((doc or {}).get("unread"))
    except CheckpointUnreadable as exc:
        where = f"{store.index('state')}/_doc/{doc_id}"
        return SourceStatus(name, poll_interval, None, None, 0, f"{where}: {exc}")
    return SourceStatus(name, poll_interval, saved, read_up_to, events, unread=unread)


class CheckpointUnreadable(ValueError):
    """A field of a source's checkpoint document that no agent writes as it is."""


def _checkpoint(doc: dict[str, Any]) -> tuple[datetime | None, datetime | None, int]:
    """When the checkpoint was saved, the latest event time read, and the events read."""
    cursor = doc.get("cursor") or {}
    if not isinstance(cursor, dict):
        raise CheckpointUnreadable(f"cursor is {_shown(cursor)}, not an object")
    saved = doc.get("updated")
    if saved is not None and _time(saved) is None:
        raise CheckpointUnreadable(f"updated is {_shown(saved)}, not an ISO 8601 time")
    watermark, events = cursor.get("watermark_ms"), cursor.get("events") or 0
    if watermark is not None and _moment_ms(watermark) is None:
        raise CheckpointUnreadable(
            f"cursor.watermark_ms is {_shown(watermark)}, not a time in epoch milliseconds"
        )
    if not isinstance(events, int) or isinstance(events, bool) or events < 0:
        raise CheckpointUnreadable(f"cursor.events is {_shown(events)}, not a count")
    return _time(saved), _moment_ms(watermark), events


def _unread(found: Any) -> Unread:
    """What the checkpoint says no read reaches (nothing when it says nothing)."""
    if found is None:
        return Unread()
    if not isinstance(found, dict):
        raise CheckpointUnreadable(f"unread is {_shown(found)}, not an object")
    count = found.get("without_time") or 0
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise CheckpointUnreadable(f"unread.without_time is {_shown(count)}, not a count")
    return Unread(_names(found, "untimed_indices"), count, _names(found, "without_time_in"))


def _names(found: dict[str, Any], key: str) -> tuple[str, ...]:
    names = found.get(key) or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointUnreadable(f"unread.{key} is {_shown(names)}, not a list of names")
    return tuple(names)


def _moment_ms(value: Any) -> datetime | None:
    """The moment `value` epoch milliseconds name; None for no number or one outside
    the years a datetime holds."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _shown(value: Any) -> str:
    return repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:57]}..."


def _source_concerns(src: SourceStatus, now: datetime, every: timedelta | None) -> list[str]:
    if src.unreadable is not None:
        return [
            f"source {src.name}: its checkpoint document cannot be read ({src.unreadable}); "
            "the agent writes it again at its next save: if none is running, start it, and "
            "if it is, look for another tool writing that index"
        ]
    if src.saved is None:
        return [f"source {src.name} has no checkpoint: no agent has polled it yet"]
    said = _unread_concerns(src)
    age = now - src.saved
    if -age > CLOCK_TOLERANCE:
        said.append(
            f"source {src.name}: its last checkpoint is dated {_hours(-age)} ahead of this "
            "machine's clock: the agent's clock or this one is wrong, and until it is set "
            "right this checkpoint's age says nothing of whether the agent runs"
        )
    if every is not None and age > TIMER_RUNS * every:
        said.append(
            f"source {src.name}: last checkpoint {_hours(age)} ago, more than two runs of "
            f"the timer ({_hours(every)} each): its passes stopped or fail (the timer's "
            "log says which)"
        )
    elif every is None and age > max(STALE_POLLS * src.poll_interval, STALE_FLOOR):
        said.append(
            f"source {src.name}: last checkpoint {_hours(age)} ago, more than {STALE_POLLS} "
            f"poll intervals ({_hours(src.poll_interval)} each) and {_hours(STALE_FLOOR)}: "
            "the agent is stopped, stuck or failing (its log says which)"
        )
    return said


def _lease_expired(prefix: str, holder: Holder) -> str:
    """A lease left in place past its expiry: a clean stop deletes it, so its holder died or
    is stuck (waiting on a frozen detector process, say), which "none is running" hid."""
    return (
        f"the lease of {prefix}-state expired at {show(holder.expires)}, not renewed by "
        f"process {holder.pid} on {holder.host}: that agent died or is stuck (its log says "
        "which), and no agent holds the lease"
    )


def _lease_ahead(prefix: str, holder: Holder, now: datetime) -> list[str]:
    """A lease renewed in this clock's future: a holder whose clock is ahead (a hardware clock
    after a reboot, before NTP) looks live until its expiry, however long after it died."""
    if holder.ttl is None or holder.expires - holder.ttl - now <= CLOCK_TOLERANCE:
        return []
    ahead = holder.expires - holder.ttl - now
    return [
        f"the lease of {prefix}-state was renewed {_hours(ahead)} ahead of this machine's "
        f"clock: the clock of {holder.host} (or this one) is wrong, so that agent may be dead "
        "while its lease looks live; set the clocks right (NTP), and see whether it runs"
    ]


def _unread_concerns(src: SourceStatus) -> list[str]:
    """Events every read skips, since each is a range on the time field: said at start
    and in the log only, they went unnoticed once the log had rotated."""
    said = []
    if src.unread.untimed_indices:
        said.append(
            f"source {src.name}: {', '.join(src.unread.untimed_indices)} map no date time "
            "field, so none of their events is read (the agent's start said which field)"
        )
    count = src.unread.without_time
    if count:
        documents = "1 document" if count == 1 else f"{count:,} documents"
        said.append(
            f"source {src.name}: {documents} without the time field (in "
            f"{', '.join(src.unread.without_time_in)}), never read: have the shipper or an "
            "ingest pipeline set it"
        )
    return said


def outbox_counts(store: Store) -> dict[str, int]:
    """The outbox's entries by status (pending, failed, sent, dry-run)."""
    answer = _search(store, "outbox", aggs={"status": {"terms": {"field": "status"}}})
    buckets = answer.get("aggregations", {}).get("status", {}).get("buckets", [])
    return {b["key"]: b["doc_count"] for b in buckets}


def late_notifications(store: Store, now: datetime) -> int:
    """Notifications still unsent (pending or failed) that were queued before now - 24 h.
    Later reports have their own deadlines, which the incidents track (`Owed.overdue`)."""
    late = {
        "bool": {
            "filter": [
                {"terms": {"status": ["pending", "failed"]}},
                {"range": {"created": {"lt": (now - NOTIFICATION_DUE).isoformat()}}},
            ]
        }
    }
    answer = _search(store, "outbox", query=late, track_total_hits=True)
    return int(answer["hits"]["total"]["value"])


def _owed(store: Store, now: datetime) -> Owed:
    still_open = {"bool": {"must_not": [{"term": {"status": "closed"}}]}}
    opened = _search(store, "incidents", query=still_open, track_total_hits=True)
    # A closed incident still owes its final report (a month after handling ended), and
    # its deadlines are watched and escalated: its reports count here too.
    owing = {"bool": {"should": [still_open, {"exists": {"field": "pending"}}]}}
    soonest = _search(
        store,
        "incidents",
        query=owing,
        size=1,
        sort=[{"next_due": {"order": "asc", "missing": "_last", "unmapped_type": "date"}}],
        source=["next_due"],
    )
    first = next(iter(soonest["hits"]["hits"]), None)
    due = _time(first["_source"].get("next_due")) if first else None
    # Marked overdue by an agent's pass, or due before now: with no agent running (when
    # this matters most), nothing marks a deadline that passes meanwhile. The first 20
    # are enough to act on; `incidents list --all` shows them all.
    marked = _search(
        store, "incidents", query={"exists": {"field": "overdue"}}, size=20, source=False
    )
    passed = {"bool": {"filter": [owing, {"range": {"next_due": {"lt": now.isoformat()}}}]}}
    candidates = _search(store, "incidents", query=passed, size=20, source=True)
    late = [hit["_id"] for hit in marked["hits"]["hits"]]
    late += [
        hit["_id"]
        for hit in candidates["hits"]["hits"]
        if hit["_id"] not in late and _owes_before(hit["_source"], now)
    ]
    return Owed(
        open_incidents=int(opened["hits"]["total"]["value"]),
        next_due=(first["_id"], due) if first and due else None,
        overdue=late[:20],
    )


def _owes_before(doc: dict[str, Any], now: datetime) -> bool:
    """Whether a stored incident owes a report due before now, worked out again from its
    deadlines: a document saved by an earlier version kept an early warning's 24 h mark as
    `next_due` after the notification discharged it, a false overdue. One that does not
    read as an incident is kept, since a missed deadline must not go unsaid."""
    try:
        due = Incident.from_doc(doc).next_due()
    except ValidationError:
        return True
    return due is not None and due < now


def _search(store: Store, what: str, **request: Any) -> dict[str, Any]:
    """A search of one of the agent's indices; an index not made yet holds nothing."""
    request.setdefault("size", 0)
    try:
        return dict(store.es.search(index=store.index(what), **request))
    except ApiError as exc:
        if exc.meta.status == 404:
            return {"hits": {"total": {"value": 0}, "hits": []}}
        raise


def _time(text: Any) -> datetime | None:
    """The time an ISO 8601 string names, UTC when it gives no zone (as Elasticsearch reads
    it: compared with the aware clock, a naive one failed `status` with a TypeError)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _hours(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
