"""The agent loop: fetch, featurise, score, learn, write, triage, notify, save.

One cycle reads each source from its checkpoint, feeds the events to the
detectors of that source, closes the buckets no late event can still reach,
writes the alerts they produce, routes them, queues what must be reported and
saves the checkpoint together with the models, so a restart resumes exactly
where the last save left off.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from nis2triage import assetcheck, contain, snapshots, triage, yamlload
from nis2triage.assets import Asset, Inventory, load_inventory
from nis2triage.checkpoints import StateNamed, StateWriter, largest_rules, mb
from nis2triage.config import AgentConfig, SourceConfig
from nis2triage.detector_process import DetectorProcess
from nis2triage.detectors import (
    Detector,
    DetectorSpec,
    feature_fields,
    fields_read,
    load_specs,
)
from nis2triage.errors import ConfigError, LeaseLost, SnapshotError, StoreError
from nis2triage.faults import crash_point
from nis2triage.incidents.flow import IncidentFlow
from nis2triage.lease import Holder, Lease
from nis2triage.logs import some
from nis2triage.notify import build
from nis2triage.notify.outbox import Outbox
from nis2triage.records import Alert, Event, stable_id
from nis2triage.reports.stages import cli_name
from nis2triage.rulerunner import RuleRunner, load_native, load_sigma
from nis2triage.rules.alerts import plural
from nis2triage.rules.lookalike import skeleton
from nis2triage.rules.native import NativeRule
from nis2triage.snapshots import SnapshotTooLarge
from nis2triage.source import Cursor, Source, unreadable
from nis2triage.store import (
    Store,
    alert_document,
    describe_block,
    describe_closed,
    first_cause,
)

log = logging.getLogger(__name__)
# A long poll checkpoints after this many batches, once this much time has passed since
# its last checkpoint: each is a signed snapshot of every model (about 1.6 MB for the
# shipped detectors on the bench's day), and one every 50 batches took 27 of them and 7 s
# of a 2-million-event catch-up (`make bench`). A crash replays at most that much work.
SAVE_EVERY_BATCHES = 50
SAVE_EVERY_SECONDS = 10.0
# How far back reports made in dry-run are looked for at a start in send mode: a month,
# the longest NIS2 deadline (the final report).
DRY_RUN_HORIZON = timedelta(days=31)
RULES_STATE_ID = "rules"
# Alerts handled between two checks of the lease (see `Agent.handle_alerts`).
ALERTS_PER_LEASE_CHECK = 1000


def utcnow() -> datetime:
    return datetime.now(UTC)


def lease_ttl(cfg: AgentConfig) -> timedelta:
    """How long the lease holds without renewal: a standby agent waits this long at most
    after the holder died on another host. Four polls, four delivery deadlines (the lease
    is renewed before each send, and a send may take up to its deadline), at least 2 min."""
    longest = max(s.poll_interval for s in cfg.sources)
    # The e-mail channel has a deadline of its own, which can be the longer one.
    smtp = cfg.incidents.smtp.deadline if cfg.incidents.smtp is not None else timedelta(0)
    return max(timedelta(minutes=2), 4 * longest, 4 * cfg.notifier.deadline, 4 * smtp)


def check_names_apart(
    cfg: AgentConfig, specs: list[DetectorSpec], native: Sequence[NativeRule]
) -> None:
    """No native rule has a detector's name, or one that looks like it (`lookalike`): an
    alert carries its name alone (`rule.name`), so triage's `names:` and Kibana took the
    one's alerts for the other's. ConfigError naming the rule and the detector's file."""
    # The specs are those of `cfg.detector_files()`, in that order.
    by_look = {
        skeleton(s.name): (s.name, p) for s, p in zip(specs, cfg.detector_files(), strict=True)
    }
    for rule in native:
        found = by_look.get(skeleton(rule.name))
        if found is not None:
            name, path = found
            alike = "" if name == rule.name else f" (it looks like {name!r})"
            raise ConfigError(
                f"native rule {rule.name!r} has the name of the detector in {path}{alike}: "
                "an alert carries its name alone, so triage routes and Kibana would take the "
                "one's alerts for the other's; give the rule a name of its own"
            )


def check_sources(cfg: AgentConfig, specs: list[DetectorSpec]) -> None:
    """Every detector reads a source the configuration defines (ConfigError otherwise,
    naming the detector's file and its `source:` line)."""
    names = [s.name for s in cfg.sources]
    # The specs are those of `cfg.detector_files()`, in that order.
    for spec, path in zip(specs, cfg.detector_files(), strict=True):
        if spec.source not in names:
            raise yamlload.load_file(path).error(
                ("source",),
                f"detector {spec.name}: source {spec.source!r} is not configured "
                f"({', '.join(names)}): set `source:` to one of them, or add the source "
                "to the configuration",
            )


def check_processes(
    cfg: AgentConfig, specs: list[DetectorSpec], located: yamlload.Located | None = None
) -> None:
    """Every detector named in detector_processes is one the configuration loads; with the
    configuration's `located` file, the error names its line."""
    loaded = {spec.name for spec in specs}
    names = cfg.detector_processes
    twice = sorted({n for n in names if names.count(n) > 1})
    unknown = [name for name in names if name not in loaded]
    if twice:
        message = (
            f"{', '.join(map(repr, twice))} listed more than once; each named detector runs "
            "in one process of its own, so list it once"
        )
        raise _processes_error(located, names.index(twice[0]), message)
    if unknown:
        message = (
            f"no loaded detector is named {', '.join(map(repr, unknown))}; the loaded ones "
            f"are {', '.join(sorted(loaded)) or 'none'} (the `name:` in each detector file)"
        )
        raise _processes_error(located, names.index(unknown[0]), message)


def _processes_error(located: yamlload.Located | None, index: int, message: str) -> ConfigError:
    if located is None:
        return ConfigError(f"detector_processes: {message}")
    return located.error(("detector_processes", index), message)


def spec_fingerprint(spec: DetectorSpec) -> str:
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


@dataclass
class CycleReport:
    events: int = 0
    alerts: list[Alert] = field(default_factory=list)
    routes: Counter[str] = field(default_factory=Counter)
    new_alerts: int = 0
    notifications_queued: int = 0
    notifications_sent: int = 0
    # Written by the manual channel for a person to submit: not sent until they do.
    notifications_handed_over: int = 0
    # Deliveries that did not go through this cycle: retried later, or given up (failed).
    notifications_unsent: int = 0
    dead_letters: int = 0


@dataclass
class SourceRun:
    """A source with its detectors and where it stands."""

    cfg: SourceConfig
    source: Source
    detectors: list[Detector | DetectorProcess]
    cursor: Cursor

    def processes(self) -> list[DetectorProcess]:
        return [d for d in self.detectors if isinstance(d, DetectorProcess)]

    def models(self) -> list[Detector]:
        """The detectors as a checkpoint saves them: those in processes copied from there."""
        return [d.detector() if isinstance(d, DetectorProcess) else d for d in self.detectors]


class Agent:
    def __init__(
        self,
        cfg: AgentConfig,
        es: Elasticsearch,
        snapshot_key: bytes,
        pseudonym_key: bytes | None,
        clock: Callable[[], datetime] = utcnow,
        token: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.es = es
        self.clock = clock
        self.snapshot_key = snapshot_key
        self.store = Store(es, cfg.state.index_prefix)
        self.inventory: Inventory = load_inventory(cfg.resolve(cfg.assets) if cfg.assets else None)
        self.rules = triage.load_rules(cfg.resolve(cfg.triage) if cfg.triage else None)
        self.notifier = build.notifier(cfg, self.store, pseudonym_key, clock)
        self.incidents = IncidentFlow(cfg, self.store, self.notifier, clock)
        channels = build.channels(cfg, token, self.incidents.soc)
        self.outbox = Outbox(self.store, channels, cfg.notifier.max_attempts)
        self.stopping = False
        self.specs: list[DetectorSpec] = []
        self.runs: list[SourceRun] = []
        # Conditions already reported during the current outage (cleared on recovery).
        self.conditions: set[str] = set()
        self.rules_runner: RuleRunner | None = None
        self.lease = Lease(self.store, lease_ttl(cfg), clock)
        # True once the loop runs under the lease: checkpoints and sends check it first.
        self.leased = False
        # Set when this agent (re)gains the lease: its state is read again first.
        self.resume = False
        self.said_standby = False
        self.resumed_from: dict[str, str] = {}
        self.outbox.may_send = self._still_leading
        self.outbox.keep_going = lambda: not self.stopping
        # Checkpoints and the rules' state, each one request under the node's size limit.
        self.states = StateWriter(self.store, self._keep_lease)

    # --- start -------------------------------------------------------------

    def start(self) -> None:
        """Create the agent's indices, load the detectors and restore each source's state."""
        self.store.ensure_indices()
        self.states.read_limit()
        specs = load_specs(self.cfg.detector_files())
        unmatched = [
            (key, pattern)
            for key, pattern in self.cfg.missing_files()
            if key in ("detectors", "rules.native", "rules.sigma")
        ]
        said = [f"{key}: no file matches {pattern}" for key, pattern in unmatched]
        said += [f"{key}: no rule file in {path}" for key, path in self.cfg.empty_rule_folders()]
        if said:
            # Running on would move the checkpoint past events no detector has seen, or
            # leave a misspelt rule folder blind with one line at INFO.
            raise ConfigError(
                f"{'; '.join(said)} (paths are relative to the configuration's folder)"
            )
        check_sources(self.cfg, specs)
        check_processes(self.cfg, specs)
        self.specs = specs
        native = load_native(self.cfg)
        check_names_apart(self.cfg, specs, native)
        self.rules_runner = RuleRunner(
            self.es, self.cfg.rules, native, load_sigma(self.cfg), self.clock
        )
        log.info(
            "loaded: %s, %s", plural(len(specs), "detector"), plural(len(native), "native rule")
        )
        if not specs and not self.rules_runner.names():
            # Runs, reads and checkpoints, yet judges nothing: surely not what was meant.
            log.warning(
                "no detector and no rule is loaded: the agent reads its sources and raises "
                "no alert; give `detectors:` patterns or `rules.native` / `rules.sigma` "
                "paths in the configuration"
            )
        # A route naming no loaded rule or detector never holds: said, not refused, since a
        # Sigma folder may lose a rule the routes still name.
        triage.unknown_names(self.rules, [*(s.name for s in specs), *self.rules_runner.names()])
        self.restore_all()
        self._check_reading()
        self._say_what_start_found()

    def _say_what_start_found(self) -> None:
        """What would go wrong without a word, said once at start: events no read reaches
        (closed or untimed indices), inventory entries no event names, reports left in
        dry-run."""
        state = self.cfg.state
        for run in self.runs:
            run.source.say_unmatched()
            run.source.say_reading_own(state.index_prefix, state.security_alias)
            run.source.say_closed()
            run.source.say_untimed()
        self._say_unseen_assets()
        if self.cfg.notifier.mode == "send":
            self._say_dry_runs()

    def _say_dry_runs(self) -> None:
        """Reports made while the notifier was in dry-run stay unsent after the switch to
        send (a trial's incidents must not reach the CCB by themselves): say so, with the
        command that sends one."""
        made = self.incidents.reporter.unsent_dry_runs(self.clock() - DRY_RUN_HORIZON)
        if made:
            first = made[0]
            # Every incident named, not only the first: each needs its own decision to send.
            incidents = list(dict.fromkeys(str(e.get("incident_id", ""))[:12] for e in made))
            log.warning(
                "%d reports of the last %d days were made in dry-run and are not sent by "
                "themselves now that notifier.mode is send; send one with `nis2triage "
                "incidents report %s %s -c %s` (first made %s); their "
                "incidents: %s",
                len(made),
                DRY_RUN_HORIZON.days,
                first.get("incident_id"),
                _stage_arguments(str(first.get("stage", ""))),
                self.cfg.file_argument,
                first.get("created"),
                some(incidents),
            )

    def _check_reading(self) -> None:
        """Refuse to start when a source or rule names an index the credentials may not
        read: it would be skipped without a word while the checkpoint (or the rule's
        window) moved past its events."""
        for run in self.runs:
            self._refuse_unreadable(f"source {run.cfg.name}", run.source.unreadable())
            refused = run.source.query_refused()
            if refused is not None:
                raise ConfigError(
                    f"source {run.cfg.name}: Elasticsearch refuses its query ({refused}): "
                    "correct the source's query in sources (Lucene query syntax, or one query "
                    "DSL clause such as {term: {event.outcome: failure}})"
                )
        by_rule = self.rules_runner.indices() if self.rules_runner is not None else []
        names = sorted({n for _, patterns in by_rule for n in patterns})
        denied = set(unreadable(self.es, names)) if names else set()
        for rule, patterns in by_rule:
            self._refuse_unreadable(f"rule {rule!r}", [n for n in patterns if n in denied])

    def _say_unseen_assets(self) -> None:
        """Warn about inventory assets no recent event names (most likely a typo in the
        inventory, which would keep their alerts off the routes their criticality sets)."""
        readers = [
            assetcheck.Reader(r.cfg.name, r.cfg.indices, r.cfg.time_field, r.source.filters())
            for r in self.runs
        ]
        try:
            missing = assetcheck.unseen(self.es, readers, self.inventory)
        except ApiError as exc:
            # A check, not a step the agent needs: it starts without it.
            log.info("the inventory check was refused (%s: %s); skipped", exc.meta.status, exc)
            return
        except TransportError as exc:
            # A large inventory over busy indices can outlast the request timeout: that
            # must not stop the start ("Elasticsearch cannot be reached") every time.
            log.info(
                "the inventory check did not finish (%s); skipped: it looks for %d assets "
                "in one request, which elasticsearch.request_timeout (%g s) did not allow",
                type(exc).__name__,
                len(self.inventory.assets),
                self.cfg.elasticsearch.request_timeout.total_seconds(),
            )
            return
        assetcheck.say_unseen(missing, readers)

    @staticmethod
    def _refuse_unreadable(what: str, names: list[str]) -> None:
        if names:
            raise ConfigError(
                f"{what}: the agent's credentials may not read {', '.join(names)}: run "
                "`nis2triage setup` again with an administrator's credential (it gives the "
                "role and its API key the indices the configuration names), or give its "
                "role read on them"
            )

    def restore_all(self) -> None:
        """(Re)build every source's run from its last saved checkpoint and models."""
        before = {run.cfg.name: run.source for run in self.runs}
        # Their state since the checkpoint is what a restore drops.
        self.stop_processes()
        self.runs = [
            self._restore(src, [s for s in self.specs if s.source == src.name])
            for src in self.cfg.sources
        ]
        for run in self.runs:
            if run.cfg.name in before:
                # What the start found and said stays said: taking the lease restores again.
                run.source.keep_notices(before[run.cfg.name])
        if self.rules_runner is not None:
            self._restore_rules(self.rules_runner)

    def _restore_rules(self, runner: RuleRunner) -> None:
        saved = self.states.read(RULES_STATE_ID)
        try:
            runner.restore(saved.get("rules") if saved else None)
        except SnapshotError as exc:
            index = self.store.index("state")
            raise SnapshotError(
                f"the rules' saved state cannot be read: {exc} (that document: "
                f"{RULES_STATE_ID} in {index}; deleting it starts every rule again from its "
                f"initial lookback: {self._delete_command(index, RULES_STATE_ID)})"
            ) from exc

    def _delete_command(self, index: str, doc_id: str) -> str:
        """The request that deletes one state document, on the configured node; an
        administrator's, since the agent's role need not delete its state."""
        host = self.cfg.elasticsearch.hosts[0].rstrip("/")
        return f"curl -u <administrator> -X DELETE '{host}/{index}/_doc/{doc_id}'"

    def _state_id(self, src: SourceConfig) -> str:
        return f"source-{src.name}"

    def _restore(self, src: SourceConfig, specs: list[DetectorSpec]) -> SourceRun:
        saved = self.states.read(self._state_id(src))
        cursor, models = Cursor(), dict[str, Any]()
        if saved:
            if not saved.get("snapshot"):
                raise SnapshotError(
                    f"the state of source {src.name} has no signed snapshot; delete the "
                    f"document {self._state_id(src)} of {self.store.index('state')} to start "
                    "afresh"
                )
            try:
                cursor, models = _unpack(snapshots.unseal(saved["snapshot"], self.snapshot_key))
            except SnapshotError as exc:
                index, doc_id = self.store.index("state"), self._state_id(src)
                raise SnapshotError(
                    f"source {src.name}: {exc} (that document: {doc_id} in {index}; deleting "
                    f"it: {self._delete_command(index, doc_id)})"
                ) from exc
        detectors: list[Detector | DetectorProcess] = []
        for spec in specs:
            detector = self._detector(spec, models)
            detector.time_field = src.time_field
            if spec.name in self.cfg.detector_processes:
                detectors.append(DetectorProcess(detector, src.name, lambda: self.stopping))
            else:
                detectors.append(detector)
        if saved:
            self._say_resumed(src.name, str(saved.get("updated", "?")), detectors)
        else:
            self._say_fresh(src.name, detectors)
        filters = {d.spec.name: d.spec.filter for d in detectors}
        features = {spec.name: feature_fields(spec) for spec in specs}
        source = Source(self.es, src, self.clock, filters, fields_read(specs), features)
        return SourceRun(src, source, detectors, cursor)

    def _say_resumed(
        self, source: str, updated: str, detectors: list[Detector | DetectorProcess]
    ) -> None:
        # The loop restores again when it takes the lease, right after start: one line per
        # checkpoint, not one per restore.
        if self.resumed_from.get(source) == updated:
            return
        self.resumed_from[source] = updated
        log.info(
            "source %s resumes from its checkpoint of %s (%s)",
            source,
            updated,
            _detectors(detectors),
        )

    def _say_fresh(self, source: str, detectors: list[Detector | DetectorProcess]) -> None:
        # With no checkpoint a source has no lower bound: its first pass reads every event its
        # indices hold, however old. Said because on a cluster with months of logs that pass
        # is long, and an incident it opens on an old event is aware (its clocks run) from now.
        if self.resumed_from.get(source) == "":
            return
        self.resumed_from[source] = ""
        log.info(
            "source %s has no checkpoint: its first pass reads every event its indices hold, "
            "from the oldest (%s)",
            source,
            _detectors(detectors),
        )

    def _detector(self, spec: DetectorSpec, models: dict[str, Any]) -> Detector:
        saved = models.get(spec.name)
        if saved is None:
            return Detector(spec)
        fingerprint, detector = saved
        if fingerprint != spec_fingerprint(spec):
            log.warning(
                "detector %s changed since its snapshot; it starts learning afresh", spec.name
            )
            return Detector(spec)
        if not isinstance(detector, Detector):
            raise SnapshotError(f"snapshot for {spec.name} does not hold a detector")
        return detector

    # --- one cycle ---------------------------------------------------------

    def run_once(self) -> CycleReport:
        report = CycleReport()
        try:
            for run in self.runs:
                self._cycle(run, report)
                if self.stopping:
                    break
            if self.rules_runner and not self.stopping:
                self._run_rules_then_deliver(self.rules_runner, report)
        except SnapshotTooLarge:
            # The alerts are written before the checkpoint that cannot be, and their reports
            # queued: the agent stops until a cap is lowered, and every restart stops there
            # again, so without this an early warning would wait, unsent and unescalated,
            # for that fix.
            self._deliver(report)
            raise
        self._deliver(report)
        return report

    def _run_rules_then_deliver(self, runner: RuleRunner, report: CycleReport) -> None:
        """The rules, and delivery even when they fail for all rules at once.

        The sources' alerts are written and their reports queued by now. A condition the
        rules wait out can last: a 403 on an index an alias brings into a rule's pattern
        (another agent's alerts under a shared Elastic Security alias) fails every cycle,
        and without this no report would be sent, nor any deadline escalated, meanwhile."""
        try:
            self._run_rules(runner, report)
        except OUTAGES:
            try:
                self._deliver(report)
            except OUTAGES as exc:
                # The node itself is out: the rules' failure is the one to report.
                log.debug("delivery after the rules failed did not run either: %s", exc)
            raise

    def _deliver(self, report: CycleReport) -> None:
        """Send what is due, then check the incidents' deadlines."""
        delivered = self.outbox.deliver_due(self.clock())
        report.notifications_sent += delivered.sent
        report.notifications_handed_over += delivered.handed_over
        report.notifications_unsent += delivered.retrying + delivered.failed
        if self.outbox.halted:
            raise LeaseLost("another agent took over the state prefix while this one delivered")
        # After delivery, so a report confirmed just now is not escalated as missing.
        self.incidents.cycle(self.clock())

    def _cycle(self, run: SourceRun, report: CycleReport) -> None:
        lateness_ms = int(run.cfg.max_lateness.total_seconds() * 1000)
        saved = time.monotonic()
        # Alerts are written in one request before each checkpoint rather than after every
        # batch that closed buckets: each write asks for a refresh, and a catch-up made a
        # hundred of them (`make bench`). A live poll's alerts still go out as it ends.
        pending: list[Alert] = []
        # Before the read that would skip it: an index closed since the last poll.
        run.source.say_closed()
        for batches, batch in enumerate(run.source.poll(run.cursor), start=1):
            self._ingest(run, batch, report)
            report.events += len(batch)
            # Buckets that end before watermark - lateness can receive no more events.
            pending += self._close(run, (run.cursor.watermark_ms or 0) - lateness_ms, report)
            if batches % SAVE_EVERY_BATCHES == 0 and time.monotonic() - saved >= SAVE_EVERY_SECONDS:
                pending += self._settle(run, report)
                self._write_alerts(pending, report)
                pending = []
                self._save(run)
                saved = time.monotonic()
            if self.stopping:
                break
        else:
            # Everything indexed when the poll began is read: buckets ending before that
            # moment minus the lateness can receive no more events.
            if run.source.read_until is not None:
                read_until_ms = int(run.source.read_until.timestamp() * 1000)
                pending += self._close(run, read_until_ms - lateness_ms, report)
        run.source.say_future()
        run.source.say_untimed_since()
        run.source.say_too_late()
        # A page of nothing but unusable events yields no batch: set those aside before the
        # checkpoint marks them read.
        self._ingest(run, [], report)
        pending += self._settle(run, report)
        self._write_alerts(pending, report)
        self._save(run)

    def _ingest(self, run: SourceRun, batch: list[Event], report: CycleReport) -> None:
        dead = [
            # Named by the source, as a detector's are by the detector: with several
            # sources over one index, "source" alone said not whose read set it aside.
            self._dead_letter(
                u.index, u.id, f"source {run.cfg.name}", f"unusable event: {u.reason}"
            )
            for u in run.source.take_unusable()
        ]
        for detector in run.detectors:
            # The loop's edge: one bad document must not stop it.
            def failed(event: Event, exc: Exception, name: str = detector.spec.name) -> None:
                reason = f"{type(exc).__name__}: {exc}"
                dead.append(self._dead_letter(event.index, event.id, name, reason))

            detector.ingest_many(batch, failed)
        self._set_aside(dead, report)

    def _set_aside(self, dead: list[tuple[str, dict[str, Any]]], report: CycleReport) -> None:
        if dead:
            # One line per batch, not per event: a broken field can hit thousands of events.
            log.warning(
                "%d events set aside in %s (first: %s)",
                len(dead),
                self.store.index("deadletter"),
                dead[0][1]["reason"],
            )
            report.dead_letters += self.store.create_many("deadletter", dead)

    def _dead_letter(
        self, index: str, doc_id: str, where: str, reason: str
    ) -> tuple[str, dict[str, Any]]:
        doc = {
            "@timestamp": self.clock().isoformat(),
            "kind": "event",
            "status": "dead",
            "reason": f"{where}: {reason}"[:2000],
            "event": {"index": index, "id": doc_id},
        }
        return stable_id("dead", index, doc_id, where), doc

    def _close(self, run: SourceRun, cutoff_ms: int, report: CycleReport) -> list[Alert]:
        pattern = ",".join(run.cfg.indices)
        alerts = [a for d in run.detectors for a in d.close(cutoff_ms, pattern)]
        self._set_aside_in_processes(run, report)
        return alerts

    def _settle(self, run: SourceRun, report: CycleReport) -> list[Alert]:
        """The alerts detector processes are still judging, before a checkpoint."""
        alerts = [a for p in run.processes() for a in p.settle()]
        self._set_aside_in_processes(run, report)
        return alerts

    def _set_aside_in_processes(self, run: SourceRun, report: CycleReport) -> None:
        dead = [
            self._dead_letter(e.index, e.id, p.spec.name, e.reason)
            for p in run.processes()
            for e in p.take_set_aside()
        ]
        self._set_aside(dead, report)

    def stop_processes(self) -> None:
        """End the detector processes (at the agent's stop, or before a restore)."""
        for run in self.runs:
            for process in run.processes():
                process.stop()

    def _write_alerts(self, alerts: list[Alert], report: CycleReport) -> None:
        # Before the checkpoint that moves past their buckets: a crash in between judges
        # the same buckets again, and the same ids overwrite nothing.
        if alerts:
            self.handle_alerts(alerts, report)
            crash_point("alerts-written")

    def handle_alerts(self, alerts: list[Alert], report: CycleReport) -> None:
        """Route, write, contain and queue: the same path for detector and rule alerts.

        In shares, the lease checked (and renewed) before each: a scan of tens of thousands
        of addresses closes as many alerts at once (40,006 took 90 s here), longer than the
        lease holds unrenewed, and a standby that took over meanwhile would handle them too.
        """
        for first in range(0, len(alerts), ALERTS_PER_LEASE_CHECK):
            self._keep_lease()
            self._handle_share(alerts[first : first + ALERTS_PER_LEASE_CHECK], report)

    def _handle_share(self, alerts: list[Alert], report: CycleReport) -> None:
        routed = [triage.route(a, self.rules, self.inventory) for a in alerts]
        docs = [(a.id, alert_document(a, *_asset_names(asset))) for a, asset in routed]
        # Searchable at once: an analyst (or Kibana rule) should not wait for the next refresh.
        existing: list[str] = []
        report.new_alerts += self.store.create_many("alerts", docs, refresh=True, existing=existing)
        if existing:
            self._route_again(existing, dict(docs))
        contain.request_containment(self.store, routed, self.clock())
        report.notifications_queued += self.incidents.take(routed)
        for alert, _ in routed:
            report.alerts.append(alert)
            report.routes[alert.route or "?"] += 1

    def _route_again(self, ids: list[str], docs: dict[str, dict[str, Any]]) -> None:
        """Give alerts written before (judged again after a state reset, or replayed after
        a crash) the route they get now: their incidents follow the new route, and Kibana's
        alerts by route must not say otherwise. What was detected stays as first written."""
        triage_fields = ("route", "route_reason", "asset", "service")
        parts = [
            (i, {"nis2triage": {f: docs[i]["nis2triage"][f] for f in triage_fields}}) for i in ids
        ]
        changed = self.store.update_many("alerts", parts, refresh=True)
        if changed:
            log.info(
                "%d alerts written before were routed otherwise now (triage rules or inventory "
                "changed); their route in %s is updated",
                changed,
                self.store.index("alerts"),
            )

    def _run_rules(self, runner: RuleRunner, report: CycleReport) -> None:
        alerts = runner.run_due()
        if alerts:
            self.handle_alerts(alerts, report)
        # Saved after the alerts are written: a crash in between replays the same windows.
        # The lease is checked before it is written, as every checkpoint (`StateWriter.put`).
        rules = runner.to_dict()
        doc = {"kind": "rules_state", "updated": self.clock().isoformat(), "rules": rules}
        named = StateNamed(
            "the rules' state",
            lambda: largest_rules(rules),
            "Shorten those rules' timeframe or realert, key them (query_key) on a field "
            "with fewer values",
        )
        self.states.put(RULES_STATE_ID, doc, named)

    def _save(self, run: SourceRun) -> None:
        """Checkpoint and models in one document, so they can never disagree."""
        detectors = run.models()
        models = {d.spec.name: (spec_fingerprint(d.spec), d) for d in detectors}
        # The cursor is sealed with the models: a checkpoint edited in place is refused.
        sealed = {"cursor": run.cursor.to_dict(), "models": models}
        doc = {
            "kind": "source_state",
            "source": run.cfg.name,
            "updated": self.clock().isoformat(),
            "cursor": run.cursor.summary(),
            "snapshot": snapshots.seal(sealed, self.snapshot_key),
            "stats": {d.spec.name: d.stats() for d in detectors},
        }
        if run.source.unread is not None:
            # For `status`: the start's warning alone was gone with the log's rotation.
            doc["unread"] = run.source.unread.to_dict()
        named = StateNamed(
            f"source {run.cfg.name}: its checkpoint",
            lambda: _largest_parts(run),
            "Lower max_entities in those detector files, or the source's max_lateness when "
            "the events seen inside it are the large part",
        )
        self.states.put(self._state_id(run.cfg), doc, named)
        crash_point("state-saved")

    def _keep_lease(self) -> None:
        """Renew the lease at every checkpoint, so a long catch-up keeps it."""
        if not self._still_leading():
            raise LeaseLost("another agent took over the state prefix")

    # --- the loop ----------------------------------------------------------

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        log.info("stopping after the current batch or notification (signal %d)", signum)
        self.stopping = True

    def start_when_ready(self) -> bool:
        """start(), waiting out an unreachable Elasticsearch (a service may start before it)."""
        failures = 0
        while not self.stopping:
            try:
                self.start()
            except OUTAGES as exc:
                failures += 1
                self._say(describe_outage(exc))
                self._sleep(outage_backoff(failures))
                continue
            if failures:
                log.info("Elasticsearch answers again; starting")
                self.conditions.clear()
            return True
        return False

    def run_forever(self) -> None:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        if not self.start_when_ready():
            return
        interval = min(s.poll_interval for s in self.cfg.sources).total_seconds()
        try:
            self._loop(interval)
        finally:
            self.stop_processes()
            self._release_lease()

    def _loop(self, interval: float) -> None:
        failures = 0
        while not self.stopping:
            started = time.monotonic()
            try:
                if not self._lead():
                    self._sleep(interval)
                    continue
                if failures or self.resume:
                    # What was processed since the last save (ours, or the agent's we take
                    # over from) is redone from it.
                    self.restore_all()
                    self.resume = False
                report = self.run_once()
            except LeaseLost as exc:
                log.warning("%s; standing by", exc)
                self.resume = True
                self._sleep(interval)
                continue
            except OUTAGES as exc:
                failures += 1
                self._say(describe_outage(exc))
                self._sleep(outage_backoff(failures))
                continue
            if failures:
                log.info("Elasticsearch answers again; resumed from the last checkpoint")
                failures = 0
                self.conditions.clear()
            self._log_cycle(report)
            self._sleep(self._pause(interval - (time.monotonic() - started)))

    def _lead(self) -> bool:
        """Hold this prefix's lease (see `lease`); in standby, say once who holds it."""
        was_held = self.lease.held
        holder = self.lease.hold()
        if holder is None:
            # Taken back after another agent held it (this one was frozen past the expiry,
            # say): that agent may have saved state since this one read it.
            if not was_held or self.lease.taken:
                log.info("holding the lease of %s; running", self.store.index("state"))
                self.resume, self.leased, self.said_standby = True, True, False
            return True
        # A standby judges nothing until it takes over, and then restores (`resume`), which
        # starts them afresh: kept running, each held a copy of a detector's state.
        self.stop_processes()
        if not self.said_standby:
            log.warning(
                "standby: another agent runs on the state prefix %s (%s); this one takes "
                "over when it stops or its lease expires",
                self.cfg.state.index_prefix,
                holder.describe(),
            )
            self.said_standby = True
        return False

    def hold_for_one_pass(self) -> Holder | None:
        """Take the lease for `run --once` (None when taken, else who holds it), and keep
        it checked and renewed through the pass as the loop does: a pass longer than the
        lease (a slow endpoint, a long backlog) must not go on sending once another agent
        has taken over."""
        holder = self.lease.hold()
        if holder is None:
            self.leased = True
            # Read again under the lease: the last holder may have saved and released it
            # between `start` reading the state and this take. Read twice, then: a one-off
            # cost at start, kept because `start` alone must leave an agent that can run.
            self.restore_all()
        return holder

    def _still_leading(self) -> bool:
        """Whether this agent may still write its state and send (renewing the lease)."""
        if not self.leased:
            return True  # not running under a lease (`run_once` called directly)
        # Taken back in the middle of a pass rather than renewed: another agent held it
        # meanwhile, so this pass's state may be older than what it saved.
        if self.lease.hold() is None and not self.lease.taken:
            return True
        self.resume = True
        return False

    def _release_lease(self) -> None:
        with contextlib.suppress(*OUTAGES):  # unreleased, it expires by itself
            self.lease.release()

    def _pause(self, until_next_poll: float) -> float:
        """Seconds to wait: until the next poll, or until the next bucket can close if sooner.

        A bucket is judged once its end plus the lateness margin has passed; waiting for the
        next poll instead would add up to a whole poll interval to every detector alert.
        """
        closable = self._next_closable_ms()
        if closable is None:
            return until_next_poll
        in_seconds = (closable - self.clock().timestamp() * 1000) / 1000
        return min(until_next_poll, max(in_seconds, MIN_PAUSE_S))

    def _next_closable_ms(self) -> float | None:
        """When the earliest open bucket of any detector may be closed (epoch ms)."""
        moments = [
            end + run.cfg.max_lateness.total_seconds() * 1000
            for run in self.runs
            for end in (d.next_bucket_end_ms() for d in run.detectors)
            if end is not None
        ]
        return min(moments, default=None)

    def _say(self, condition: str) -> None:
        """One log line per condition, not one per failed attempt."""
        if condition not in self.conditions:
            log.error("%s; retrying with backoff, nothing is lost meanwhile", condition)
            self.conditions.add(condition)

    def _log_cycle(self, report: CycleReport) -> None:
        if report.events or report.alerts:
            log.info(
                "cycle: %d events, %d alerts (%s), %d notifications queued, %d sent",
                report.events,
                len(report.alerts),
                dict(report.routes),
                report.notifications_queued,
                report.notifications_sent,
            )

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + max(seconds, 0.0)
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.5, end - time.monotonic()))


OUTAGES = (TransportError, ApiError, StoreError)
# The shortest wait between two cycles, however soon a bucket can close: a bucket whose end
# is already past (a catch-up, or an evicted entity's stale mark) must not spin the loop.
MIN_PAUSE_S = 0.2
OUTAGE_BACKOFF_MAX_S = 60.0


def outage_backoff(failures: int) -> float:
    """Seconds to wait after the n-th failure in a row: doubling, capped, with jitter."""
    capped = min(OUTAGE_BACKOFF_MAX_S, 0.5 * 2.0 ** min(failures, 10))
    return float(capped * random.uniform(0.5, 1.0))


def describe_outage(exc: Exception) -> str:
    """What is wrong, in words an operator can act on."""
    if isinstance(exc, ApiError):
        status = exc.meta.status
        if is_write_block(exc):
            # Answered 403 (a write block) or 429 (the flood-stage watermark's): said as the
            # role or as an overload, both sent the operator to the wrong fix.
            return describe_block(_root_cause(exc))
        if _root_cause(exc, "type") == "index_closed_exception":
            # Said as "answered 400 (index_closed_exception: closed)": no index, no fix.
            return describe_closed(_root_cause(exc, "index") or "an index of the agent")
        if status == 429:
            return "Elasticsearch rejects requests (429, overloaded)"
        cause = _root_cause(exc)
        if cause.startswith("no such remote cluster"):
            # Answered 403 security_exception, which sent operators to the agent's role.
            return (
                f"Elasticsearch answered '{cause}': an index name of sources.indices (or of "
                "a rule's index) is on a remote cluster the node has no connection to; add "
                "the cluster to the node (cluster.remote.<name>.seeds) or correct the name"
            )
        said = _said(exc, cause)
        if status == 403 and "indices:admin/auto_create" in cause:
            return _describe_missing(cause)
        if status in (401, 403):
            return (
                f"Elasticsearch refuses the agent ({status}): check its role and credentials{said}"
            )
        # The index the node names, if any: "No mapping found for [opened_at]" said not where.
        where = _root_cause(exc, "index")
        return f"Elasticsearch answered {status}{f' on {where}' if where else ''}{said}"
    if isinstance(exc, StoreError):
        return str(exc)
    return f"Elasticsearch cannot be reached ({type(exc).__name__})"


def is_write_block(exc: ApiError) -> bool:
    """Whether Elasticsearch refused a write because of an index block."""
    return _root_cause(exc, "type") == "cluster_block_exception"


def _describe_missing(reason: str) -> str:
    """A write to one of the agent's indices that no longer exists (deleted by hand, by a
    retention job): the role may not create it, and rightly so, but the fix is setup's."""
    index = reason.rpartition("on indices [")[2].partition("]")[0] or "an index of the agent"
    return (
        f"{index} does not exist (deleted, or never set up) and the agent may not create it: "
        "run 'nis2triage setup --config FILE' with an administrator's credential to make it "
        "again (a deleted state index took the checkpoints and the lease with it: the "
        "sources are read again from their oldest event)"
    )


def _said(exc: ApiError, cause: str) -> str:
    """What the node said, in parentheses, or nothing: an answer without a body (to a HEAD
    request) has the message 'None', which told the reader nothing."""
    message = "" if exc.message in (None, "None") else str(exc.message)
    said = ": ".join(part for part in (message, cause) if part)
    return f" ({said})" if said else ""


def _root_cause(exc: ApiError, key: str = "reason") -> str:
    """The reason (or another `key`) of the error's first root cause:
    `search_phase_execution_exception` alone says not which field, index or cluster is
    wrong."""
    return str(first_cause(exc).get(key) or "")[:300]


def _largest_parts(run: SourceRun) -> list[str]:
    """The parts of a source's checkpoint, largest first, each with what bounds it."""
    parts = [
        (
            snapshots.sealed_size((spec_fingerprint(d.spec), d)),
            f"detector {d.spec.name} {{size}} ({len(d.table.open):,} entities with an open "
            f"bucket, max_entities {d.spec.max_entities:,})",
        )
        for d in run.models()
    ]
    parts.append(
        (
            snapshots.sealed_size(run.cursor.to_dict()),
            f"cursor {{size}} ({len(run.cursor.seen) + len(run.cursor.held):,} events seen "
            f"inside max_lateness {run.cfg.max_lateness})",
        )
    )
    parts.sort(key=lambda part: part[0], reverse=True)
    return [text.format(size=mb(size)) for size, text in parts]


def _unpack(state: Any) -> tuple[Cursor, dict[str, Any]]:
    """Cursor and models from a verified snapshot, checking their shapes."""
    if not isinstance(state, dict) or not isinstance(state.get("models"), dict):
        raise SnapshotError("the signed snapshot does not hold a cursor and models")
    try:
        return Cursor.from_dict(state.get("cursor")), state["models"]
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"the signed checkpoint is unreadable: {exc}") from exc


def _asset_names(asset: Asset | None) -> tuple[str | None, str | None]:
    return (asset.name, asset.service) if asset else (None, None)


def _stage_arguments(deadline_key: str) -> str:
    """`--stage ..` (and `--request ..`) for a report's deadline key (stage[:request])."""
    report, _, ref = deadline_key.partition(":")
    return f"--stage {cli_name(report)}" + (f" --request {ref}" if ref else "")


def _detectors(detectors: list[Detector | DetectorProcess]) -> str:
    """How many detectors, and which run in a process of their own (said nowhere else)."""
    said = "1 detector" if len(detectors) == 1 else f"{len(detectors)} detectors"
    apart = [d.spec.name for d in detectors if isinstance(d, DetectorProcess)]
    if not apart:
        return said
    own = "a process of its own" if len(apart) == 1 else "processes of their own"
    return f"{said}; {', '.join(apart)} in {own}"
