"""Date math index names (`<logs-{now/d}>`) read over a span of time, not at one moment.

Elasticsearch resolves such a name at the moment of the request: `<logs-{now/d}>` names
today's index alone. A poll reads from its checkpoint (minus `max_lateness`) to now, so
after midnight UTC the events of yesterday's index that the last poll had not read (the
last poll interval's, those indexed late, a whole day's when the agent was down) were
never read. Each date math name is therefore also asked as it resolved at each step back
over the span of the read: `<logs-{now-86400s/d}>` names yesterday's index.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from datetime import timedelta

log = logging.getLogger(__name__)

# The units a date math expression rounds to (`now/d`), and how far apart the indices it
# names lie. Without a rounding (`{now{yyyy.MM.dd}}`) the format alone tells the period,
# which is not worked out here: an hour is taken, short enough for hourly indices.
_ROUNDINGS = {
    "y": timedelta(days=365),
    "M": timedelta(days=28),
    "w": timedelta(days=7),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "H": timedelta(hours=1),
    "m": timedelta(minutes=1),
}
_ROUNDED = re.compile(r"\{now[^{}/]*/([yMwdhHm])")
DEFAULT_STEP = timedelta(hours=1)
# Names asked per date math name at most: the list goes in the request's URL, which a
# node takes up to 4 kB long (http.max_initial_line_length).
MAX_STEPS = 24


def is_date_math(name: str) -> bool:
    return name.startswith("<") and name.endswith(">") and "{now" in name


def step_of(name: str) -> timedelta:
    """How far apart the indices `name` resolves to lie: its finest rounding's unit."""
    found = [_ROUNDINGS[unit] for unit in _ROUNDED.findall(name)]
    return min(found) if found else DEFAULT_STEP


def over(name: str, span: timedelta) -> tuple[list[str], bool]:
    """`name` as it resolves now and at each step back over `span` (a name without date
    math as it is), and whether `span` held more steps than `MAX_STEPS`."""
    if not is_date_math(name) or span <= timedelta(0):
        return [name], False
    step = step_of(name)
    steps = math.ceil(span / step)
    backs = [min(k * step, span) for k in range(1, min(steps, MAX_STEPS - 1) + 1)]
    if span not in backs:
        backs.append(span)  # the oldest moment of the read, always
    return [name, *(_back(name, by) for by in backs)], steps >= MAX_STEPS


def _back(name: str, by: timedelta) -> str:
    """`name` with every `now` of it moved `by` back (`{now-3600s/d}`)."""
    seconds = math.ceil(by.total_seconds())
    return name.replace("{now", f"{{now-{seconds}s")


def expand(names: Iterable[str], span: timedelta, where: str, said: set[str]) -> list[str]:
    """Each of `names` (comma-separated lists split) as `over` gives it; a name read back
    over less than `span` is said once per name in `said`, for `where` (a source, a rule)."""
    expanded = []
    for name in (part for item in names for part in item.split(",")):
        resolved, cut = over(name, span)
        expanded += resolved
        if cut and name not in said:
            said.add(name)
            log.warning(
                "%s: %s is read back %d indices only, not over the whole %s the read "
                "covers, so the events of the indices before are not read: name them with "
                "a pattern (logs-*) instead",
                where,
                name,
                MAX_STEPS,
                span,
            )
    return expanded
