"""The range rule against the minimum and maximum seen before each value."""

from __future__ import annotations

import pytest

from nis2triage.models.range_rule import RangeRule, RangeSettings

NO_WARMUP = RangeSettings(warmup=1)


def last_score(values: list[float], settings: RangeSettings = NO_WARMUP) -> float:
    rule = RangeRule(settings)
    return [rule.score_one(v) for v in values][-1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(15.0, 0.0), (20.4, 0.0), (20.6, 1.0), (9.4, 1.0), (9.6, 0.0)],
    ids=["inside", "above-within-margin", "above-beyond-margin", "below-beyond", "below-within"],
)
def test_fires_beyond_5_percent_of_the_seen_range(value: float, expected: float) -> None:
    # Seen range 10..20: the margin is 0.5 on either side.
    assert last_score([10.0, 20.0, value]) == expected


def test_a_flat_series_fires_on_any_change() -> None:
    assert last_score([3.0] * 50 + [3.01]) == 1.0


def test_a_value_is_scored_before_it_widens_the_range() -> None:
    rule = RangeRule(RangeSettings(warmup=2))

    scores = [rule.score_one(v) for v in (10.0, 20.0, 30.0, 30.0)]

    assert scores == [0.0, 0.0, 1.0, 0.0]


def test_nothing_fires_during_the_warm_up() -> None:
    values = [1.0, 2.0, 50.0]

    assert last_score(values, RangeSettings(warmup=3)) == 0.0
    assert last_score(values, RangeSettings(warmup=2)) == 1.0


def test_a_negative_margin_is_refused() -> None:
    with pytest.raises(ValueError, match="margin must be >= 0"):
        RangeSettings(margin=-0.1)
