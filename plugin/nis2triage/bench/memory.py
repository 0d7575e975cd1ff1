"""Peak memory of the agent's detector state with a million distinct entities, in a child process.

The child loads the shipped detectors, sets their `max_entities`, and feeds
them one failed SSH login from each of N distinct addresses and accounts,
all inside one bucket, so every entity holds an open bucket at once: the
worst case for the per-entity state. Events are made one at a time and not
kept, so the peak resident memory (`getrusage`) is the detectors' state plus
the interpreter; the source's one batch in flight is not part of it. The
child also reports the size of the signed snapshot the agent would save.

    python -m nis2triage.bench.memory ENTITIES MAX_ENTITIES
"""

from __future__ import annotations

import json
import pickle
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nis2triage.detectors import Detector, load_spec
from nis2triage.records import Event

DETECTORS = Path(__file__).resolve().parents[3] / "detectors"


@dataclass(frozen=True)
class MemoryRun:
    """One child's figures: entities fed, cap, peak RSS, open and evicted entities, snapshot."""

    entities: int
    max_entities: int
    baseline_mb: float
    state_mb: float
    peak_mb: float
    open_entities: int
    evicted_entities: int
    snapshot_mb: float
    seconds: float


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _event(i: int, at: datetime) -> Event:
    doc = {
        "event": {"category": "authentication", "action": "ssh_login", "outcome": "failure"},
        "user": {"name": f"account{i}"},
        "source": {"ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"},
        "host": {"name": "host1"},
        "system": {"auth": {"ssh": {"event": "Failed", "method": "password"}}},
    }
    return Event.at("bench-memory", str(i), at, doc)


BATCH = 1000


def child(entities: int, cap: int) -> MemoryRun:
    baseline = peak_mb()
    specs = [load_spec(p).model_copy(update={"max_entities": cap}) for p in DETECTORS.glob("*.yml")]
    detectors = [Detector(spec) for spec in specs]
    at = datetime(2026, 11, 2, 12, 0, 1, tzinfo=UTC)

    started = time.perf_counter()
    for first in range(0, entities, BATCH):
        # In pages of a source's batch size, as the agent hands them over.
        batch = [_event(i, at) for i in range(first, min(first + BATCH, entities))]
        for detector in detectors:
            detector.ingest_many(batch)
    seconds = time.perf_counter() - started
    state = peak_mb()

    # Pickling for the snapshot (as the agent does every 50 batches) sets the real peak.
    snapshot = len(pickle.dumps(detectors, protocol=pickle.HIGHEST_PROTOCOL))
    return MemoryRun(
        entities=entities,
        max_entities=cap,
        baseline_mb=baseline,
        state_mb=state,
        peak_mb=peak_mb(),
        open_entities=max(len(d.table.open) for d in detectors),
        evicted_entities=sum(d.table.evicted_entities for d in detectors),
        # The agent stores it base64-encoded: four bytes for every three.
        snapshot_mb=snapshot * 4 / 3 / 1e6,
        seconds=seconds,
    )


def measure(entities: int, cap: int) -> MemoryRun:
    """Run the child in a fresh interpreter, so nothing else counts toward its peak."""
    out = subprocess.run(
        [sys.executable, "-m", "nis2triage.bench.memory", str(entities), str(cap)],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    ).stdout
    return MemoryRun(**json.loads(out.strip().splitlines()[-1]))


if __name__ == "__main__":
    from dataclasses import asdict

    run = child(int(sys.argv[1]), int(sys.argv[2]))
    print(json.dumps(asdict(run)))
