"""Calendar months on the Brussels wall clock, and times shown as a Belgian reader expects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nis2triage.nis2.brussels import BRUSSELS, add_months, local_days_later, show


def brussels(text: str, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BRUSSELS, fold=fold)


@pytest.mark.parametrize(
    ("start", "months", "want"),
    [
        pytest.param("2025-01-31 23:30", 1, "2025-02-28 23:30 CET", id="clamped-to-28-feb"),
        pytest.param("2024-01-31 23:30", 1, "2024-02-29 23:30 CET", id="clamped-to-29-feb"),
        pytest.param("2025-03-31 12:00", 1, "2025-04-30 12:00 CEST", id="clamped-to-30-apr"),
        pytest.param("2025-12-15 08:00", 1, "2026-01-15 08:00 CET", id="over-new-year"),
        pytest.param("2025-08-31 14:00", -6, "2025-02-28 14:00 CET", id="six-months-back"),
        # 29 March 2026 02:30 never shows; the earlier reading is 01:30 CET.
        pytest.param("2026-01-29 02:30", 2, "2026-03-29 01:30 CET", id="into-the-gap"),
        # 25 October 2026 02:30 shows twice; the first is summer time.
        pytest.param("2026-09-25 02:30", 1, "2026-10-25 02:30 CEST", id="into-the-repeat"),
    ],
)
def test_add_months(start: str, months: int, want: str) -> None:
    assert show(add_months(brussels(start), months)) == want


def test_add_months_answers_in_utc() -> None:
    moved = add_months(datetime(2025, 1, 30, 23, 30, tzinfo=UTC), 1)  # 31 Jan 00:30 in Brussels

    assert moved == datetime(2025, 2, 27, 23, 30, tzinfo=UTC)


def test_local_days_keep_the_wall_clock_across_a_change() -> None:
    later = local_days_later(brussels("2025-03-29 09:00"), 1)

    assert (show(later), later - brussels("2025-03-29 09:00")) == (
        "2025-03-30 09:00 CEST",
        timedelta(hours=23),
    )


@pytest.mark.parametrize(
    ("moment", "want"),
    [
        pytest.param(datetime(2025, 7, 1, 8, 0, tzinfo=UTC), "2025-07-01 10:00 CEST", id="summer"),
        pytest.param(datetime(2025, 12, 31, 23, 30, tzinfo=UTC), "2026-01-01 00:30 CET", id="new"),
        pytest.param(brussels("2026-10-25 02:30", fold=1), "2026-10-25 02:30 CET", id="2nd-230"),
    ],
)
def test_show(moment: datetime, want: str) -> None:
    assert show(moment) == want


def test_show_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="must be timezone-aware"):
        show(datetime(2025, 7, 1, 8, 0))
