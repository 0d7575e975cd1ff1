"""Detection latency: the agent in its own loop (`nis2triage run`), attack bursts indexed live.

A bucketed detector can only judge a bucket once it has ended and the lateness
margin has passed, so its latency is structurally bucket + lateness + poll.
To fit 20 bursts into minutes, the shipped SSH brute-force detector runs here
with a 10-second bucket and the source with a 1-second lateness and a
1-second poll; each burst is indexed (with refresh) just before a bucket
ends. Two figures per burst: from indexing to the alert being searchable,
and from the moment the bucket could first be closed (its end plus the
lateness) to the alert being searchable, which is what the agent adds.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from elasticsearch import Elasticsearch, helpers

from nis2triage.bench import throughput
from nis2triage.bench.indexing import STREAM_MAPPING
from nis2triage.bench.stream import iso_ms
from nis2triage.localnode import NodeInfo, password_file

log = logging.getLogger(__name__)
INDEX = "bench-live"
PREFIX = "bench-live-state"
BUCKET_S = 10
LATENESS_S = 1
POLL_S = 1


@dataclass(frozen=True)
class Burst:
    """One burst: seconds from indexing, and from closable, to the alert being searchable."""

    entity: str
    from_indexed: float | None
    from_closable: float | None


def write_config(folder: Path, node: NodeInfo) -> Path:
    """The shipped SSH detector with a 10 s bucket, and an agent polling every second."""
    # Absolute: the agent resolves relative paths against its configuration file's folder.
    detectors = folder.resolve() / "detectors"
    detectors.mkdir(parents=True, exist_ok=True)
    spec = yaml.safe_load((throughput.REPO / "detectors" / "ssh-brute-force.yml").read_text())
    spec["bucket"] = f"{BUCKET_S}s"
    (detectors / "ssh-brute-force.yml").write_text(yaml.safe_dump(spec))
    source = {"poll_interval": f"{POLL_S}s", "max_lateness": f"{LATENESS_S}s"}
    body = throughput.agent_settings(node, INDEX, PREFIX, str(detectors / "*.yml"), **source)
    body["elasticsearch"] = {
        "hosts": [node.url],
        "username": node.user,
        "password_file": str(password_file()),
    }
    path = folder / "nis2triage.yml"
    path.write_text(yaml.safe_dump(body))
    return path


def start_agent(config: Path, log_file: Path) -> subprocess.Popen[bytes]:
    cli = shutil.which("nis2triage") or str(Path(sys.executable).with_name("nis2triage"))
    env = dict(
        os.environ,
        NIS2TRIAGE_SNAPSHOT_KEY=secrets.token_hex(32),
        NIS2TRIAGE_PSEUDONYM_KEY=secrets.token_hex(32),
    )
    with log_file.open("wb") as sink:
        return subprocess.Popen(
            [cli, "run", "-c", str(config)], stdout=sink, stderr=subprocess.STDOUT, env=env
        )


def _failure(ip: str, user: str, at_ms: int) -> dict[str, Any]:
    return {
        "@timestamp": iso_ms(at_ms),
        "event": {"category": "authentication", "action": "ssh_login", "outcome": "failure"},
        "host": {"name": "host1"},
        "user": {"name": user},
        "source": {"ip": ip},
        "system": {"auth": {"ssh": {"event": "Failed", "method": "password"}}},
    }


class Background(threading.Thread):
    """Internet noise: a few failed logins a second, each from a random scanner address."""

    def __init__(self, es: Elasticsearch) -> None:
        super().__init__(daemon=True)
        self.es = es
        self.stopping = threading.Event()

    def run(self) -> None:
        rng = random.Random(7)
        while not self.stopping.wait(0.5):
            now = int(time.time() * 1000)
            docs = [
                _failure(f"100.120.{rng.randrange(256)}.{rng.randrange(256)}", "root", now)
                for _ in range(3)
            ]
            helpers.bulk(self.es, ({"_index": INDEX, "_source": d} for d in docs))


def _reset(es: Elasticsearch) -> None:
    for pattern in (INDEX, f"{PREFIX}-*"):
        es.options(ignore_status=404).indices.delete(index=pattern, expand_wildcards="all")
    es.indices.create(index=INDEX, mappings=STREAM_MAPPING, settings={"number_of_replicas": 0})


def _burst(es: Elasticsearch, ip: str) -> tuple[float, int]:
    """60 failures in the last 1.5 s of a bucket; (time indexed, bucket end in ms)."""
    span = BUCKET_S * 1000
    now = int(time.time() * 1000)
    end = now - now % span + span
    if end - now < 2500:
        end += span
    time.sleep(max(0.0, (end - 1600 - int(time.time() * 1000)) / 1000))
    base = end - 1500
    docs = [_failure(ip, f"user{i % 6}", base + i * 20) for i in range(60)]
    helpers.bulk(es, ({"_index": INDEX, "_source": d} for d in docs), refresh="true")
    return time.time(), end


def _wait_alert(es: Elasticsearch, ip: str, timeout_s: float) -> float | None:
    """When an alert naming `ip` became searchable (polling every 50 ms), or None."""
    deadline = time.time() + timeout_s
    query = {"term": {"source.ip": ip}}
    while time.time() < deadline:
        found = es.options(ignore_status=404).search(index=f"{PREFIX}-alerts", query=query, size=0)
        if found.get("hits", {}).get("total", {}).get("value", 0):
            return time.time()
        time.sleep(0.05)
    return None


def measure(es: Elasticsearch, node: NodeInfo, folder: Path, bursts: int = 20) -> list[Burst]:
    """Run the agent, warm it up on background noise, then time `bursts` attack bursts."""
    _reset(es)
    config = write_config(folder, node)
    noise = Background(es)
    noise.start()
    agent = start_agent(config, folder / "agent.log")
    results = []
    try:
        # Warm-up: the detector scores nothing before `warmup` buckets and one HST window.
        time.sleep(4 * BUCKET_S)
        for k in range(bursts):
            ip = f"203.0.113.{100 + k}"
            indexed, end_ms = _burst(es, ip)
            seen = _wait_alert(es, ip, timeout_s=3 * BUCKET_S)
            closable = end_ms / 1000 + LATENESS_S
            results.append(
                Burst(
                    ip,
                    None if seen is None else seen - indexed,
                    None if seen is None else seen - max(indexed, closable),
                )
            )
            log.info("burst %d: %s", k + 1, results[-1])
    finally:
        noise.stopping.set()
        agent.terminate()
        agent.wait(timeout=60)
    return results
