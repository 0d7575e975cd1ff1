"""Throughput: the read limit of the client, and the agent end to end over the same documents.

The read limit is the fastest of three ways the official client hands over
every document, nothing done with the hits: the agent's own paging (point in
time, `search_after`, same sort and batch size, pages bounded in time
windows), the same paging over the whole remaining range (the agent's before
its windows), and a scroll in index order (`helpers.scan`), which gives up
the time order the agent needs. End to end is the real Agent with the shipped
detectors, from a fresh state (the network detector reading the flows as a second
source), plus the shipped `frequency` rule for SSH brute force run over
the same day with `run_rule`, whose alerts go through the agent's own
`handle_alerts`: the loop's own rule runner starts from a recent window
(`rules.initial_lookback`), not from a past day.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, helpers

from nis2triage.agent import Agent
from nis2triage.config import AgentConfig
from nis2triage.localnode import NodeInfo
from nis2triage.paging import PIT_KEEP_ALIVE, TimeRange, pages, sort_clause, window_query
from nis2triage.records import Alert
from nis2triage.rules.engine import run_rule
from nis2triage.rules.loader import load_rule
from nis2triage.rules.native import NativeRule
from nis2triage.rules.state import RuleState

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[3]
SHIPPED_DETECTORS = REPO / "detectors" / "*.yml"
NETWORK_DETECTORS = REPO / "detectors" / "network" / "*.yml"
# The day split in two sources that together read every document once: the network
# detectors' flows, and everything else for the authentication detectors.
NETWORK_QUERY = "event.category:network"
SHIPPED_RULE = REPO / "rules" / "detection" / "ssh-brute-force.yml"
TRIAGE = REPO / "rules" / "triage.yml"
PASSWORD_ENV = "NIS2TRIAGE_BENCH_ES_PASSWORD"


@dataclass(frozen=True)
class Timed:
    """Events handled in a wall time, and the alerts that came of it."""

    events: int
    seconds: float
    alerts: list[Alert] = field(default_factory=list, compare=False)
    # Of `events`, how many were read from the node (end to end: the rest no detector takes).
    read: int = 0
    # CPU seconds of this process and of the node over the same time (end to end; None
    # where the node's processes cannot be read).
    cpu: float = 0.0
    node_cpu: float | None = None
    # CPU seconds of the agent's detector processes (`detector_processes`), if any.
    processes_cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def agent_settings(
    node: NodeInfo,
    index: str,
    prefix: str,
    detectors: str = str(SHIPPED_DETECTORS),
    **source: Any,
) -> dict[str, Any]:
    """An agent reading `index` as source `auth`, state under `prefix`, notifier in dry run."""
    return {
        "elasticsearch": {
            "hosts": [node.url],
            "username": node.user,
            "password_env": PASSWORD_ENV,
        },
        "entity": {
            "legal_name": "Benchmark Logistics NV",
            "enterprise_number": "0999.999.922",
            "sector": "transport",
            "entity_class": "essential",
        },
        "sources": [{"name": "auth", "indices": [index], **source}],
        "detectors": [detectors],
        "triage": str(TRIAGE),
        "notifier": {"mode": "dry-run", "pseudonymise": True},
        "state": {"index_prefix": prefix},
    }


def agent_config(node: NodeInfo, index: str, prefix: str, **source: Any) -> AgentConfig:
    return AgentConfig.model_validate(agent_settings(node, index, prefix, **source))


def shipped_agent_config(node: NodeInfo, index: str, prefix: str, **source: Any) -> AgentConfig:
    """Every shipped detector, the network ones included, each source reading its part."""
    settings = agent_settings(node, index, prefix, query=f"NOT {NETWORK_QUERY}", **source)
    network = {**source, "name": "network", "indices": [index], "query": NETWORK_QUERY}
    settings["sources"].append(network)
    settings["detectors"].append(str(NETWORK_DETECTORS))
    return AgentConfig.model_validate(settings)


def fresh_agent(es: Elasticsearch, cfg: AgentConfig) -> Agent:
    """An agent with no saved state: its indices under the prefix are deleted first."""
    prefix = cfg.state.index_prefix
    es.options(ignore_status=404).indices.delete(index=f"{prefix}-*", expand_wildcards="all")
    agent = Agent(
        cfg, es, snapshot_key=secrets.token_bytes(32), pseudonym_key=secrets.token_bytes(32)
    )
    agent.start()
    return agent


# How the official client can hand over every document, each timed on its own: the read
# limit is the fastest. `scroll` ignores time order (the agent needs it), so it bounds
# what any time-ordered reader could reach.
READ_METHODS = ("windowed", "unbounded", "scroll")


def read_limit(
    es: Elasticsearch, index: str, batch_size: int, method: str, node_pid: int | None = None
) -> Timed:
    """Every document of `index` read one way, nothing done with the hits; with the CPU
    of this process and of the node (`node_pid`) over the read."""
    node_before = tree_cpu_seconds(node_pid) if node_pid else None
    cpu_before, started = time.process_time(), time.perf_counter()
    if method == "scroll":
        total = sum(1 for _ in helpers.scan(es, index=index, size=batch_size, preserve_order=False))
    else:
        total = _read_pit(es, index, batch_size, windowed=method == "windowed")
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    node_after = tree_cpu_seconds(node_pid) if node_pid else None
    node_cpu = None if node_before is None or node_after is None else node_after - node_before
    return Timed(total, seconds, cpu=cpu, node_cpu=node_cpu)


def _read_pit(es: Elasticsearch, index: str, batch_size: int, windowed: bool) -> int:
    """Through a point in time and `search_after`: the agent's paging, or one unbounded range."""
    pit = es.open_point_in_time(index=index, keep_alive=PIT_KEEP_ALIVE)["id"]
    span = TimeRange("@timestamp", None, int(time.time() * 1000))
    try:
        if windowed:
            return sum(len(page.hits) for page in pages(es, pit, span, batch_size))
        return _read_unbounded(es, pit, span, batch_size)
    finally:
        es.options(ignore_status=404).close_point_in_time(id=pit)


def _read_unbounded(es: Elasticsearch, pit: str, span: TimeRange, batch_size: int) -> int:
    """The paging the source used before its windows: each page asked over the whole range."""
    query = window_query(span, None, span.high_ms + 1)
    after: list[Any] | None = None
    total = 0
    while True:
        resp = es.search(
            pit={"id": pit, "keep_alive": PIT_KEEP_ALIVE},
            query=query,
            sort=sort_clause(span.time_field),
            size=batch_size,
            search_after=after,
            track_total_hits=False,
        )
        pit = resp.get("pit_id", pit)
        hits = resp["hits"]["hits"]
        if not hits:
            return total
        total += len(hits)
        after = hits[-1]["sort"]


def shipped_rule(index: str) -> NativeRule:
    """The shipped SSH brute-force `frequency` rule, aimed at the benchmark's index only."""
    return load_rule(SHIPPED_RULE).model_copy(update={"index": index})


def end_to_end(
    es: Elasticsearch,
    cfg: AgentConfig,
    rule: NativeRule | None,
    day: tuple[datetime, datetime],
    node_pid: int | None = None,
) -> Timed:
    """One fresh agent pass over everything, then the rule over the day; both timed together.

    The events handled are the index's documents, as for the read limit: the agent reads
    only those its detectors' filters may take (`pushdown`), which is part of its work.
    """
    agent = fresh_agent(es, cfg)
    indices = sorted({name for src in cfg.sources for name in src.indices})
    documents = int(es.count(index=",".join(indices))["count"])

    node_before = tree_cpu_seconds(node_pid) if node_pid else None
    cpu_before, started = time.process_time(), time.perf_counter()
    report = agent.run_once()
    if rule is not None:
        alerts = run_rule(es, rule, day[0], day[1], RuleState())
        agent.handle_alerts(alerts, report)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    # Started at the pass's first page: all of their CPU is the pass's.
    processes_cpu = _cpu_of([p.pid for run in agent.runs for p in run.processes()])
    agent.stop_processes()
    node_after = tree_cpu_seconds(node_pid) if node_pid else None
    node_cpu = None if node_before is None or node_after is None else node_after - node_before

    log.info(
        "end to end: %d events (%d of them read), %d alerts in %.1f s (process CPU %.1f s)",
        documents,
        report.events,
        len(report.alerts),
        seconds,
        cpu,
    )
    return Timed(
        documents,
        seconds,
        report.alerts,
        read=report.events,
        cpu=cpu,
        node_cpu=node_cpu,
        processes_cpu=processes_cpu,
    )


def _cpu_of(pids: list[int | None]) -> float | None:
    """CPU seconds of these processes together (None: none, or one not started or not
    readable)."""
    total = 0.0
    for pid in pids:
        seconds = tree_cpu_seconds(pid) if pid is not None else None
        if seconds is None:
            return None
        total += seconds
    return total if pids else None


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds used so far by process `pid` and its descendants (the node's launcher
    and its server), from /proc; None where there is no /proc or the process is gone."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0, [pid]
    try:
        while pending:
            one = pending.pop()
            stat = Path(f"/proc/{one}/stat").read_text()
            # After the command's closing parenthesis: utime and stime are fields 14 and 15.
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
            # Each thread lists the children it started: the node's launcher starts the
            # server from a thread other than its main one.
            for task in Path(f"/proc/{one}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    except (OSError, ValueError, IndexError):
        return None
    return total / tick


def rule_only(es: Elasticsearch, rule: NativeRule, day: tuple[datetime, datetime]) -> Timed:
    """The frequency rule alone over the day, as ElastAlert 2 is asked to run it."""
    started = time.perf_counter()
    alerts = run_rule(es, rule, day[0], day[1], RuleState())
    return Timed(0, time.perf_counter() - started, alerts)
