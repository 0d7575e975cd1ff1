"""The crash harness: SIGKILL the agent at 50+ points while events stream in.

An agent process runs its loop over an index that a writer thread fills while
it runs. The harness kills it with SIGKILL, at random moments and at chosen
ones (inside a bulk write of alerts, between writing alerts and saving the
checkpoint, right after saving, while a notification POST is answered, and
from the CCB server while it holds a POST unanswered), and restarts it each
time. At the end, a clean reference run over the same events, from nothing,
must agree exactly: every alert exists once, every notification reached the
receiver (counted by idempotency key), and the models learned every event
once (their counters equal the reference's).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch, helpers

from nis2triage import esclient
from nis2triage.demo import LOG_MAPPING
from nis2triage.faults import POINTS

from ccb_server import CcbServer, running_ccb
from support import write_agent_config

KILLS = 52
WRITE_SECONDS = 40
SEED = 20261204

DETECTOR = {
    "name": "crash-brute-force",
    "severity": "high",
    "source": "auth",
    "filter": {"all_of": {"event.outcome": "failure"}},
    "entity": "source.ip",
    "bucket": "5s",
    "features": [
        {"name": "failures", "kind": "count", "transform": "log1p"},
        {"name": "users", "kind": "distinct", "field": "user.name", "transform": "log1p"},
    ],
    "model": [
        {
            "anomaly.HalfSpaceTrees": {
                "n_trees": 15,
                "height": 5,
                "window_size": 8,
                "seed": 3,
                "limits": {"failures": [0.0, 5.0], "users": [0.0, 3.0]},
            }
        }
    ],
    "threshold": {"quantile": 0.9, "floor": 0.7},
    "warmup": 8,
    "hints": {"malicious": True},
}


@dataclass
class Stream:
    """A writer thread indexing sshd-like failures, with bursts from attacker addresses."""

    es: Elasticsearch
    index: str
    rng: random.Random
    written: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        started = time.monotonic()
        chunk = 0
        while time.monotonic() - started < WRITE_SECONDS:
            docs = self._chunk(chunk)
            helpers.bulk(self.es, docs, refresh="wait_for")
            self.written += len(docs)
            chunk += 1
            time.sleep(0.25)
        self.done.set()

    def _chunk(self, n: int) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        ips = [f"198.51.100.{self.rng.randint(1, 200)}" for _ in range(self.rng.randint(2, 6))]
        if n % 16 in (0, 1, 2, 3, 4, 5):  # a 1.5 s burst every 4 s
            ips += [f"203.0.113.{n // 16}"] * 8
        return [self._doc(ip, now, i) for i, ip in enumerate(ips)]

    def _doc(self, ip: str, now: datetime, i: int) -> dict[str, Any]:
        ts = now - timedelta(milliseconds=self.rng.randint(0, 200))
        user = self.rng.choice(["root", "admin", "oracle", "test", "git", "ubuntu"])
        doc = {
            "@timestamp": ts.isoformat(),
            "host": {"name": "LabSZ"},
            "source": {"ip": ip},
            "user": {"name": user},
            "event": {"category": "authentication", "outcome": "failure"},
        }
        return {"_index": self.index, "_source": doc}


def agent(config: Path, crash_at: str | None = None, once: bool = False) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("NIS2TRIAGE_CRASH_AT", None)
    if crash_at:
        env["NIS2TRIAGE_CRASH_AT"] = crash_at
    argv = [sys.executable, "-m", "nis2triage.cli", "run", "--config", str(config)]
    return subprocess.Popen(
        argv + (["--once"] if once else []),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_once(config: Path, ccb: CcbServer, rng: random.Random, n: int) -> str:
    """Start the agent and make it die one way or another; return how it died."""
    mode = ["random", "point", "ccb"][n % 3]
    crash_at = f"{rng.choice(POINTS)}:{rng.randint(1, 2)}" if mode == "point" else None
    proc = agent(config, crash_at)
    if mode == "ccb":
        ccb.kill_pid = proc.pid
    # A chosen point may take a few cycles to come, and the agent's start takes longer on a
    # busy machine; a POST comes early or not at all; a random kill does not wait.
    patience = {"random": rng.uniform(0.5, 3.0), "point": 20.0, "ccb": 8.0}[mode]
    try:
        proc.wait(timeout=patience)
        how = f"at {crash_at}" if crash_at else "by the CCB server during a POST"
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        how = "random"
    ccb.kill_pid = None
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"the agent died of itself: {stderr}"
    return how


def finish(config: Path) -> None:
    proc = agent(config, once=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err


def state_stats(es: Elasticsearch, prefix: str) -> dict[str, Any]:
    return dict(es.get(index=f"{prefix}-state", id="source-auth")["_source"]["stats"])


def ids(es: Elasticsearch, index: str) -> list[str]:
    es.indices.refresh(index=index)
    hits = helpers.scan(es, index=index, query={"query": {"match_all": {}}}, _source=False)
    return [h["_id"] for h in hits]


@pytest.mark.usefixtures("agent_env")
def test_kill_minus_nine_at_50_points_loses_and_duplicates_nothing(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    # A short refresh interval keeps the writer's wait_for bulk calls quick.
    es.indices.create(
        index=index_name, mappings=LOG_MAPPING, settings={"refresh_interval": "200ms"}
    )
    detectors = tmp_path / "detectors"
    detectors.mkdir()
    (detectors / "crash.yml").write_text(yaml.safe_dump(DETECTOR))
    stream = Stream(es, index_name, rng)
    writer = threading.Thread(target=stream.run, daemon=True)
    deaths: list[str] = []

    with running_ccb() as ccb:
        notifier = {"mode": "send", "endpoint": ccb.url, "token_env": "NIS2TRIAGE_CCB_TOKEN"}
        crashy = write_agent_config(
            tmp_path / "crash", es_settings, index_name, f"{index_name}-c", notifier
        )
        for path in (crashy,):
            _use_detectors(path, detectors)
        writer.start()
        while len(deaths) < KILLS or not stream.done.is_set():
            deaths.append(kill_once(crashy, ccb, rng, len(deaths)))
        time.sleep(6)  # past the lateness margin, so every bucket can close
        finish(crashy)
        received = list(ccb.idempotency_keys)

    reference = write_agent_config(tmp_path / "ref", es_settings, index_name, f"{index_name}-r")
    _use_detectors(reference, detectors)
    finish(reference)

    crash_alerts, ref_alerts = ids(es, f"{index_name}-c-alerts"), ids(es, f"{index_name}-r-alerts")
    crash_outbox, ref_outbox = ids(es, f"{index_name}-c-outbox"), ids(es, f"{index_name}-r-outbox")
    kinds = Counter(deaths)
    print(f"\ncrash harness: {len(deaths)} kills: {dict(kinds)}")
    print(
        f"{stream.written} events; {len(ref_alerts)} alerts expected, {len(crash_alerts)} "
        f"stored; {len(ref_outbox)} notifications expected, {len(set(received))} distinct "
        f"idempotency keys received in {len(received)} POSTs"
    )
    assert len(deaths) >= 50
    assert sum(d.startswith("at ") for d in deaths) >= 5
    assert sum(d.startswith("by the CCB") for d in deaths) >= 1
    assert len(ref_alerts) > 0 and len(ref_outbox) > 0
    assert sorted(crash_alerts) == sorted(ref_alerts)
    assert sorted(set(received)) == sorted(crash_outbox) == sorted(ref_outbox)
    assert state_stats(es, f"{index_name}-c") == state_stats(es, f"{index_name}-r")
    assert state_stats(es, f"{index_name}-r")["crash-brute-force"]["events"] == stream.written


def _use_detectors(config: Path, folder: Path) -> None:
    data = yaml.safe_load(config.read_text())
    data["detectors"] = [str(folder / "*.yml")]
    data["sources"][0].update(poll_interval="0.3s", max_lateness="5s", batch_size=100)
    config.write_text(yaml.safe_dump(data))
