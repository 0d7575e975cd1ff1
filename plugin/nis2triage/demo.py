"""`nis2triage demo`: the whole flow on the local node with the real SSH log.

Starts (or reuses) the local node, turns loghub's OpenSSH sample into ECS
documents moved to yesterday, indexes them, runs the agent once over them
with the shipped detectors and a dry-run notifier, and shows the alerts and
the early warning that would go to the CCB.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import shutil
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, helpers
from rich.console import Console
from rich.table import Table

from nis2triage import esclient, localnode, sshlog
from nis2triage.agent import Agent, CycleReport
from nis2triage.config import AgentConfig, load_config
from nis2triage.errors import ConfigError
from nis2triage.lease import LEASE_ID, holder_of
from nis2triage.store import Store

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "deploy" / "demo" / "nis2triage.yml"
SSH_LOG = REPO.parent / "shared" / "data" / "loghub" / "OpenSSH_2k.log"

LOG_MAPPING: dict[str, Any] = {
    "properties": {
        "@timestamp": {"type": "date"},
        "message": {"type": "text"},
        "source": {"properties": {"ip": {"type": "ip"}, "port": {"type": "integer"}}},
        "user": {"properties": {"name": {"type": "keyword"}}},
        "host": {"properties": {"name": {"type": "keyword"}, "hostname": {"type": "keyword"}}},
        "event": {
            "properties": {
                f: {"type": "keyword"}
                for f in ("kind", "category", "type", "action", "outcome", "dataset", "module")
            }
        },
        "related": {"properties": {"ip": {"type": "ip"}, "user": {"type": "keyword"}}},
    }
}


def demo_docs(log_path: Path = SSH_LOG) -> tuple[list[dict[str, Any]], str]:
    """The real SSH log moved to yesterday, or a generated sample when it is absent."""
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    if log_path.is_file():
        return list(sshlog.move_to(sshlog.read_log(log_path, 2016), yesterday)), str(log_path)
    lines = generated_ssh_lines(yesterday)
    docs = [d for d in (sshlog.parse_line(line, yesterday.year) for line in lines) if d]
    return docs, "a generated sample (the loghub file was not found)"


def generated_ssh_lines(day: date, seed: int = 7) -> list[str]:
    """sshd lines for one morning: scattered failures, two guessing bursts, one good login."""
    rng = random.Random(seed)
    start = datetime(day.year, day.month, day.day, 7, 0, tzinfo=UTC)
    events: list[tuple[datetime, str]] = []
    for _ in range(40):
        ip = f"198.51.100.{rng.randint(1, 250)}"
        events.append((start + timedelta(seconds=rng.randint(0, 4 * 3600)), _fail(rng, ip)))
    for burst_ip, minute in (("203.0.113.7", 95), ("203.0.113.66", 170)):
        for i in range(60):
            when = start + timedelta(minutes=minute, seconds=4 * i)
            events.append((when, _fail(rng, burst_ip)))
    events.append(
        (
            start + timedelta(minutes=130),
            "Accepted password for ops from 192.0.2.10 port 50022 ssh2",
        )
    )
    events.sort()
    return [
        f"{t:%b} {t.day:2d} {t:%H:%M:%S} demohost sshd[{1000 + i}]: {m}"
        for i, (t, m) in enumerate(events)
    ]


def _fail(rng: random.Random, ip: str) -> str:
    user = rng.choice(["root", "admin", "test", "oracle", "git"])
    return f"Failed password for {user} from {ip} port {rng.randint(30000, 60000)} ssh2"


def index_docs(es: Elasticsearch, index: str, docs: list[dict[str, Any]]) -> int:
    es.options(ignore_status=404).indices.delete(index=index)
    es.indices.create(index=index, mappings=LOG_MAPPING, settings={"number_of_replicas": 0})
    actions = ({"_index": index, "_id": str(i), "_source": d} for i, d in enumerate(docs))
    indexed, _ = helpers.bulk(es, actions, chunk_size=1000)
    es.indices.refresh(index=index)
    return int(indexed)


def reset_state(es: Elasticsearch, cfg: AgentConfig, own: Path = DEMO_CONFIG.parent) -> None:
    """The demo's indices and report files deleted, so a run starts as the first did (its
    incident ids are the same each time, and old report files would sit beside the new)."""
    prefix = cfg.state.index_prefix
    _refuse_under_a_running_agent(Store(es, prefix))
    es.options(ignore_status=404).indices.delete(index=f"{prefix}-*", expand_wildcards="all")
    reports, own = cfg.resolve(cfg.incidents.report_dir).resolve(), own.resolve()
    # Only inside the demo's own folder: a configuration edited to write elsewhere keeps it.
    if reports.is_relative_to(own) and reports != own:
        shutil.rmtree(reports, ignore_errors=True)


def _refuse_under_a_running_agent(store: Store) -> None:
    """An agent holding the lease of the demo's prefix would carry on over indices deleted
    and made again under it, from the demo's new checkpoint."""
    if not store.es.indices.exists(index=store.index("state")):
        return
    doc = store.get("state", LEASE_ID)
    holder = holder_of(doc) if doc else None
    if holder is None or holder.expires <= datetime.now(UTC):
        return
    raise ConfigError(
        f"process {holder.pid} on {holder.host} holds the lease of {store.index('state')} "
        f"until {holder.expires.isoformat()}: an agent runs on the demo's indices "
        f"({store.prefix}-*), which the demo would delete under it; stop that agent "
        f"(Ctrl-C, or kill {holder.pid} on {holder.host}), then run `make demo` again"
    )


def check_checkout() -> None:
    """The demo needs the checkout (its configuration, detectors and the node's plugin
    sources); a package installed with pip has none of them."""
    missing = [p for p in (DEMO_CONFIG, localnode.analysis_sources()) if not p.exists()]
    if missing:
        raise ConfigError(
            f"the demo runs from a checkout of nis2triage, and {missing[0]} is not there: "
            "run `make demo` in the checkout (an installed package has no demo files)"
        )


def run_demo(console: Console) -> int:
    started = time.monotonic()
    check_checkout()
    node = localnode.start()
    cfg = load_config(DEMO_CONFIG)
    cfg = cfg.model_copy(
        update={"elasticsearch": cfg.elasticsearch.model_copy(update={"hosts": [node.url]})}
    )
    es = esclient.connect(
        esclient.ESSettings(hosts=(node.url,), username=node.user, password=node.password)
    )
    info = esclient.cluster_info(
        es, f"the local node's elastic password in {localnode.password_file()}"
    )
    console.print(f"Elasticsearch {info.version} at {node.url}")

    reset_state(es, cfg)
    docs, origin = demo_docs()
    count = index_docs(es, cfg.sources[0].indices[0], docs)
    console.print(f"indexed {count} sshd events from {origin} into {cfg.sources[0].indices[0]}")

    keys = demo_keys(localnode.home() / "demo-keys.env")
    agent = Agent(
        cfg,
        es,
        snapshot_key=keys["NIS2TRIAGE_SNAPSHOT_KEY"].encode(),
        pseudonym_key=keys["NIS2TRIAGE_PSEUDONYM_KEY"].encode(),
    )
    agent.start()
    report = agent.run_once()
    show(console, report)
    show_early_warning(console, es, cfg)
    local = write_local_config(node.url)
    console.print(f"demo finished in {time.monotonic() - started:.1f} s")
    show_next_steps(console, local, localnode.home() / "demo-keys.env")
    return 0


def demo_keys(path: Path) -> dict[str, str]:
    """The demo's snapshot and pseudonym keys, made once and kept beside the node: the
    incidents commands after the demo need the same ones (pseudonyms, signed models)."""
    names = ("NIS2TRIAGE_SNAPSHOT_KEY", "NIS2TRIAGE_PSEUDONYM_KEY")
    if path.is_file():
        found = dict(
            line.removeprefix("export ").split("=", 1)
            for line in path.read_text().splitlines()
            if "=" in line
        )
        if all(found.get(name) for name in names):
            return {name: found[name] for name in names}
    keys = {name: secrets.token_hex(32) for name in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text("".join(f"export {name}={value}\n" for name, value in keys.items()))
    return keys


def write_local_config(url: str) -> Path:
    """The demo's configuration with the node's real address, beside the shipped one so
    its relative paths hold: the shipped file says 127.0.0.1:9200, which another node
    may hold."""
    local = DEMO_CONFIG.with_name("local.yml")
    text = DEMO_CONFIG.read_text().replace("http://127.0.0.1:9200", url, 1)
    local.write_text("# Written by `nis2triage demo` for this checkout's node.\n" + text)
    return local


def show_next_steps(console: Console, config: Path, keys: Path) -> None:
    command = _command()
    console.print(
        "\nGo on with the demo's incidents (same node, same keys):\n"
        f"  source {keys}\n"
        f"  {command} incidents list -c {config}\n"
        f"  {command} incidents show <id> -c {config}",
        markup=False,
        highlight=False,
    )


def _command() -> str:
    """`nis2triage` as this shell can run it: the virtualenv's, by its path, unless that
    is the one on PATH (`make demo` runs it without activating the virtualenv)."""
    ours = Path(sys.executable).parent / "nis2triage"
    found = shutil.which("nis2triage")
    if not ours.exists() or (found and Path(found).resolve() == ours.resolve()):
        return "nis2triage"
    with contextlib.suppress(ValueError):
        return str(ours.relative_to(Path.cwd()))
    return str(ours)


def show(console: Console, report: CycleReport) -> None:
    # The node is asked only for events a detector may take: the rest are indexed, not read.
    table = Table(title=f"{len(report.alerts)} alerts from {report.events} events read")
    for column in (
        "window (UTC)",
        "detector or rule",
        "entity",
        "score",
        "bar",
        "route",
        "evidence",
    ):
        table.add_column(column, no_wrap=column != "evidence")
    for a in sorted(report.alerts, key=lambda a: a.timestamp):
        numbers = {k: v for k, v in a.evidence.items() if isinstance(v, int | float)}
        features = a.evidence.get("features") or numbers
        table.add_row(
            f"{a.start:%H:%M}-{a.end:%H:%M}",
            a.name,
            a.entity,
            f"{a.score:.3g}",
            f"{a.threshold:.3g}",
            a.route or "",
            ", ".join(f"{k} {v:.3g}" for k, v in features.items()),
        )
    console.print(table)
    console.print(
        f"routes: {dict(report.routes)}; early warnings queued: {report.notifications_queued}"
    )


def show_early_warning(console: Console, es: Elasticsearch, cfg: AgentConfig) -> None:
    index = f"{cfg.state.index_prefix}-outbox"
    es.indices.refresh(index=index)
    hits = es.search(index=index, sort=[{"created": "asc"}], size=1)["hits"]["hits"]
    if not hits:
        console.print("no early warning would be sent")
        return
    doc = hits[0]["_source"]
    console.print(f"early warning {hits[0]['_id']} ({doc['status']}; not sent), payload:")
    # The chart's numbers are for the PDF; a screenful of them would hide the rest.
    console.print_json(json.dumps({k: v for k, v in doc["payload"].items() if k != "chart"}))
