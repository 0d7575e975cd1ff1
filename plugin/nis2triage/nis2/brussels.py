"""Time as the CCB reads it: stored in UTC, shown and counted in months in Europe/Brussels."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

# The IANA data comes from the system or, where it has none (Windows, slim
# containers), from the `tzdata` package (a dependency in setup.cfg).
BRUSSELS = ZoneInfo("Europe/Brussels")


def require_aware(moment: datetime, name: str) -> datetime:
    """`moment` in UTC; a naive datetime is refused because its zone would be a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
    return moment.astimezone(UTC)


def to_brussels(moment: datetime) -> datetime:
    return require_aware(moment, "moment").astimezone(BRUSSELS)


def show(moment: datetime) -> str:
    """A moment as a Belgian reader expects it, e.g. '2026-03-29 11:00 CEST'."""
    return to_brussels(moment).strftime("%Y-%m-%d %H:%M %Z")


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` moved by whole calendar months on the Brussels wall clock, in UTC.

    The day is clamped to the target month (31 January + 1 month = 28 or 29
    February). A wall-clock time that does not exist (the spring-forward hour)
    or exists twice (the autumn-back hour) resolves to the earlier instant,
    because a deadline that errs should err early.
    """
    local = to_brussels(moment)
    index = local.year * 12 + local.month - 1 + months
    year, month = divmod(index, 12)
    day = min(local.day, calendar.monthrange(year, month + 1)[1])
    return _earliest(local.replace(tzinfo=None, year=year, month=month + 1, day=day))


def local_days_later(moment: datetime, days: int) -> datetime:
    """The same Brussels wall-clock time `days` calendar days on, in UTC (earlier if ambiguous)."""
    wall = to_brussels(moment).replace(tzinfo=None) + timedelta(days=days)
    return _earliest(wall)


def _earliest(wall: datetime) -> datetime:
    """The first UTC instant a naive Brussels wall-clock time can mean.

    In the spring-forward gap the wall time never shows; fold=1 reads it with
    summer time, which lands before the gap. In the autumn-back hour it shows
    twice; fold=0 is the first showing.
    """
    readings = (wall.replace(tzinfo=BRUSSELS, fold=fold).astimezone(UTC) for fold in (0, 1))
    return min(readings)
