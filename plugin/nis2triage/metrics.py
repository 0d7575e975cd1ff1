"""Prometheus metrics and a health endpoint for `nis2triage run --metrics-port N`.

The agent is wrapped, not changed: `MeteredAgent` times each cycle, counts
what the cycle report says, reads the lag from the sources' watermarks and the
outbox from Elasticsearch, and counts failed cycles by condition. A small HTTP
server on loopback serves `/metrics` (Prometheus text format) and `/health`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, get_args

from elastic_transport import TransportError
from elasticsearch import ApiError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from nis2triage.agent import OUTAGES, Agent, CycleReport, is_write_block
from nis2triage.errors import ConfigError, StoreError
from nis2triage.records import Route
from nis2triage.status import late_notifications, outbox_counts
from nis2triage.store import Store

log = logging.getLogger(__name__)


# The conditions `condition_of` names for the common outages (others are named as they come).
KNOWN_CONDITIONS = ("overloaded", "refused", "writes_rejected", "unreachable")


def condition_of(exc: Exception) -> str:
    """A short, bounded label for why a cycle failed."""
    if isinstance(exc, ApiError):
        if is_write_block(exc):
            return "writes_rejected"  # a block on an index, not an overload nor the role
        status = exc.meta.status
        return {429: "overloaded", 401: "refused", 403: "refused"}.get(status, f"http_{status}")
    if isinstance(exc, StoreError):
        return "writes_rejected"
    if isinstance(exc, TransportError):
        return "unreachable"
    return type(exc).__name__


class AgentMetrics:
    """The agent's figures, in a registry of its own."""

    def __init__(self, stale_after_s: float, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self.stale_after_s = stale_after_s
        self.clock = clock
        self.last_success: float | None = None
        self.last_cycle_s: float | None = None
        self.failing: str | None = None
        r = self.registry
        self.events = Counter("nis2triage_events_read", "Source events read.", registry=r)
        self.alerts = Counter("nis2triage_alerts", "Alerts by triage route.", ["route"], registry=r)
        self.lag = Gauge(
            "nis2triage_lag_seconds",
            "Now minus the source's watermark, the newest event time read (grows while a "
            "source is quiet).",
            ["source"],
            registry=r,
        )
        # What to alert on: everything indexed before the last poll began has been read.
        self.behind = Gauge(
            "nis2triage_read_behind_seconds",
            "Now minus the moment the source's last poll began: how old the newest events "
            "it may not have read yet can be.",
            ["source"],
            registry=r,
        )
        self.outbox = Gauge(
            "nis2triage_notifications", "Outbox entries by status.", ["status"], registry=r
        )
        self.overdue = Gauge(
            "nis2triage_notifications_overdue",
            "Outbox entries still pending or failed 24 hours after they were queued.",
            registry=r,
        )
        self.evictions = Gauge(
            "nis2triage_model_evictions",
            "Entities evicted from a detector's open buckets since it was created.",
            ["detector"],
            registry=r,
        )
        self.state_evictions = Gauge(
            "nis2triage_evictions",
            "Entities a detector dropped at its max_entities cap since it was created, by "
            "state: open_buckets (their events uncounted), models, baselines.",
            ["detector", "state"],
            registry=r,
        )
        self.duration = Gauge(
            "nis2triage_last_cycle_duration_seconds", "How long the last cycle took.", registry=r
        )
        self.success_time = Gauge(
            "nis2triage_last_success_timestamp_seconds",
            "When the last cycle ended well (Unix time).",
            registry=r,
        )
        self.errors = Counter(
            "nis2triage_errors", "Failed cycles by condition.", ["condition"], registry=r
        )
        # Series exist from the start at 0, so a rule on them (rate, absent) has something to
        # read before the first alert or failure.
        for route in get_args(Route):
            self.alerts.labels(route)
        for condition in KNOWN_CONDITIONS:
            self.errors.labels(condition)

    def cycle_done(self, agent: Agent, report: CycleReport, seconds: float) -> None:
        now = self.clock()
        self.events.inc(report.events)
        for route, count in report.routes.items():
            self.alerts.labels(route).inc(count)
        for run in agent.runs:
            # Worked out when scraped, not when the cycle ended: while cycles fail (the node
            # down) both must keep growing, or an alert on them would never fire.
            if run.cursor.watermark_ms is not None:
                self._age(self.lag, run.cfg.name, run.cursor.watermark_ms / 1000)
            if run.source.read_until is not None:
                self._age(self.behind, run.cfg.name, run.source.read_until.timestamp())
            for detector in run.detectors:
                evictions = detector.evictions()
                self.evictions.labels(detector.spec.name).set(evictions["open_buckets"])
                for state, count in evictions.items():
                    self.state_evictions.labels(detector.spec.name, state).set(count)
        self.read_outbox(agent.store, now)
        self.duration.set(seconds)
        self.success_time.set(now)
        self.last_success, self.last_cycle_s, self.failing = now, seconds, None

    def _age(self, gauge: Gauge, source: str, since: float) -> None:
        gauge.labels(source).set_function(lambda: max(0.0, self.clock() - since))

    def answered(self) -> None:
        """The node answered: a standby runs no cycle that would clear an outage said
        before."""
        self.failing = None

    def cycle_failed(self, exc: Exception) -> None:
        self.failing = condition_of(exc)
        self.errors.labels(self.failing).inc()

    def read_outbox(self, store: Store, now: float) -> None:
        try:
            counts = outbox_counts(store)
            late = late_notifications(store, datetime.fromtimestamp(now, UTC))
        except (ApiError, TransportError) as exc:
            # The cycle itself went well; stale outbox figures are better than a failed cycle.
            log.debug("outbox figures not read: %s", exc)
            return
        for status in {"pending", "failed", "sent", "dry-run", *counts}:
            self.outbox.labels(status).set(counts.get(status, 0))
        self.overdue.set(late)

    def health(self) -> tuple[int, dict[str, Any]]:
        """200 when the last cycle ended well and recently; 503 otherwise, saying why."""
        if self.last_success is None:
            status = "failing" if self.failing else "starting"
            return 503, {"status": status, "condition": self.failing}
        age = self.clock() - self.last_success
        body = {
            "status": "ok",
            "last_success": datetime.fromtimestamp(self.last_success, UTC).isoformat(),
            "seconds_since_success": round(age, 1),
            "last_cycle_seconds": self.last_cycle_s,
            "condition": self.failing,
        }
        if self.failing:
            return 503, {**body, "status": "failing"}
        if age > self.stale_after_s:
            return 503, {**body, "status": "stale"}
        return 200, body


class MeteredAgent(Agent):
    """The agent, reporting each cycle to an `AgentMetrics`."""

    def __init__(self, metrics: AgentMetrics, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self._counted: BaseException | None = None

    def run_once(self) -> CycleReport:
        started = time.monotonic()
        with self._counting_failures():
            report = super().run_once()
        self.metrics.cycle_done(self, report, time.monotonic() - started)
        return report

    def start(self) -> None:
        with self._counting_failures():
            super().start()

    def restore_all(self) -> None:
        with self._counting_failures():
            super().restore_all()

    def _lead(self) -> bool:
        # The loop asks for the lease before each cycle: with the node down, that is where
        # the cycle fails, before run_once.
        with self._counting_failures():
            leading = super()._lead()
        self.metrics.answered()
        return leading

    @contextmanager
    def _counting_failures(self) -> Iterator[None]:
        try:
            yield
        except OUTAGES as exc:
            # start() calls restore_all(): one failure passes both; count it once.
            if exc is not self._counted:
                self.metrics.cycle_failed(exc)
                self._counted = exc
            raise


# How long a connection may stay silent before the server drops it.
IDLE_TIMEOUT_S = 10.0


class MetricsServer:
    """`/metrics` and `/health` over HTTP, in a daemon thread."""

    def __init__(
        self, metrics: AgentMetrics, host: str, port: int, idle_timeout_s: float = IDLE_TIMEOUT_S
    ) -> None:
        handler = _handler_for(metrics, idle_timeout_s)
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; "
                "choose another --metrics-port, or stop what holds this one"
            ) from exc
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self.thread.start()
        host = self.httpd.server_address[0]
        log.info("metrics on http://%s:%d/metrics, health on /health", host, self.port)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler_for(metrics: AgentMetrics, idle_timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # A scraper that connects and says nothing would hold its thread for ever. Known
        # gap: this bounds each read, not a whole request, so a client dripping a byte
        # every few seconds still holds one thread; the server listens on 127.0.0.1 unless
        # --metrics-host says otherwise, where a reverse proxy should stand in front.
        timeout = idle_timeout_s

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            elif self.path == "/health":
                status, body = metrics.health()
                self._send(status, "application/json", json.dumps(body).encode())
            else:
                self._send(404, "text/plain", b"not found: try /metrics or /health\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # One line per scrape would bury the agent's own log.
            pass

    return Handler
