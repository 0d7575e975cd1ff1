"""Incremental reading of the configured indices.

Each poll opens a point in time over the source's index patterns and pages
through it with `search_after`, sorted by event time, each page bounded to a
time window (`paging`), from the watermark
(the newest event time already processed) minus the maximum lateness. Events
indexed late, with a time inside that margin, are still read; the cursor
remembers which of the events inside the margin were already processed, so
none is processed twice. An event older than the margin when it is indexed
is not seen: that is what `max_lateness` means. Only events some detector of the source
may take are asked for (`pushdown`); the detectors still filter them exactly.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, BadRequestError, Elasticsearch, NotFoundError

from nis2triage import datemath
from nis2triage.config import SourceConfig
from nis2triage.features import Match, getter
from nis2triage.logs import some
from nis2triage.paging import (
    PIT_KEEP_ALIVE,
    PageFit,
    TimeRange,
    pages,
    sort_clause,
)
from nis2triage.pushdown import Narrowing
from nis2triage.readahead import read_ahead
from nis2triage.records import Event, ms_to_datetime

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Cursor:
    """Where a source stands: the watermark and the events already seen inside the margin."""

    watermark_ms: int | None = None
    seen: dict[str, int] = field(default_factory=dict)
    events: int = 0
    # Events set aside (not handed on) and kept until a time of their own, the end of the
    # poll's range that read them: apart from `seen`, whose keys are in time order.
    held: dict[str, int] = field(default_factory=dict)

    def lower_bound_ms(self, lateness: timedelta) -> int | None:
        if self.watermark_ms is None:
            return None
        return self.watermark_ms - int(lateness.total_seconds() * 1000)

    def knows(self, key: str) -> bool:
        """Whether the event of `key` was read before, handed on or set aside."""
        return key in self.seen or key in self.held

    def mark(self, key: str, ts_ms: int) -> None:
        self.seen[key] = ts_ms
        self.events += 1
        if self.watermark_ms is None or ts_ms > self.watermark_ms:
            self.watermark_ms = ts_ms

    def hold(self, key: str, until_ms: int) -> None:
        """Remember an event set aside until `until_ms`, without moving the watermark.

        Kept apart from `seen`: dated past the events read after it, it stopped
        `prune_oldest` there, and every later key of a long catch-up stayed in the cursor
        (and in each checkpoint saved meanwhile)."""
        self.held[key] = until_ms

    def prune(self, lateness: timedelta) -> None:
        """Forget events that have fallen out of the lateness margin."""
        low = self.lower_bound_ms(lateness)
        if low is not None:
            self.seen = {k: t for k, t in self.seen.items() if t >= low}
            self.held = {k: t for k, t in self.held.items() if t >= low}

    def prune_oldest(self, lateness: timedelta) -> None:
        """Forget the oldest keys outside the margin, up to the first one inside it.

        Keys are kept in the order they were read, which within a poll is time order: this
        drops what `prune` would at the cost of what it drops, not of all that it keeps.
        A late event read out of order may stay until the next full `prune`.
        """
        low = self.lower_bound_ms(lateness)
        if low is None:
            return
        stale = []
        for key, ts_ms in self.seen.items():
            if ts_ms >= low:
                break
            stale.append(key)
        for key in stale:
            del self.seen[key]

    def to_dict(self) -> dict[str, Any]:
        """The cursor for the signed snapshot, its seen keys packed (see `pack_seen`).

        The held keys are saved after the seen ones, in the same list, with their count:
        an agent of an earlier version (a standby taking over during an upgrade) reads
        them as seen, as it kept them, rather than reading those events a second time."""
        held = {k: t for k, t in self.held.items() if k not in self.seen}
        return {
            "watermark_ms": self.watermark_ms,
            **_packed("seen", {**self.seen, **held}),
            "held_last": len(held),
            "events": self.events,
        }

    def summary(self) -> dict[str, Any]:
        """Where the source stands, for people reading the state document: the keys seen
        counted, not listed (the signed snapshot holds them, and after a burst inside the
        lateness margin a second copy of them was half of a checkpoint too large to save)."""
        return {
            "watermark_ms": self.watermark_ms,
            "seen_keys": len(self.seen) + len(self.held),
            "events": self.events,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Cursor:
        if not data:
            return cls()
        keys = _unpacked("seen", data)
        if "held_last" in data:
            seen, held = _split_last(keys, int(data["held_last"]))
        else:
            # Saved before `held`: such events are among the seen keys, out of time order.
            seen, held = _out_of_order(keys)
        return cls(
            watermark_ms=data.get("watermark_ms"),
            seen=seen,
            events=int(data.get("events") or 0),
            held=held,
        )


def _packed(name: str, keys: dict[str, int]) -> dict[str, Any]:
    packed = pack_seen(keys)
    return {name: keys} if packed is None else {f"{name}_packed": packed}


def _unpacked(name: str, data: dict[str, Any]) -> dict[str, int]:
    packed = data.get(f"{name}_packed")
    return unpack_seen(packed) if packed is not None else dict(data.get(name) or {})


def _split_last(keys: dict[str, int], count: int) -> tuple[dict[str, int], dict[str, int]]:
    """The keys but the last `count`, and those last ones."""
    if not 0 <= count <= len(keys):
        raise ValueError(f"{count} held keys among {len(keys)} saved")
    items = list(keys.items())
    return dict(items[: len(items) - count]), dict(items[len(items) - count :])


def _out_of_order(keys: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """The keys in time order, and those later than a key after them: in `seen`, such a
    key (an event set aside, kept to its poll's end) stopped `prune_oldest` there, and
    the next poll of an upgraded agent kept every key of its catch-up behind it."""
    later_min, ahead = None, set()
    for key, ts_ms in reversed(keys.items()):
        if later_min is not None and ts_ms > later_min:
            ahead.add(key)
        else:
            later_min = ts_ms
    in_order = {k: t for k, t in keys.items() if k not in ahead}
    return in_order, {k: t for k, t in keys.items() if k in ahead}


KEY_BYTES = 12


def event_key(index: str, doc_id: str) -> str:
    # Short and fixed-length, so the cursor stays small whatever the ids look like.
    return hashlib.blake2b(f"{index}\0{doc_id}".encode(), digest_size=KEY_BYTES).hexdigest()


def pack_seen(seen: dict[str, int]) -> tuple[bytes, bytes] | None:
    """The seen keys as their digests end to end and their times as 64-bit integers, or
    None when a key is not an `event_key`.

    A burst inside the lateness margin puts every one of its events in the cursor: pickled
    as a dict each took about 47 bytes of the checkpoint, packed 27, and the checkpoint is
    one request, which Elasticsearch caps (100 MB by default).
    """
    try:
        keys = b"".join(map(bytes.fromhex, seen))
    except ValueError:
        return None
    # Hex with spaces (or upper case) would not come back as the same key.
    if len(keys) != KEY_BYTES * len(seen) or sum(map(len, seen)) != 2 * len(keys):
        return None
    times = array("q", seen.values())
    if sys.byteorder == "big":
        times.byteswap()  # stored little-endian, whichever machine restores it
    return keys, times.tobytes()


def unpack_seen(packed: Any) -> dict[str, int]:
    """The seen keys `pack_seen` packed (ValueError if they do not fit together)."""
    keys, raw = packed
    times = array("q")
    times.frombytes(raw)
    if sys.byteorder == "big":
        times.byteswap()
    if len(keys) != KEY_BYTES * len(times):
        raise ValueError(f"{len(keys)} bytes of seen keys for {len(times)} times")
    return {keys[i * KEY_BYTES : (i + 1) * KEY_BYTES].hex(): t for i, t in enumerate(times)}


# Events dated further ahead than this are no clock running a little fast: said, at most
# once every FUTURE_CHECK_EVERY (`Source.say_future`).
FUTURE_SLACK = timedelta(days=1)
FUTURE_CHECK_EVERY = timedelta(hours=1)
# Documents without the time field are counted again, while the agent runs, at most this
# often (`Source.say_untimed_since`): each count is a search over the whole source.
UNTIMED_CHECK_EVERY = timedelta(hours=1)
# Events indexed after the reading margin passed their time are looked for at most this
# often (`Source.say_too_late`), by the ECS field the ingest pipelines set on arrival.
LATE_CHECK_EVERY = timedelta(minutes=10)
# The polls' beginnings kept between two looks, each a clause of the look's search.
LATE_MARKS = 64
INGESTED_FIELD = "event.ingested"


def _shown_time(extreme: dict[str, Any]) -> str:
    """A min or max aggregation's time as the node writes a date: it gives one for a date
    field only, and for a numeric one (read as epoch milliseconds) the number alone."""
    if extreme.get("value_as_string"):
        return str(extreme["value_as_string"])
    value = extreme.get("value")
    if not isinstance(value, int | float):
        return str(value)
    try:
        moment = datetime.fromtimestamp(value / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return f"{value} (epoch milliseconds)"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Unusable:
    """An event the source read but cannot hand on, and why."""

    index: str
    id: str
    reason: str


# Event times well inside what Python's datetime can hold (years 1 to 9999, with a day
# to spare for rounding): only times outside need the trial conversion below.
_SAFE_MS = (
    int(datetime(1, 1, 2, tzinfo=UTC).timestamp() * 1000),
    int(datetime(9999, 12, 30, tzinfo=UTC).timestamp() * 1000),
)


def _shape_problem(doc: Any, times: Any, cfg: SourceConfig) -> str | None:
    """Why a document cannot be an event although its time can, or None if it can be."""
    if type(doc) is not dict:
        return (
            "the document has no _source (its index's mapping disables it), so there is "
            "nothing to read"
        )
    if isinstance(times, list) and len(times) > 1:
        return (
            f"{cfg.time_field} holds {len(times)} times; an event needs one (fix the "
            "shipper's pipeline, or name another field in the source's time_field)"
        )
    return None


def _unrepresentable(ts_ms: int) -> str | None:
    """Why an event time near or past datetime's range cannot be one, or None if it can."""
    try:
        ms_to_datetime(ts_ms)
    except (ValueError, OverflowError, OSError) as exc:
        return f"event time {ts_ms} ms: {exc}"
    return None


# Field types the reads' range and sort take as epoch milliseconds (`_say_numeric_time`).
NUMERIC_TYPES = (
    "long", "integer", "short", "byte", "unsigned_long",
    "double", "float", "half_float", "scaled_float",
)  # fmt: skip


def _typed_otherwise(
    by_type: dict[str, Any], indices: list[str], allowed: tuple[str, ...]
) -> list[str]:
    """Of `indices`, those whose time field has a type outside `allowed`, from field_caps'
    answer `by_type`. The answer lists each type's indices only when the field has several
    types: with one, that type is every index's, and reading its list named none."""
    other = [kind for kind in by_type if kind not in allowed]
    if len(by_type) == 1:
        return sorted(indices) if other else []
    return sorted(i for kind in other for i in by_type[kind].get("indices") or [])


def index_names(items: Iterable[str]) -> list[str]:
    """Each name (pattern, exclusion) of `items`, one an item may hold several of (`a,b*`,
    as a rule's `index:` is written): asked about as one name, `a,b*` was covered whole by
    a role granting `a*`, while searches skipped b* without an error."""
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def unreadable(es: Elasticsearch, names: Sequence[str]) -> list[str]:
    """Which of `names` (patterns included) the credentials may not read; empty when the
    node cannot say (e.g. without security).

    Exclusions (`-logs-old*`), other clusters' names (`remote:logs-*`) and empty names
    are not asked about: the node would take them for local index names and say they
    cannot be read, when they name nothing this node's privileges cover. Nor are date
    math names (`<logs-{now/d}>`), which the privileges check does not resolve and so
    said unreadable under a role granting `logs-*`; one resolves to a single index, and
    a search denied on it fails aloud (403) rather than skipping it.
    """
    asked = [n for n in index_names(names) if not n.startswith(("-", "<")) and ":" not in n]
    if not asked:
        return []
    try:
        answer = es.security.has_privileges(index=[{"names": asked, "privileges": ["read"]}]).body
    except ApiError:
        return []
    rights = answer.get("index") or {}
    return [n for n in asked if not (rights.get(n) or {}).get("read", True)]


def _reason(refusal: ApiError) -> str:
    """The node's own words for a refusal (its first root cause), shortened."""
    body = refusal.body if isinstance(refusal.body, dict) else {}
    causes = (body.get("error") or {}).get("root_cause") or [{}]
    return str(causes[0].get("reason") or refusal.message)[:300]


# The refusals `Source.poll` can remedy: an index keeping no `_source`, one mapping the
# time field as no date.
READ_REMEDIES = 2


def _source_disabled(refusal: BadRequestError) -> bool:
    """Whether the node refused a page because some index keeps no `_source` while only
    some fields of it were asked for."""
    return "_source is disabled" in str(refusal)


@dataclass(frozen=True)
class Unread:
    """What of a source no read reaches, as last counted: its indices that map no date
    time field, and the documents of the others without one (the indices holding most)."""

    untimed_indices: list[str]
    without_time: int
    where: list[str]
    counted: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "untimed_indices": self.untimed_indices,
            "without_time": self.without_time,
            "without_time_in": self.where,
            "counted": self.counted.isoformat(),
        }


class Source:
    """Reads one configured source; yields batches of events not processed before.

    `filters` are those of the detectors reading the source, by detector: with the
    source's `push_filters`, the node is asked only for events one of them may take
    (`pushdown`). `fields` are the fields they read (`detectors.fields_read`): the node
    then sends only those of each document; None sends the whole documents. `features`
    are the fields each detector's features read (`detectors.feature_fields`), said when
    no index maps them, as the filters' are.
    """

    def __init__(
        self,
        es: Elasticsearch,
        cfg: SourceConfig,
        clock: Clock = utcnow,
        filters: Mapping[str, Match] | None = None,
        fields: Sequence[str] | None = None,
        features: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        self.es = es
        self.cfg = cfg
        self.clock = clock
        # The time field too: the source checks each event's time itself (`_shape_problem`).
        self.fields = None if fields is None else (cfg.time_field, *fields)
        own = json.dumps(cfg.query) if isinstance(cfg.query, dict) else cfg.query
        self.narrowing = Narrowing(cfg.name, filters or {}, own, features, cfg.push_filters)
        # This poll's share of the detectors' filters for the node (None: every event).
        self.narrowed: dict[str, Any] | None = None
        # Whether this stretch of polls that read nothing was looked into (and said, if
        # anything was wrong): once per stretch, not once per poll.
        self._looked_into_empty = False
        # When the last poll opened its point in time: everything indexed by then was read.
        self.read_until: datetime | None = None
        # Events read but unusable (a time Python cannot represent, several times, no
        # _source), for the dead letters.
        self.unusable: list[Unusable] = []
        # The upper end of the range the current poll reads (epoch ms).
        self._high_ms = 0
        # Pages of `batch_size` hits, fewer while the documents are large (`paging`).
        self.fit = PageFit(cfg.batch_size)
        # The closed indices the start found (`say_closed`), for the empty-poll message.
        self.closed: list[str] = []
        self._said_fit = False
        # Indices that map the time field as something other than a date (keyword, say):
        # the node refuses the sort and range over them, and with them the whole source's
        # search, so they are left out of every read (`leave_out_mistyped`).
        self.mistyped: list[str] = []
        # When events dated far ahead were last looked for, and how many were said.
        self._future_looked: datetime | None = None
        self._future_said = 0
        # The date math names said to be read back only in part (`datemath.MAX_STEPS`).
        self._said_cut: set[str] = set()
        # The indices the start found mapping no date time field (their documents are said
        # whole), when documents without a time were last counted, and how many were said.
        self._untimed: list[str] = []
        self._lacking_looked: datetime | None = None
        self._lacking_said = 0
        # What the last count found no read will reach, for the checkpoint (`status`).
        self.unread: Unread | None = None
        # When events indexed too late were last looked for, and when each poll since began
        # with the reading margin's lower bound it read from (`say_too_late`).
        self._late_looked: datetime | None = None
        self._late_marks: list[tuple[datetime, int | None]] = []

    def poll(self, cursor: Cursor) -> Iterator[list[Event]]:
        """Batches of new events in time order; `cursor` is advanced as each batch is yielded.

        A refusal caused by an index that maps the time field as no date (one made before
        its template, its times sent as epoch text) leaves that index out and reads again:
        the cursor skips what was read, and one such index no longer stops the source.
        So does an index keeping no `_source`, which the node refuses to send in part.
        """
        # One read, and one more per remedy: each applies once, so a poll that meets both
        # refusals (in either order) still reads, and a third refusal is not theirs.
        for attempt in range(READ_REMEDIES + 1):
            try:
                yield from self._poll_once(cursor)
                return
            except BadRequestError as exc:
                last = attempt == READ_REMEDIES
                if last or not (self._read_whole_documents(exc) or self.leave_out_mistyped()):
                    raise

    def _read_whole_documents(self, refusal: BadRequestError) -> bool:
        """Whether the refusal came from asking part of the documents of an index that keeps
        no `_source`: the node then refuses the whole page. Whole documents are read from
        then on (that index's events are set aside as having no source, as before)."""
        if self.fields is None or not _source_disabled(refusal):
            return False
        self.fields = None
        log.warning(
            "source %s: an index it reads keeps no _source, and the node then refuses to "
            "send only the fields the detectors read (%s); whole documents are read from "
            "now on, which costs more on large documents",
            self.cfg.name,
            _reason(refusal),
        )
        return True

    def _poll_once(self, cursor: Cursor) -> Iterator[list[Event]]:
        opened = self.clock()
        pit = self._open_pit(cursor)
        if pit is None:
            return
        self.read_until = opened
        self._mark_read_from(opened, cursor.lower_bound_ms(self.cfg.max_lateness))
        try:
            # After the point in time is open: every index it reads exists by now.
            self.narrow()
            try:
                yield from self._pages(pit, cursor)
            except BadRequestError as exc:
                # A refusal of the parts asked is `poll`'s to handle; one the source's own
                # query draws without the detectors' part is not the narrowing's fault.
                narrowed = self.narrowed is not None
                if _source_disabled(exc) or not narrowed or not self._own_ok(pit):
                    raise
                # The cursor skips what was read, and what the narrowed pages left out no
                # detector takes: reading on unnarrowed loses nothing.
                self.unnarrow(exc)
                yield from self._pages(pit, cursor)
        finally:
            self.es.options(ignore_status=404).close_point_in_time(id=pit)

    def _own_ok(self, pit: str) -> bool:
        """Whether the node accepts the source's page, sort and own query included, without
        the detectors' part: if not, a refusal is not the narrowing's fault (an index of
        the pattern maps the time field as text, say)."""
        own = self.filters()[:-1] if self.narrowed is not None else self.filters()
        try:
            self.es.search(
                pit={"id": pit, "keep_alive": PIT_KEEP_ALIVE},
                query={"bool": {"filter": list(own)}},
                sort=sort_clause(self.cfg.time_field),
                size=1,
                track_total_hits=False,
                allow_partial_search_results=False,  # as the pages: a shard's refusal counts
            )
        except BadRequestError:
            return False
        return True

    def _open_pit(self, cursor: Cursor) -> str | None:
        if set(self.cfg.indices) <= set(self.mistyped):
            # Every name is left out (said then): exclusions alone are no list to read.
            return None
        try:
            resp = self.es.open_point_in_time(
                index=self.expression(self._read_span(cursor)),
                keep_alive=PIT_KEEP_ALIVE,
                ignore_unavailable=True,
                allow_partial_search_results=False,
            )
        except NotFoundError:
            self._look_into_empty(None)
            return None
        return str(resp["id"])

    def expression(self, span: timedelta = timedelta(0)) -> str:
        """The index expression the reads use: the source's names, its mistyped indices
        left out (a name of them dropped, one a pattern matched excluded after it), each
        date math name also as it resolved over the `span` before now (`datemath`).

        An exclusion applies to the patterns before it only: a mistyped index that an
        alias of the source names is not left out, and its refusal stops the source as
        before (said as the node's 400)."""
        kept = [n for n in self.cfg.indices if n not in self.mistyped]
        names = datemath.expand(kept, span, f"source {self.cfg.name}", self._said_cut)
        return ",".join([*names, *(f"-{i}" for i in self.mistyped)])

    def _read_span(self, cursor: Cursor) -> timedelta:
        """How far back before now the next read goes (none on a first pass, which reads
        what the names resolve to now). The node resolves date math by its own clock, so
        the span runs to the real present, not to the agent's clock."""
        low_ms = cursor.lower_bound_ms(self.cfg.max_lateness)
        if low_ms is None:
            return timedelta(0)
        return max(utcnow() - datetime.fromtimestamp(low_ms / 1000, UTC), timedelta(0))

    def leave_out_mistyped(self) -> bool:
        """Leave out of the reads the indices that newly map the time field as no date,
        and say which; False when there is none (the refusal has another cause)."""
        found = [i for i in self._mistyped_indices() if i not in self.mistyped]
        if not found:
            return False
        self.mistyped = sorted({*self.mistyped, *found})
        log.warning(
            "source %s: %s %s %s as something other than a date, so the node refused every "
            "read of the source; left out from now on, so none of their events is read: map "
            "%s as date in their template (and reindex them), or leave them out of the "
            "source's indices",
            self.cfg.name,
            some(found),
            "maps" if len(found) == 1 else "map",
            self.cfg.time_field,
            self.cfg.time_field,
        )
        return True

    def _mistyped_indices(self) -> list[str]:
        """The indices of the source that map the time field, as something else than a
        date (an index that maps no such field yet is read: its first event maps it)."""
        caps = self._time_field_caps()
        if caps is None:
            return []  # the node would not say: the refusal is said as it is
        by_type, indices = caps
        # A number is read (as epoch milliseconds, said at start): not the refusal's cause.
        readable = ("date", "date_nanos", "unmapped", *NUMERIC_TYPES)
        return _typed_otherwise(by_type, indices, readable)

    def _time_field_caps(self) -> tuple[dict[str, Any], list[str]] | None:
        """How the source's indices map the time field, by type (field_caps' answer), and
        the indices asked about; None when the node would not say (a missing privilege)."""
        try:
            caps = self.es.field_caps(
                index=",".join(self.cfg.indices), fields=[self.cfg.time_field],
                include_unmapped=True, ignore_unavailable=True, allow_no_indices=True,
            ).body  # fmt: skip
        except ApiError:
            return None
        by_type = (caps.get("fields") or {}).get(self.cfg.time_field) or {}
        return by_type, list(caps.get("indices") or [])

    def say_future(self) -> None:
        """Say the events dated more than `FUTURE_SLACK` ahead: every read ends at the
        present, so they wait, judged by no detector and without a word, until their time
        (an event of year 2300, for good). Looked for at most once every
        `FUTURE_CHECK_EVERY`, said again only when there are more of them."""
        now = self.clock()
        if self._future_looked is not None and now - self._future_looked < FUTURE_CHECK_EVERY:
            return
        self._future_looked = now
        answer = self._ahead(int((now + FUTURE_SLACK).timestamp() * 1000))
        if answer is None:
            return
        count, said = int(answer["hits"]["total"]["value"]), self._future_said
        self._future_said = count
        if count <= said:
            return
        latest = _shown_time(answer["aggregations"]["latest"])
        where = [b["key"] for b in answer["aggregations"]["where"]["buckets"]]
        log.warning(
            "source %s: %s dated more than a day ahead (the latest %s, in %s): every read "
            "ends at the present, so no detector sees them before their time comes; fix the "
            "clock or the time parsing of the shipper that sends them",
            self.cfg.name,
            "1 event" if count == 1 else f"{count:,} events",
            latest,
            some(where),
        )

    def _mark_read_from(self, opened: datetime, low_ms: int | None) -> None:
        """Note that a poll began at `opened`, reading from `low_ms` on. Past
        `LATE_MARKS`, the two oldest gaps between polls are judged as one, by the lower of
        their bounds: an event is then not counted rather than counted wrongly."""
        marks = self._late_marks
        marks.append((opened, low_ms))
        if len(marks) > LATE_MARKS:
            (_, first), (second_at, second) = marks[1], marks[2]
            lows = [low for low in (first, second) if low is not None]
            marks[1:3] = [(second_at, min(lows) if lows else None)]

    def say_too_late(self) -> None:
        """Say the events that no poll read because each was dated before the reading
        margin's lower bound of the first poll that began after it was indexed (a shipper
        hours behind, a backlog replayed). Known by `event.ingested`, which Elastic's ingest
        pipelines set; events without it are not counted. Judged by the bound of each poll,
        not of the last look alone: a shipper 8 minutes behind with a margin of 5 lost 10
        events in 10 minutes, and 3 were said."""
        now = self.clock()
        if self._late_looked is not None and now - self._late_looked < LATE_CHECK_EVERY:
            return
        self._late_looked = now
        marks = self._late_marks
        # Events indexed after the last poll began are judged by the next one's bound.
        self._late_marks = marks[-1:]
        if len(marks) < 2:
            return
        since = marks[0][0]
        answer = self._indexed_too_late(marks)
        count = int(answer["hits"]["total"]["value"]) if answer else 0
        if not answer or not count:
            return
        oldest = _shown_time(answer["aggregations"]["oldest"])
        where = [b["key"] for b in answer["aggregations"]["where"]["buckets"]]
        log.warning(
            "source %s: %s indexed since %s %s dated before the reading margin had passed it "
            "(the oldest %s, in %s), so no poll reads it: its shipper sends later than "
            "max_lateness (%s) allows; raise max_lateness, and look at those events with "
            "`nis2triage replay`",
            self.cfg.name,
            "1 event" if count == 1 else f"{count:,} events",
            since.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "is" if count == 1 else "are",
            oldest,
            some(where),
            self.cfg.max_lateness,
        )

    def _indexed_too_late(self, marks: list[tuple[datetime, int | None]]) -> dict[str, Any] | None:
        gaps = []
        for (began, _), (then, low_ms) in itertools.pairwise(marks):
            if low_ms is None:
                continue  # that poll read every time: nothing indexed before it was missed
            arrived = {
                "range": {INGESTED_FIELD: {"gte": began.isoformat(), "lt": then.isoformat()}}
            }
            too_old = {"range": {self.cfg.time_field: {"lt": low_ms, "format": "epoch_millis"}}}
            gaps.append({"bool": {"filter": [arrived, too_old]}})
        if not gaps:
            return None
        missed = {"bool": {"should": gaps, "minimum_should_match": 1}}
        return self._counted([missed], "oldest", "events indexed too late")

    def _ahead(self, after_ms: int) -> dict[str, Any] | None:
        """How many events the source would read are dated after `after_ms`, the latest
        time among them and the indices holding them (None: the node would not say)."""
        ahead = {"range": {self.cfg.time_field: {"gt": after_ms, "format": "epoch_millis"}}}
        return self._counted([ahead], "latest", "events dated ahead")

    def _counted(
        self, conditions: list[dict[str, Any]], extreme: str, what: str
    ) -> dict[str, Any] | None:
        """How many events the source would read meet `conditions`, the `oldest` or
        `latest` time among them and the indices holding them (None: the node would not
        say, which is logged at DEBUG as `what` not looked for)."""
        stat = "min" if extreme == "oldest" else "max"
        try:
            # Advisory, as the start's counts: it must not hold up a poll.
            answer = self.es.options(request_timeout=10, max_retries=0).search(
                index=self.expression(), size=0, track_total_hits=True,
                query={"bool": {"filter": [*conditions, *self.filters()]}},
                aggs={
                    extreme: {stat: {"field": self.cfg.time_field}},
                    "where": {"terms": {"field": "_index", "size": 3}},
                },
                ignore_unavailable=True, allow_no_indices=True,
            ).body  # fmt: skip
        except (ApiError, TransportError) as exc:
            log.debug("source %s: %s not looked for: %s", self.cfg.name, what, exc)
            return None
        return dict(answer)

    def _look_into_empty(self, cursor: Cursor | None) -> None:
        """Say why a poll read nothing, when that is not just a quiet source: once per
        stretch of empty polls. An index name with a typo and an index the agent's
        credentials may not read look alike to a search (both are skipped without an
        error), so the node is asked what the names match and what the agent may read."""
        if self._looked_into_empty:
            return
        self._looked_into_empty = True
        names = ", ".join(self.cfg.indices)
        if self._matches_something() is not False:
            if cursor is None or cursor.watermark_ms is None:
                # A closed index's events are not "no events": say_closed named it at start.
                closed = f" in its open indices (closed: {some(self.closed)})"
                log.warning(
                    "source %s: %s holds no events%s%s; waiting for events",
                    self.cfg.name,
                    names,
                    closed if self.closed else "",
                    "" if self.narrowed is None else " that its detectors' filters may take",
                )
            return
        if self._may_read() is False:
            log.warning(
                "source %s: the agent's credentials may not read %s, so nothing is read: run "
                "`nis2triage setup` again (it gives the role and its API key the indices "
                "the configuration names), or give its role read on them",
                self.cfg.name,
                names,
            )
            return
        log.warning(
            "source %s: %s matches no index yet; waiting for events (if this lasts, check "
            "the index names in sources.indices)",
            self.cfg.name,
            names,
        )

    def _matches_something(self) -> bool | None:
        """Whether the source's names match an index, alias or data stream it may read
        (None: the node would not say)."""
        try:
            found = self.es.indices.resolve_index(
                name=",".join(self.cfg.indices), ignore_unavailable=True
            ).body
        except ApiError:
            return None
        return any(found.get(kind) for kind in ("indices", "aliases", "data_streams"))

    def unreadable(self) -> list[str]:
        """The source's names (patterns included) the agent's credentials may not read.

        Elasticsearch skips such a name in a search without an error, beside names it may
        read: the events there would go unread while the checkpoint moves past them.
        Empty when the node cannot say (e.g. without security)."""
        return unreadable(self.es, self.cfg.indices)

    def say_untimed(self) -> None:
        """Say what of the source no poll will ever read: indices that map no date field
        `time_field`, and documents without one. Every read is a range on that field, so
        these events were skipped without a word, a dead letter or a count."""
        untimed = self._holding_documents(self._indices_without_time())
        if untimed:
            log.warning(
                "source %s: no date field %s in %s, so none of their events is ever read: set "
                "the source's time_field to the field that holds their time, or leave them "
                "out of its indices",
                self.cfg.name,
                self.cfg.time_field,
                some(untimed),
            )
        self._untimed = untimed
        self._say_numeric_time()
        self._say_lacking_time()

    def _say_numeric_time(self) -> None:
        """Say the indices that map the time field as a number: the reads take them, their
        values as epoch milliseconds, which a time in seconds is not."""
        caps = self._time_field_caps()
        if caps is None:
            return
        by_type, indices = caps
        for kind in sorted(k for k in by_type if k in NUMERIC_TYPES):
            others = tuple(k for k in by_type if k != kind)
            numeric = self._holding_documents(_typed_otherwise(by_type, indices, others))
            if numeric:
                log.warning(
                    "source %s: %s %s %s as %s, not as a date: its values are read as epoch "
                    "milliseconds (a time in seconds would read as January 1970); map it as "
                    "date in the index template",
                    self.cfg.name,
                    some(numeric),
                    "maps" if len(numeric) == 1 else "map",
                    self.cfg.time_field,
                    kind,
                )

    def keep_notices(self, before: Source) -> None:
        """Take over what the source `before` (this one as a restore found it) counted and
        said of what no read reaches, so that a restore neither says it again nor counts
        the documents of untimed indices as documents without a time; whether it reads
        whole documents, and which indices it leaves out for their time field's type."""
        self._untimed, self.unread = before._untimed, before.unread
        self._lacking_looked, self._lacking_said = before._lacking_looked, before._lacking_said
        self._late_looked, self._late_marks = before._late_looked, before._late_marks
        self._said_cut = before._said_cut
        # An index keeping no _source, once found, would refuse the parts again; an index
        # mapping the time field as no date would refuse the reads again.
        if before.fields is None:
            self.fields = None
        self.mistyped = before.mistyped

    def say_untimed_since(self) -> None:
        """Say the documents without the time field that came since the last count: the
        start's count alone left those a shipper sent once the agent ran (a pipeline
        dropped, a field renamed) unread without a word until the next restart. Counted at
        most once every `UNTIMED_CHECK_EVERY`, said again only when there are more."""
        looked = self._lacking_looked
        if looked is not None and self.clock() - looked < UNTIMED_CHECK_EVERY:
            return
        self._say_lacking_time()

    def _say_lacking_time(self) -> None:
        self._lacking_looked = self.clock()
        found = self._without_time(self._untimed)
        if found is None:
            return
        (count, where), said = found, self._lacking_said
        self.unread = Unread(self._untimed, count, where, self._lacking_looked)
        self._lacking_said = count
        if count <= said:
            return
        log.warning(
            "source %s: %s without %s (in %s), never read since every read is by time: have "
            "the shipper or an ingest pipeline set it",
            self.cfg.name,
            "1 document" if count == 1 else f"{count:,} documents",
            self.cfg.time_field,
            some(where),
        )

    def query_refused(self) -> str | None:
        """Why the node refuses the source's own query (a Lucene slip, an unknown query
        type), or None: refused, it failed every poll with a 400 that named no source."""
        if self.cfg.query is None:
            return None
        try:
            self.es.options(request_timeout=10, max_retries=0).search(
                index=self.expression(), size=0, terminate_after=1, track_total_hits=False,
                query={"bool": {"filter": list(self.filters())}},
                ignore_unavailable=True, allow_no_indices=True,
            )  # fmt: skip
        except BadRequestError as exc:
            return _reason(exc)
        except (ApiError, TransportError):
            return None  # the node would not say: the polls will
        return None

    def say_unmatched(self) -> None:
        """Say the source's names that match nothing while its others do: a search skips
        such a name without an error (a typo, `logs-sytem.auth-*`), and the events of the
        others keep the source from ever reading as empty, so nothing else would say it.
        Exclusions and other clusters' names are not asked about (see `unreadable`)."""
        names = [n for n in index_names(self.cfg.indices) if not n.startswith("-") and ":" not in n]
        if len(names) < 2:
            return  # one name matching nothing is said by the empty polls
        matched = {n: self._matches(n) for n in names}
        unmatched = [n for n, found in matched.items() if found is False]
        if unmatched and any(matched.values()):
            log.warning(
                "source %s: %s %s no index, alias or data stream, while its other names do, "
                "so %s read as empty without an error: check the spelling in sources.indices "
                "(a name for indices yet to come is fine)",
                self.cfg.name,
                some(unmatched),
                "matches" if len(unmatched) == 1 else "match",
                "it is" if len(unmatched) == 1 else "they are",
            )

    def say_reading_own(self, prefix: str, alias: str | None) -> None:
        """Say when the source's names take in the agent's own indices (`<prefix>-*`) or
        its alerts' alias (`logs-nis2triage.alerts-default` is in `logs-*`, the usual
        pattern of Elastic Agent's logs): its alerts would come back as events, and a
        detector without a filter that leaves them out counts them."""
        try:
            found = self.es.indices.resolve_index(
                name=self.expression(), ignore_unavailable=True
            ).body
        except ApiError:
            return  # the node would not say
        indices = [i["name"] for i in found.get("indices") or []]
        own = [n for n in indices if n.startswith(f"{prefix}-")]
        aliased = [a["name"] for a in found.get("aliases") or [] if a["name"] == alias]
        exclude = [f"-{prefix}-*"] * bool(own) + [f"-{a}" for a in aliased]
        if exclude:
            log.warning(
                "source %s: its indices take in the agent's own %s, so its alerts come back "
                "as events for its detectors: add %s after its patterns in sources.indices",
                self.cfg.name,
                some([*aliased, *own]),
                " and ".join(repr(e) for e in exclude),
            )

    def _matches(self, name: str) -> bool | None:
        """Whether `name` matches an index, alias or data stream (None: the node would not
        say, a missing privilege say)."""
        try:
            found = self.es.indices.resolve_index(name=name, ignore_unavailable=True).body
        except ApiError:
            return None
        return any(found.get(kind) for kind in ("indices", "aliases", "data_streams"))

    def say_closed(self) -> None:
        """Say the source's closed indices: a search skips them without an error while the
        checkpoint moves past their time, so once reopened their events older than
        max_lateness are never read.

        Asked at start and at each poll, each index said once while it stays closed: one
        closed while the agent ran was skipped without a word."""
        try:
            found = self.es.indices.resolve_index(
                name=",".join(self.cfg.indices), expand_wildcards="open,closed",
                ignore_unavailable=True,
            ).body  # fmt: skip
        except ApiError:
            return  # the node would not say (a missing privilege, a remote cluster)
        closed = sorted(
            i["name"] for i in found.get("indices") or [] if "closed" in i.get("attributes", [])
        )
        newly = [name for name in closed if name not in self.closed]
        self.closed = closed
        if newly:
            log.warning(
                "source %s: %s %s closed, so none of their events is read; the checkpoint "
                "moves on, so events reopened later that are older than max_lateness are "
                "never read: open them (POST <index>/_open) at once, or leave them out of "
                "its indices",
                self.cfg.name,
                some(newly),
                "is" if len(newly) == 1 else "are",
            )

    def _indices_without_time(self) -> list[str]:
        caps = self._time_field_caps()
        if caps is None:
            return []  # the node would not say (a missing privilege): the reads will
        by_type, indices = caps
        if not by_type:
            return sorted(indices)  # no index maps the field at all
        return _typed_otherwise(by_type, indices, ("date", "date_nanos", *NUMERIC_TYPES))

    def _holding_documents(self, names: list[str]) -> list[str]:
        """Of the indices `names`, those holding a document: an index without one maps no
        field yet (its first event maps the time field), which says nothing of its events."""
        if not names:
            return []
        try:
            answer = self.es.search(
                index=",".join(self.cfg.indices), size=0,
                query={"terms": {"_index": names}},
                aggs={"held": {"terms": {"field": "_index", "size": len(names)}}},
                ignore_unavailable=True, allow_no_indices=True,
            ).body  # fmt: skip
        except ApiError:
            return names  # the node would not say: said as they are
        held = {b["key"] for b in answer["aggregations"]["held"]["buckets"]}
        return [n for n in names if n in held]

    def _without_time(self, untimed: list[str]) -> tuple[int, list[str]] | None:
        """How many documents lack the time field in the indices that map it (those of
        `untimed` are said whole), and the indices holding the most of them (None: the node
        would not say)."""
        lacking = [{"exists": {"field": self.cfg.time_field}}, {"terms": {"_index": untimed}}]
        try:
            # Advisory, and over a large pattern slow: it must not hold up a start or a poll.
            answer = self.es.options(request_timeout=10, max_retries=0).search(
                index=",".join(self.cfg.indices), size=0, track_total_hits=True,
                query={"bool": {"must_not": lacking}},
                aggs={"where": {"terms": {"field": "_index", "size": 3}}},
                ignore_unavailable=True, allow_no_indices=True,
            ).body  # fmt: skip
        except (ApiError, TransportError) as exc:
            log.debug("source %s: documents without a time not counted: %s", self.cfg.name, exc)
            return None
        # No aggregations at all when no index exists yet.
        buckets = (answer.get("aggregations") or {}).get("where", {}).get("buckets", [])
        return int(answer["hits"]["total"]["value"]), [b["key"] for b in buckets]

    def _may_read(self) -> bool | None:
        """Whether the agent's credentials hold `read` on every source name (None: the node
        cannot say, e.g. without security)."""
        try:
            answer = self.es.security.has_privileges(
                index=[{"names": list(self.cfg.indices), "privileges": ["read"]}]
            ).body
        except ApiError:
            return None
        return bool(answer.get("has_all_requested"))

    def narrow(self) -> None:
        """Work out the node's share of the detectors' filters for the reads that follow."""
        self.narrowed = self.narrowing.query(self.es, self.cfg.indices)

    def unnarrow(self, refusal: Exception) -> None:
        """The node refused the narrowed query (a limit of its own, say): read every event
        from now on, and say why once."""
        self.narrowing.refuse(str(refusal)[:500])
        self.narrowed = None

    def filters(self) -> tuple[dict[str, Any], ...]:
        """The queries an event must match to be read: the source's own, and the node's
        share of its detectors' filters (as of the last `narrow`)."""
        filters: tuple[dict[str, Any], ...] = ()
        if isinstance(self.cfg.query, str):
            filters = ({"query_string": {"query": self.cfg.query}},)
        elif isinstance(self.cfg.query, dict):
            filters = (self.cfg.query,)
        if self.narrowed is not None:
            filters = (*filters, self.narrowed)
        return filters

    def _span(self, cursor: Cursor) -> TimeRange:
        upper = self.read_until or self.clock()
        return TimeRange(
            time_field=self.cfg.time_field,
            low_ms=cursor.lower_bound_ms(self.cfg.max_lateness),
            high_ms=int(upper.timestamp() * 1000),
            filters=self.filters(),
            fields=self.fields,
        )

    def _pages(self, pit: str, cursor: Cursor) -> Iterator[list[Event]]:
        # Pages bounded in time as well (see `paging`): a catch-up over a backlog of N events
        # costs O(N), where paging over the whole remaining range cost O(N^2 / batch).
        # The next page is requested while the agent works on this one (`readahead`): the
        # node's search then runs beside the agent's features and models, not before them.
        total = 0
        span = self._span(cursor)
        self._high_ms = span.high_ms
        ahead = read_ahead(pages(self.es, pit, span, self.cfg.batch_size, self.fit))
        # Closed here, not when collected: the thread must be done before the point in
        # time is closed behind it.
        with closing(ahead):
            for page in ahead:
                batch = self._new_events(page.hits, cursor)
                # Hits come in time order, so a key behind the margin cannot come back in
                # this poll either: pruning per page keeps the cursor (saved with every
                # checkpoint) to the margin's events instead of every event of a long
                # catch-up poll. From the oldest end only: rebuilding the whole set per
                # page cost 2% of a 2-million-event catch-up (`make bench`).
                cursor.prune_oldest(self.cfg.max_lateness)
                total += len(batch)
                self._say_fit()
                if batch:
                    yield batch
        if total == 0:
            self._look_into_empty(cursor)
        else:
            self._looked_into_empty = False
        cursor.prune(self.cfg.max_lateness)

    def _say_fit(self) -> None:
        """Say once that pages hold fewer than `batch_size` events, and why: a rate lower
        than usual should not be a mystery."""
        if self._said_fit or self.fit.size >= self.cfg.batch_size:
            return
        self._said_fit = True
        log.info(
            "source %s: its documents are about %d kB each, so pages ask for %d of them "
            "rather than batch_size %d, to keep a page near %.1f MB in memory",
            self.cfg.name,
            self.fit.per_hit // 1024,
            self.fit.size,
            self.cfg.batch_size,
            self.fit.budget / 2**20,
        )

    def _new_events(self, hits: list[dict[str, Any]], cursor: Cursor) -> list[Event]:
        batch = []
        times_of = getter(self.cfg.time_field)
        for hit in hits:
            key = event_key(hit["_index"], hit["_id"])
            if cursor.knows(key):
                continue
            ts_ms = int(hit["sort"][0])
            problem = None if _SAFE_MS[0] < ts_ms < _SAFE_MS[1] else _unrepresentable(ts_ms)
            if problem is not None:
                # Elasticsearch stores dates before year 1 and after 9999; Python's datetime
                # cannot hold them. Set aside, never the new watermark, and seen to the end
                # of this poll's range: its sort key may be one of several times, the range
                # having matched it by another (see below), and pruned at once it would be
                # read again by every poll.
                cursor.hold(key, max(ts_ms, self._high_ms))
                self.unusable.append(Unusable(hit["_index"], hit["_id"], problem))
                continue
            doc: Any = hit.get("_source")  # a dict unless the index keeps no sources
            problem = _shape_problem(doc, times_of(doc) if type(doc) is dict else None, self.cfg)
            if problem is not None:
                # Seen until the end of this poll's range, not at the sort key: an event
                # with several times sorts by its earliest yet matches the range by any,
                # and would be read again by every poll (its key pruned at once).
                cursor.hold(key, max(ts_ms, self._high_ms))
                self.unusable.append(Unusable(hit["_index"], hit["_id"], problem))
                continue
            cursor.mark(key, ts_ms)
            batch.append(Event(hit["_index"], hit["_id"], ts_ms, doc))
        return batch

    def take_unusable(self) -> list[Unusable]:
        taken, self.unusable = self.unusable, []
        return taken
