"""The benchmark's arithmetic: percentiles against numpy, alerts matched to attacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from nis2triage.bench.metrics import detects, median, percentile, score
from nis2triage.bench.stream import Attack
from nis2triage.records import Alert

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def alert(field: str, entity: str, start_min: int, end_min: int) -> Alert:
    start, end = T0 + timedelta(minutes=start_min), T0 + timedelta(minutes=end_min)
    return Alert("detector", "d", "1", "high", end, start, end, 1.0, 0.5, field, entity, "", "", "")


def attack(kind: str, ip: str, start_min: int, end_min: int) -> Attack:
    start, end = T0 + timedelta(minutes=start_min), T0 + timedelta(minutes=end_min)
    return Attack(kind, {"source.ip": (ip,)}, start, end, 10)


@pytest.mark.parametrize(
    "values",
    [[3.0], [1.0, 2.0], [5.0, 1.0, 4.0, 2.0, 3.0], list(np.random.default_rng(7).random(37))],
    ids=["one", "two", "five", "thirty-seven"],
)
@pytest.mark.parametrize("q", [0, 50, 95, 100])
def test_percentile_agrees_with_numpy(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_percentile_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (alert("source.ip", "203.0.113.9", 5, 10), True),
        (alert("source.ip", "203.0.113.9", 20, 25), True),
        (alert("source.ip", "203.0.113.9", 26, 30), False),
        (alert("source.ip", "203.0.113.8", 5, 10), False),
        (alert("user.name", "203.0.113.9", 5, 10), False),
    ],
    ids=["overlapping", "touching-the-end", "after", "other-entity", "other-field"],
)
def test_an_alert_detects_an_attack_on_the_same_entity_and_overlapping_time(
    candidate: Alert, expected: bool
) -> None:
    assert detects(candidate, attack("brute_force", "203.0.113.9", 3, 20)) is expected


def test_precision_recall_and_time_to_detect() -> None:
    attacks = [attack("brute_force", "203.0.113.1", 0, 10), attack("spray", "198.51.100.1", 30, 50)]
    alerts = [
        alert("source.ip", "203.0.113.1", 5, 10),
        alert("source.ip", "203.0.113.1", 0, 5),
        alert("source.ip", "100.64.0.1", 5, 10),
    ]

    result = score(alerts, attacks)

    assert (result.true_alerts, result.alerts, result.detected, result.attacks) == (2, 3, 1, 2)
    assert result.precision == pytest.approx(2 / 3)
    assert result.recall == 0.5
    assert [(k.kind, k.detected, k.seconds_to_detect) for k in result.by_kind] == [
        ("brute_force", 1, (300.0,)),
        ("spray", 0, ()),
    ]
