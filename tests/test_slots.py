"""Buckets judged a slot at a time as columns (`slots`) against the one-by-one path: the
same alerts, scores, baselines and counters, to the last bit."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nis2triage.detectors import Detector, DetectorSpec, load_spec
from nis2triage.features import Baselines, Bucket, Rising
from nis2triage.records import Event
from nis2triage.slots import expected_levels, measured

from support import DETECTORS

T0 = datetime(2026, 11, 2, tzinfo=UTC)


class OneByOne(Detector):
    """The detector with every bucket judged on its own, as before `slots`."""

    def _batch_model(self) -> Any:
        return None


def attempts(seed: int, users: int, quarters: int) -> list[Event]:
    """Logons of `users` accounts over `quarters` quarter hours: a few each, some failing,
    from a handful of addresses, and now and then a burst of failures."""
    rng = random.Random(seed)
    events = []
    for quarter in range(quarters):
        for user in rng.sample(range(users), k=users // 2):
            burst = rng.random() < 0.02
            for _ in range(rng.randint(20, 60) if burst else rng.randint(1, 4)):
                when = T0 + timedelta(minutes=15 * quarter, seconds=rng.randrange(900))
                doc = {
                    "event": {
                        "category": "authentication",
                        "outcome": "failure" if burst or rng.random() < 0.1 else "success",
                    },
                    "user": {"name": f"u{user}"},
                    "source": {"ip": f"198.51.100.{rng.randrange(1, 6 if not burst else 200)}"},
                    "system": {
                        "auth": {
                            "ssh": {
                                "event": "Failed",
                                "method": "password",
                                "invalid_user": rng.random() < 0.3,
                            }
                        }
                    },
                }
                events.append(Event.at("logs-x", str(len(events)), when, doc))
    events.sort(key=lambda e: e.ts_ms)
    return events


def judged(detector: Detector, events: list[Event]) -> tuple[list[Any], Any]:
    alerts = []
    for i in range(0, len(events), 500):
        page = events[i : i + 500]
        detector.ingest_many(page)
        alerts += detector.close(page[-1].ts_ms - 60_000, "logs-x")
    alerts += detector.close(2**62, "logs-x")
    state = (
        list(detector.baselines.means.items()),
        detector.stats(),
        detector.threshold.quantile.get(),
    )
    return alerts, state


@pytest.mark.parametrize("cap", [100_000, 40], ids=["under-the-cap", "evicting"])
@pytest.mark.parametrize("name", ["auth-volume-per-user.yml", "ssh-brute-force.yml"])
def test_a_slot_as_columns_judges_as_one_bucket_at_a_time(name: str, cap: int) -> None:
    spec = load_spec(DETECTORS / name).model_copy(update={"max_entities": cap})
    events = attempts(seed=3, users=60, quarters=40)

    columns, columns_state = judged(Detector(spec), events)
    reference, reference_state = judged(OneByOne(spec), events)

    assert columns_state == reference_state
    assert columns == reference
    assert len(columns) > 0  # the bursts alert: the comparison covers alerts too


def test_an_infinite_feature_is_set_aside_in_a_slot_as_one_bucket_at_a_time() -> None:
    spec = DetectorSpec.model_validate(
        {
            **load_spec(DETECTORS / "network" / "outbound-bytes-per-host.yml").model_dump(),
            "model": [{"anomaly.HalfSpaceTrees": {"n_trees": 5, "height": 3, "seed": 1}}],
            "target": None,
            "tail": "both",
            "threshold": {"quantile": 0.9, "floor": 0.0},
            "warmup": 0,
        }
    )
    flows = [
        Event.at(
            "logs-x",
            f"{q}-{h}-{k}",
            T0 + timedelta(minutes=15 * q, seconds=h),
            {
                "event": {"category": "network"},
                "network": {"direction": "outbound"},
                "source": {"ip": f"10.0.0.{h}", "bytes": 1.5e308 if (q, h) == (3, 2) else 5000},
                "destination": {"ip": "192.0.2.1"},
            },
        )
        for q in range(8)
        for h in range(5)
        for k in range(2)
    ]

    columns, columns_state = judged(Detector(spec), flows)
    reference, reference_state = judged(OneByOne(spec), flows)

    assert columns_state == reference_state
    assert columns == reference
    assert columns_state[1]["unscorable"] == 1


def test_measured_columns_equal_each_buckets_vector() -> None:
    spec = load_spec(DETECTORS / "ssh-brute-force.yml")
    measured_specs = [f for f in spec.features if f.kind != "rise"]
    buckets = [
        Bucket(0, events=7, counts={"failures": 7, "invalid_share": 3}, distinct={"users": {"a"}}),
        Bucket(0, events=1, counts={}, distinct={}),
        Bucket(0, events=2, counts={"failures": 2, "invalid_share": 2}, distinct={}),
    ]

    columns = measured(buckets, measured_specs)

    for row, bucket in zip(columns.tolist(), buckets, strict=True):
        assert row == list(bucket.vector(measured_specs).values())


def test_expected_levels_equal_each_entitys_expected_level() -> None:
    spec = load_spec(DETECTORS / "auth-volume-per-user.yml")
    rising = Rising.of([f for f in spec.features if f.kind == "rise"], spec.bucket)
    baselines = Baselines(spec.bucket, 10)
    quarter = 15 * 60_000
    baselines.store("ann", 0, {"failures_rise": 1.7, "sources_rise": 0.3})
    baselines.store("bob", 5 * quarter, {"failures_rise": 0.2})

    rows = expected_levels(baselines, ["ann", "bob", "cy"], 9 * quarter, rising)

    assert rows.tolist() == [
        list(baselines.expected(entity, 9 * quarter, rising).values())
        for entity in ["ann", "bob", "cy"]
    ]
    assert rows[2].tolist() == [0.0, 0.0]
    assert 0.0 < rows[0][0] < 1.7
