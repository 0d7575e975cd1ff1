"""Health and metrics: the judgement on plain objects, the endpoints on a real loopback server."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from elastic_transport import ApiResponseMeta, ConnectionError, HttpHeaders, NodeConfig
from elasticsearch import ApiError, Elasticsearch

from nis2triage import esclient
from nis2triage.agent import Agent, CycleReport
from nis2triage.config import load_config
from nis2triage.errors import ConfigError, StoreError
from nis2triage.esclient import ESSettings
from nis2triage.metrics import AgentMetrics, MeteredAgent, MetricsServer, condition_of

from support import write_agent_config


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def api_error(status: int) -> ApiError:
    meta = ApiResponseMeta(status, "1.1", HttpHeaders(), 0.0, NodeConfig("http", "x", 9200))
    return ApiError("refused", meta, {})


def idle_agent(watermark_ms: int | None = None, polled: float | None = None) -> Any:
    """What `cycle_done` reads of an agent: its runs and a store whose outbox it cannot reach."""
    began = None if polled is None else datetime.fromtimestamp(polled, UTC)
    run = SimpleNamespace(
        cfg=SimpleNamespace(name="auth"),
        cursor=SimpleNamespace(watermark_ms=watermark_ms),
        source=SimpleNamespace(read_until=began),
        detectors=[
            SimpleNamespace(
                spec=SimpleNamespace(name="ssh"),
                table=SimpleNamespace(evicted_entities=3),
                evictions=lambda: {"open_buckets": 3, "models": 7, "baselines": 0},
            )
        ],
    )

    class Unreachable:
        def search(self, **kwargs: Any) -> Any:
            raise ConnectionError("down")

    return SimpleNamespace(runs=[run], store=SimpleNamespace(es=Unreachable(), index=lambda w: w))


@pytest.mark.parametrize(
    ("exc", "condition"),
    [
        (api_error(429), "overloaded"),
        (api_error(403), "refused"),
        (api_error(500), "http_500"),
        (StoreError("read-only"), "writes_rejected"),
        (ConnectionError("down"), "unreachable"),
    ],
    ids=["429", "403", "500", "store", "connection"],
)
def test_a_failure_is_labelled_by_its_condition(exc: Exception, condition: str) -> None:
    assert condition_of(exc) == condition


def test_health_is_503_starting_before_the_first_cycle() -> None:
    assert AgentMetrics(60).health() == (503, {"status": "starting", "condition": None})


def test_health_is_200_right_after_a_good_cycle() -> None:
    clock = Clock()
    metrics = AgentMetrics(60, clock)

    metrics.cycle_done(idle_agent(), CycleReport(events=5), 1.5)
    clock.now += 30
    status, body = metrics.health()

    assert (status, body["status"], body["seconds_since_success"]) == (200, "ok", 30.0)


def test_health_is_503_stale_when_the_last_good_cycle_is_too_old() -> None:
    clock = Clock()
    metrics = AgentMetrics(60, clock)

    metrics.cycle_done(idle_agent(), CycleReport(), 1.0)
    clock.now += 61
    status, body = metrics.health()

    assert (status, body["status"]) == (503, "stale")


def test_health_is_503_failing_after_a_failed_cycle_and_names_the_condition() -> None:
    metrics = AgentMetrics(60, Clock())

    metrics.cycle_done(idle_agent(), CycleReport(), 1.0)
    metrics.cycle_failed(api_error(403))
    status, body = metrics.health()

    assert (status, body["status"], body["condition"]) == (503, "failing", "refused")


def sample(metrics: AgentMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_cycle_adds_events_and_alerts_per_route_and_sets_the_lag() -> None:
    clock = Clock()
    metrics = AgentMetrics(60, clock)
    report = CycleReport(events=120, routes=Counter({"soc": 3, "early_warning": 1}))

    metrics.cycle_done(idle_agent(watermark_ms=int((clock.now - 90) * 1000)), report, 2.5)
    metrics.cycle_done(idle_agent(watermark_ms=int((clock.now - 90) * 1000)), report, 0.5)

    assert sample(metrics, "nis2triage_events_read_total") == 240
    assert sample(metrics, "nis2triage_alerts_total", route="soc") == 6
    assert sample(metrics, "nis2triage_lag_seconds", source="auth") == pytest.approx(90, abs=0.01)
    assert sample(metrics, "nis2triage_read_behind_seconds", source="auth") is None
    assert sample(metrics, "nis2triage_model_evictions", detector="ssh") == 3
    assert sample(metrics, "nis2triage_evictions", detector="ssh", state="models") == 7
    assert sample(metrics, "nis2triage_evictions", detector="ssh", state="open_buckets") == 3
    assert sample(metrics, "nis2triage_last_cycle_duration_seconds") == 0.5


def test_a_quiet_source_read_to_the_end_is_not_behind_however_old_its_newest_event() -> None:
    clock = Clock()
    metrics = AgentMetrics(60, clock)
    quiet = idle_agent(watermark_ms=int((clock.now - 86400) * 1000), polled=clock.now - 4)

    metrics.cycle_done(quiet, CycleReport(), 1.0)

    assert sample(metrics, "nis2triage_lag_seconds", source="auth") == pytest.approx(
        86400, abs=0.01
    )
    assert sample(metrics, "nis2triage_read_behind_seconds", source="auth") == pytest.approx(
        4, abs=0.01
    )


def test_lag_and_read_behind_keep_growing_while_no_cycle_ends() -> None:
    clock = Clock()
    metrics = AgentMetrics(60, clock)
    metrics.cycle_done(
        idle_agent(watermark_ms=int((clock.now - 90) * 1000), polled=clock.now - 4),
        CycleReport(),
        1.0,
    )

    clock.now += 300  # the node down: cycles fail, none ends

    assert sample(metrics, "nis2triage_lag_seconds", source="auth") == pytest.approx(390, abs=0.01)
    assert sample(metrics, "nis2triage_read_behind_seconds", source="auth") == pytest.approx(
        304, abs=0.01
    )


def test_failures_are_counted_per_condition() -> None:
    metrics = AgentMetrics(60)

    for exc in (api_error(429), api_error(429), ConnectionError("down")):
        metrics.cycle_failed(exc)

    assert sample(metrics, "nis2triage_errors_total", condition="overloaded") == 2
    assert sample(metrics, "nis2triage_errors_total", condition="unreachable") == 1


def test_route_and_condition_series_exist_at_zero_before_anything_happened() -> None:
    metrics = AgentMetrics(60)

    for route in ("contain", "early_warning", "soc"):
        assert sample(metrics, "nis2triage_alerts_total", route=route) == 0
    assert sample(metrics, "nis2triage_errors_total", condition="unreachable") == 0


@pytest.fixture
def served() -> Iterator[tuple[AgentMetrics, str]]:
    metrics = AgentMetrics(60)
    server = MetricsServer(metrics, "127.0.0.1", 0)
    server.start()
    yield metrics, f"http://127.0.0.1:{server.port}"
    server.stop()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_the_server_answers_metrics_in_prometheus_text_format(
    served: tuple[AgentMetrics, str],
) -> None:
    metrics, url = served
    metrics.cycle_done(idle_agent(), CycleReport(events=7), 1.0)

    status, content_type, text = get(f"{url}/metrics")

    assert (status, content_type.split(";")[0]) == (200, "text/plain")
    assert "nis2triage_events_read_total 7.0" in text.splitlines()


@pytest.mark.parametrize(("path", "status"), [("/health", 503), ("/nothing", 404)])
def test_the_server_answers_health_and_refuses_other_paths(
    served: tuple[AgentMetrics, str], path: str, status: int
) -> None:
    assert get(f"{served[1]}{path}")[0] == status


def test_health_over_http_is_json(served: tuple[AgentMetrics, str]) -> None:
    metrics, url = served
    metrics.cycle_done(idle_agent(), CycleReport(), 1.0)

    status, content_type, text = get(f"{url}/health")

    assert (status, content_type, json.loads(text)["status"]) == (200, "application/json", "ok")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_start_that_cannot_reach_elasticsearch_counts_one_failure(tmp_path: Path) -> None:
    settings = ESSettings(hosts=(f"http://127.0.0.1:{closed_port()}",), username="u", password="p")
    config = load_config(write_agent_config(tmp_path, settings, "src", "pfx"))
    metrics = AgentMetrics(60)
    agent = MeteredAgent(metrics, config, esclient.connect(settings), b"k" * 32, b"p" * 32)

    with pytest.raises(ConnectionError):
        agent.start()

    assert sample(metrics, "nis2triage_errors_total", condition="unreachable") == 1
    assert metrics.health() == (503, {"status": "failing", "condition": "unreachable"})


def test_a_loop_that_cannot_reach_elasticsearch_for_its_lease_counts_the_failure(
    tmp_path: Path,
) -> None:
    # With the node down, the loop fails when it asks for the lease, before any cycle.
    settings = ESSettings(hosts=(f"http://127.0.0.1:{closed_port()}",), username="u", password="p")
    config = load_config(write_agent_config(tmp_path, settings, "src", "pfx"))
    metrics = AgentMetrics(60)
    agent = MeteredAgent(metrics, config, esclient.connect(settings), b"k" * 32, b"p" * 32)

    for _ in range(2):
        with pytest.raises(ConnectionError):
            agent._lead()

    assert sample(metrics, "nis2triage_errors_total", condition="unreachable") == 2
    assert metrics.health() == (503, {"status": "failing", "condition": "unreachable"})


@pytest.mark.usefixtures("agent_env")
def test_a_standby_whose_node_answers_again_no_longer_says_it_is_unreachable(
    es: Elasticsearch, es_settings: ESSettings, index_name: str, tmp_path: Path
) -> None:
    # A standby runs no cycle, so nothing else would clear the outage it once counted.
    config = load_config(write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st"))
    holder = Agent(config, es, b"k" * 32, b"p" * 32)
    assert holder.lease.hold() is None
    metrics = AgentMetrics(60)
    standby = MeteredAgent(metrics, config, es, b"k" * 32, b"p" * 32)
    metrics.cycle_failed(ConnectionError("down"))

    assert standby._lead() is False

    assert metrics.health() == (503, {"status": "starting", "condition": None})


def test_a_port_already_taken_is_said_with_what_to_do(served: tuple[AgentMetrics, str]) -> None:
    metrics, url = served
    port = int(url.rsplit(":", 1)[1])

    with pytest.raises(
        ConfigError,
        match=f"cannot serve metrics on 127.0.0.1:{port}: .*in use; choose another --metrics-port",
    ):
        MetricsServer(metrics, "127.0.0.1", port)


def test_a_silent_connection_is_dropped_and_the_server_still_answers() -> None:
    server = MetricsServer(AgentMetrics(60), "127.0.0.1", 0, idle_timeout_s=0.5)
    server.start()
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=30)

    # Dropped after the handler's timeout: the read sees the end of the stream.
    started = time.monotonic()
    try:
        assert silent.recv(1) == b""
        assert 0.4 < time.monotonic() - started < 10
        assert get(f"http://127.0.0.1:{server.port}/health")[0] == 503
    finally:
        silent.close()
        server.stop()


def test_the_outbox_figures_count_each_status_and_the_late_entries(
    es: Elasticsearch, index_name: str
) -> None:
    from nis2triage.store import Store

    store = Store(es, index_name)
    store.ensure_indices()
    now = datetime(2026, 12, 5, 12, tzinfo=UTC)
    entries = {"a": ("pending", 25), "b": ("pending", 1), "c": ("failed", 30), "d": ("sent", 48)}
    for doc_id, (status, hours_ago) in entries.items():
        created = datetime.fromtimestamp(now.timestamp() - hours_ago * 3600, UTC).isoformat()
        store.put("outbox", doc_id, {"status": status, "created": created}, refresh=True)
    metrics = AgentMetrics(60)

    metrics.read_outbox(store, now.timestamp())

    assert sample(metrics, "nis2triage_notifications", status="pending") == 2
    assert sample(metrics, "nis2triage_notifications", status="dry-run") == 0
    assert sample(metrics, "nis2triage_notifications_overdue") == 2
