"""`nis2triage replay`: detectors and rules over a past time range, as a backtest.

The detectors start from nothing (no saved model) and read the range in time
order, exactly as the agent would have read it live; rules run over the range
in steps. Nothing is written unless asked: the point is to see what a rule or
detector would have raised before it goes live.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from elasticsearch import ApiError, BadRequestError, Elasticsearch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from nis2triage import datemath
from nis2triage.config import AgentConfig
from nis2triage.detectors import Detector, DetectorSpec, Verdict, fields_read
from nis2triage.errors import PartialResultsError, RuleExecutionError
from nis2triage.features import Bucket
from nis2triage.records import Alert, Event, ms_to_datetime
from nis2triage.rules import engine
from nis2triage.rules.native import NativeRule
from nis2triage.rules.state import RuleState
from nis2triage.source import Cursor, Source

RULE_STEP = timedelta(hours=1)


class NearMiss(NamedTuple):
    """A bucket that did not alert, and how near it came: `score - bar`, highest first."""

    margin: float
    detector: str
    start: datetime
    entity: str
    score: float
    bar: float


class Watched(Detector):
    """A detector that keeps the `keep` buckets nearest to alerting that did not alert: a
    burst that went unnoticed shows its score beside the bar it missed (new-user run: a
    brute force scored 0.966 against 0.974, and nothing said so)."""

    watching = True

    def __init__(self, spec: DetectorSpec, keep: int) -> None:
        super().__init__(spec)
        self.keep = keep
        self.judged = 0
        self.near: list[NearMiss] = []  # a heap, the lowest margin first

    def _judged(self, entity: str, bucket: Bucket, verdict: Verdict) -> None:
        self.judged += 1
        if verdict.alerting:
            return
        start = ms_to_datetime(bucket.start_ms)
        miss = NearMiss(verdict.score - verdict.bar, self.spec.name, start, entity,
                        verdict.score, verdict.bar)  # fmt: skip
        if len(self.near) < self.keep:
            heapq.heappush(self.near, miss)
        elif miss.margin > self.near[0].margin:
            heapq.heapreplace(self.near, miss)


@dataclass
class ReplayResult:
    events: int = 0  # read
    in_range: int = 0  # in the range, read or not
    narrowed: bool = False  # whether the node was asked for fewer than all of them
    alerts: list[Alert] = field(default_factory=list)
    # Rules that could not run over the range, with why; the others' alerts still count.
    failed: dict[str, str] = field(default_factory=dict)
    detectors: int = 0  # how many were replayed: rules alone read no events here
    # Events read but set aside as unusable (several times, no _source...), which the live
    # agent dead-letters, and the first of them as "index/id: why".
    set_aside: int = 0
    first_set_aside: str | None = None
    # Events a detector failed on (the live agent dead-letters them with the detector's
    # name), and the first as "index/id: detector: why": the others judged them.
    failed_events: int = 0
    first_failed: str | None = None
    # With `--closest N`: the N buckets nearest to alerting that did not, nearest first.
    closest: list[NearMiss] = field(default_factory=list)

    def detector_failed(self, event: Event, exc: Exception, detector: str) -> None:
        self.failed_events += 1
        if self.first_failed is None:
            why = f"{type(exc).__name__}: {exc}"[:300]
            self.first_failed = f"{event.index}/{event.id}: {detector}: {why}"


def replay_sources(
    es: Elasticsearch, cfg: AgentConfig, specs: list[DetectorSpec], end: datetime
) -> dict[str, Source]:
    """A source for each configured one that a detector reads, with a clock stopped at
    `end`; made once, so that counting and reading share what each logs."""
    stopped = end - timedelta(milliseconds=1)
    sources = {}
    for src in cfg.sources:
        reading = [s for s in specs if s.source == src.name]
        if reading:
            filters = {s.name: s.filter for s in reading}
            fields = fields_read(reading)
            sources[src.name] = Source(es, src, lambda: stopped, filters, fields)
    return sources


def count_events(
    es: Elasticsearch, sources: dict[str, Source], start: datetime, end: datetime
) -> tuple[int, int]:
    """The events in the range of `sources`, and of them those the replay reads (the
    others no detector's filter takes, `pushdown`)."""
    in_range = to_read = 0
    for source in sources.values():
        src = source.cfg
        span = {"range": {src.time_field: {"gte": start.isoformat(), "lt": end.isoformat()}}}
        everything = _count(es, src.indices, [span, *source.filters()])
        in_range += everything
        source.narrow()
        try:
            to_read += _count(es, src.indices, [span, *source.filters()])
        except BadRequestError as exc:
            # The source's own query passed above: the narrowing is what the node refuses.
            if source.narrowed is None:
                raise
            source.unnarrow(exc)
            to_read += everything
    return in_range, to_read


def _count(es: Elasticsearch, indices: list[str], filters: list[dict[str, Any]]) -> int:
    query = {"bool": {"filter": filters}}
    return int(es.count(index=",".join(indices), query=query, ignore_unavailable=True)["count"])


def replay_detectors(
    sources: dict[str, Source],
    specs: list[DetectorSpec],
    start: datetime,
    end: datetime,
    advance: Callable[[int], None],
    make: Callable[[DetectorSpec], Detector] = Detector,
) -> ReplayResult:
    """The detectors of `specs` over [start, end) of their sources. An event one of them
    fails on is counted and said, as the agent dead-letters it: it stopped the replay."""
    result = ReplayResult()
    for name, source in sources.items():
        src = source.cfg
        detectors = [make(s) for s in specs if s.source == name]
        # A cursor whose lower bound is `start`.
        cursor = Cursor(watermark_ms=_ms(start) + int(src.max_lateness.total_seconds() * 1000))
        pattern = ",".join(src.indices)
        for batch in source.poll(cursor):
            _count_set_aside(source, result)
            for detector in detectors:
                detector.ingest_many(
                    batch, partial(result.detector_failed, detector=detector.spec.name)
                )
            advance(len(batch))
            result.events += len(batch)
            cutoff = (cursor.watermark_ms or 0) - int(src.max_lateness.total_seconds() * 1000)
            result.alerts += [a for d in detectors for a in d.close(cutoff, pattern)]
        # A last page of nothing but unusable events yields no batch.
        _count_set_aside(source, result)
        result.alerts += [a for d in detectors for a in d.close(_ms(end), pattern)]
        result.closest += [m for d in detectors if isinstance(d, Watched) for m in d.near]
    result.closest.sort(reverse=True)
    return result


def _count_set_aside(source: Source, result: ReplayResult) -> None:
    """Count what the source set aside: the live agent dead-letters these events, and a
    replay that dropped them silently counted them among those it judged."""
    unusable = source.take_unusable()
    if unusable and result.first_set_aside is None:
        first = unusable[0]
        result.first_set_aside = f"{first.index}/{first.id}: {first.reason}"
    result.set_aside += len(unusable)


def replay_rules(
    es: Elasticsearch,
    rules: list[NativeRule],
    start: datetime,
    end: datetime,
    advance: Callable[[int], None] = lambda _: None,
    failed: dict[str, str] | None = None,
) -> list[Alert]:
    """Each rule's alerts over the range, window after window. A rule the node refuses
    (or whose search some shards fail: an index of the pattern mapped otherwise) stops
    there, said in `failed`; the other rules go on, and the detectors' alerts stand."""
    alerts: list[Alert] = []
    for rule in rules:
        try:
            alerts += _one_rule(es, rule, start, end, advance)
        except (RuleExecutionError, PartialResultsError) as exc:
            if failed is None:
                raise
            # The agent's loop would try the window again; a replay has no next cycle.
            failed[rule.name] = str(exc).removesuffix("; the window is tried again next cycle")
    return alerts


def _one_rule(
    es: Elasticsearch,
    rule: NativeRule,
    start: datetime,
    end: datetime,
    advance: Callable[[int], None],
) -> list[Alert]:
    state = RuleState()
    alerts: list[Alert] = []
    window = _first_window(es, rule, start, end)
    advance(math.ceil((window - start) / RULE_STEP))  # the windows before: nothing to read
    while window < end:
        step_end = min(window + RULE_STEP, end)
        alerts += engine.run_rule(es, rule, window, step_end, state)
        advance(1)
        window = step_end
    return alerts


def _first_window(es: Elasticsearch, rule: NativeRule, start: datetime, end: datetime) -> datetime:
    """Where a rule's windows start: the window of the oldest event its indices hold, when
    later than `start` (`end` when they hold none). From `--from 1970-01-01` a rule ran
    half a million empty windows, hours of requests with nothing said, and a flatline
    rule without a query_key would have called each hour before any log a silence."""
    if any(datemath.is_date_math(n) for n in rule.index.split(",")):
        return start  # names resolved now tell nothing of the oldest event
    try:
        answer = es.search(
            index=rule.index, size=0, ignore_unavailable=True, allow_no_indices=True,
            aggs={"first": {"min": {"field": rule.timestamp_field}}},
        ).body  # fmt: skip
    except ApiError:
        return start  # the node would not say: the windows will, as before
    oldest = ((answer.get("aggregations") or {}).get("first") or {}).get("value")
    if oldest is None:
        return end
    # On the windows `start` sets, so that a replay's windows stay those it always ran.
    skipped = (ms_to_datetime(int(oldest)) - start) // RULE_STEP
    return min(end, start + max(skipped, 0) * RULE_STEP)


def rule_windows(rules: list[NativeRule], start: datetime, end: datetime) -> int:
    """How many windows `replay_rules` runs: a long range is many requests per rule."""
    return len(rules) * math.ceil((end - start) / RULE_STEP)


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def run_replay(
    es: Elasticsearch,
    cfg: AgentConfig,
    specs: list[DetectorSpec],
    rules: list[NativeRule],
    start: datetime,
    end: datetime,
    console: Console,
    closest: int = 0,
) -> ReplayResult:
    """Detectors and rules over [start, end); with `closest`, that many buckets nearest to
    alerting that did not are kept too."""
    sources = replay_sources(es, cfg, specs, end)
    in_range, to_read = count_events(es, sources, start, end)
    make = partial(Watched, keep=closest) if closest else Detector
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying events", total=to_read or None)
        advance = partial(progress.advance, task)
        result = replay_detectors(sources, specs, start, end, advance, make)
        result.closest = result.closest[:closest]
        result.in_range, result.narrowed = in_range, to_read != in_range
        result.detectors = len(specs)
        if rules:
            windows = rule_windows(rules, start, end)
            task = progress.add_task(f"rules, {windows} windows of an hour", total=windows)
            result.alerts += replay_rules(
                es, rules, start, end, partial(progress.advance, task), result.failed
            )
    return result


def summary(result: ReplayResult, console: Console) -> None:
    per_day: Counter[tuple[str, str]] = Counter(
        (a.name, a.timestamp.date().isoformat()) for a in result.alerts
    )
    if result.narrowed:
        # Two counts that differ: say which is which, on a line of its own (a table's
        # title wraps at the table's width).
        console.print(
            f"{result.in_range} events in the range; the agent read {result.events} of them, "
            "those a detector's filter may take"
        )
    # Rules count in Elasticsearch and read no events here: "from 0 events" would mislead.
    title = f"{len(result.alerts)} alerts"
    if result.detectors:
        title += f" from {result.in_range} events in the range"
    table = Table(title=title)
    for column in ("detector or rule", "day (UTC)", "alerts"):
        table.add_column(column)
    for (name, day), n in sorted(per_day.items()):
        table.add_row(name, day, str(n))
    console.print(table)
    top = Counter((a.entity_field, a.entity) for a in result.alerts).most_common(10)
    entities = Table(title="top entities")
    for column in ("field", "entity", "alerts"):
        entities.add_column(column)
    for (field_name, entity), n in top:
        entities.add_row(field_name, entity, str(n))
    console.print(entities)
    if result.closest:
        console.print(near_misses(result.closest))
    for name, why in result.failed.items():
        console.print(f"rule {name} could not run over the range, its alerts are missing: {why}")
    if result.failed_events:
        events = "event" if result.failed_events == 1 else "events"
        console.print(
            f"{result.failed_events} {events} a detector failed on (the first: "
            f"{result.first_failed}); the agent dead-letters them, the other detectors "
            "judged them"
        )
    if result.set_aside:
        events = "event" if result.set_aside == 1 else "events"
        console.print(
            f"{result.set_aside} {events} set aside, unusable (the first: "
            f"{result.first_set_aside}); the agent dead-letters them, no detector judged them"
        )


def near_misses(closest: list[NearMiss]) -> Table:
    """The buckets nearest to alerting that did not, with the bar each missed."""
    table = Table(title=f"{len(closest)} buckets nearest to alerting that did not alert")
    # Folded, never cut: an address cut short names no one.
    table.add_column("detector", overflow="fold")
    table.add_column("window (UTC)")
    table.add_column("entity", overflow="fold")
    for column in ("score", "bar", "missed by"):
        table.add_column(column, no_wrap=True)
    for miss in closest:
        # Above the bar without alerting: only during the detector's warm-up.
        missed = f"{abs(miss.margin):.3f}" if miss.margin <= 0 else "warm-up"
        table.add_row(
            miss.detector, miss.start.strftime("%Y-%m-%d %H:%M"), miss.entity,
            f"{miss.score:.3f}", f"{miss.bar:.3f}", missed,
        )  # fmt: skip
    return table
