"""The value types rule files share: durations, filters, ATT&CK tags, regexes, list files.

Each type checks and converts one YAML value, and its error says what was
expected, so the loader can turn it into a message with the file and line.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo

from nis2triage.rules import lucene
from nis2triage.rules.linear_regex import RulePattern

_UNITS = {
    "ms": "milliseconds",
    "s": "seconds",
    "m": "minutes",
    "h": "hours",
    "d": "days",
    "w": "weeks",
}
# The fixed patterns here stay on `re`: they have no nested repeats, so even a value
# the size of a whole rule file (1 MB at most) is matched in linear time.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_DICT_UNITS = set(_UNITS.values())
_SECONDS = {
    "milliseconds": 0.001,
    "seconds": 1,
    "minutes": 60,
    "hours": 3_600,
    "days": 86_400,
    "weeks": 604_800,
}
DURATION_HINT = "a duration such as '90s', '5m', '1h', '30d' or {minutes: 5}"
# The longest duration a rule may give (timeframe, realert, key_lookback, terms_window).
# A year covers every window, quiet period and look-back a detection needs (ElastAlert's
# new_term default is 30 days; a SOC rarely keeps hot indices longer), and it keeps every
# `start - duration` the rule types compute far inside datetime's years 1 to 9999, where
# 999999d overflowed at run time, and every window length in milliseconds inside
# Elasticsearch's long.
MAX_DURATION = timedelta(days=366)
# Elasticsearch counts time in whole milliseconds: a shorter window rounds to zero.
MIN_DURATION = timedelta(milliseconds=1)

# ATT&CK as Sigma writes it: tactics by name, techniques, groups and software by id.
_ATTACK_TAG = re.compile(r"^attack\.(t\d{4}(\.\d{3})?|[gs]\d{4}|[a-z][a-z_-]+)$")
MAX_LIST_FILE_BYTES = 5_000_000


def _to_timedelta(value: Any) -> Any:
    if isinstance(value, str):
        found = _DURATION.match(value)
        if not found:
            raise ValueError(f"{value!r} is not {DURATION_HINT}")
        return _bounded({_UNITS[found.group(2)]: float(found.group(1))}, value)
    if isinstance(value, dict):
        for unit in set(value) - _DICT_UNITS:
            close = difflib.get_close_matches(str(unit), _DICT_UNITS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            units = ", ".join(sorted(_DICT_UNITS))
            raise ValueError(f"unknown unit {unit!r}; {hint}units: {units}")
        return _bounded({unit: _amount(unit, n) for unit, n in value.items()}, value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value} has no unit; write e.g. '{value}s' or '{value}m'")
    return value


def _amount(unit: str, n: Any) -> float:
    """How many of `unit`: a number (YAML reads 1e10 as text, so a numeric text too)."""
    try:
        if isinstance(n, bool) or not isinstance(n, int | float | str):
            raise TypeError
        return float(n)
    except (TypeError, ValueError):
        raise ValueError(f"{unit}: {n!r} is not a number; write e.g. {{{unit}: 5}}") from None


def _bounded(parts: dict[str, float], given: Any) -> timedelta:
    """The duration, refused beyond MAX_DURATION before timedelta can overflow or fail."""
    seconds = sum(n * _SECONDS[unit] for unit, n in parts.items())
    if math.isnan(seconds):
        raise ValueError(f"{given!r} is not a number of {' or '.join(parts)}; write e.g. '5m'")
    if abs(seconds) > MAX_DURATION.total_seconds():
        days = MAX_DURATION.days
        raise ValueError(
            f"{given!r} is longer than the longest duration a rule may give, {days}d "
            f"(a year); write at most '{days}d'"
        )
    return timedelta(**parts)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    if value < MIN_DURATION:
        raise ValueError("must be at least 1ms: Elasticsearch counts time in milliseconds")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("cannot be negative")
    return value


Duration = Annotated[timedelta, BeforeValidator(_to_timedelta), AfterValidator(_positive)]
# A duration that may be zero: `realert: 0s` alerts on every detection.
Period = Annotated[timedelta, BeforeValidator(_to_timedelta), AfterValidator(_not_negative)]


def _field_name(name: str) -> str:
    """A field to read by: '' failed every search with a 400 naming no field, and a space
    around the name (`source.ip `) names a field no document has, so nothing matched."""
    if not name.strip():
        raise ValueError("a field name is needed, such as @timestamp or source.ip")
    if name != name.strip() or any(not c.isprintable() for c in name):
        raise ValueError(
            f"{name!r} has a space or a control character around it: write {name.strip()!r}"
        )
    if "" in name.split("."):
        # The node refuses a document with such a key (an empty field name), so the field
        # can hold nothing and a filter or key on it would never match, without an error.
        raise ValueError(
            f"{name!r} has an empty part between its dots: write the field's dotted name, "
            "such as source.ip"
        )
    if "*" in name:
        # The node expands `*` in some field names (exists, _source) and not in others
        # (terms, aggregations, sort): a rule counting by `source.*` matched nothing and
        # found no document lacking it either, so it never fired and never said why.
        raise ValueError(
            f"{name!r} is a pattern, but the key names one field: Elasticsearch would read "
            "it as a wildcard in some searches and as a name in others, and nothing would "
            "match without an error; name the field itself, such as source.ip"
        )
    return name


FieldName = Annotated[str, AfterValidator(_field_name)]


def _check_filter(value: Any) -> Any:
    if isinstance(value, str):
        lucene.check_query_string(value)
    elif isinstance(value, dict):
        if len(value) != 1:
            raise ValueError(
                "a query DSL filter is a mapping with exactly one query, e.g. {bool: {...}}; "
                f"got keys {sorted(value)}"
            )
        lucene.check_dsl(value)
    return value


# A Lucene query string, or one Elasticsearch query DSL clause.
Filter = Annotated[str | dict[str, Any], AfterValidator(_check_filter)]


def _check_tag(value: str) -> str:
    if not _ATTACK_TAG.match(value):
        raise ValueError(
            f"{value!r} is not an ATT&CK tag; write e.g. 'attack.t1110.001' (technique) "
            "or 'attack.credential_access' (tactic), in lower case"
        )
    return value


AttackTag = Annotated[str, AfterValidator(_check_tag)]


# Matched against pulled values, so by RE2 in linear time: see `linear_regex`.
Regex = RulePattern


@dataclass(frozen=True)
class ValueList:
    """A list file: one value per line, blank lines and `#` comments ignored."""

    path: str
    values: frozenset[str]


def _read_value_list(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, ValueList):
        return value
    if not isinstance(value, str):
        # Anything else went on to the dataclass, which took a mapping's `path` and
        # `values` unread (and the loader, naming what was missing, failed on a KeyError).
        raise ValueError(
            "a list file is named by its path, relative to the rule file's folder "
            f"(got {value!r}); write e.g. lists/tools.txt"
        )
    context = info.context or {}
    path = Path(context.get("rule_dir", ".")) / value
    root = context.get("list_root")
    if root is not None:
        path = _confined(path, Path(root))
    lines = _read_regular(path).splitlines()
    values = {s.strip() for s in lines if s.strip() and not s.strip().startswith("#")}
    return ValueList(str(path), frozenset(values))


def _confined(path: Path, root: Path) -> Path:
    """`path` with its links resolved, if it lies in `root`'s folder tree.

    A list's values go to Elasticsearch as query terms and into alerts, so a rule file
    must not read /proc/self/environ (the agent's secret keys) or ../../anything. Links
    are resolved first, so a link inside the folder cannot lead out of it either.
    """
    resolved, top = path.resolve(), root.resolve()
    if not resolved.is_relative_to(top):
        raise ValueError(
            f"list file {path} is outside the rule file's folder {top}; "
            "put the list in that folder or one below it (e.g. lists/) and name it relatively"
        )
    return resolved


def _read_regular(path: Path) -> str:
    try:
        # Opened without waiting and checked on the open file: a FIFO would hang the
        # loader, /dev/zero would never end, and a check before opening can be raced.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ValueError(f"list file {path} is not a regular file")
            raw = file.read(MAX_LIST_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(
            f"cannot read list file {path}: {exc.strerror}; "
            "paths are relative to the rule file's folder"
        ) from None
    if len(raw) > MAX_LIST_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_LIST_FILE_BYTES} bytes; split it")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"list file {path} is not UTF-8 text") from None


ListFile = Annotated[ValueList, BeforeValidator(_read_value_list)]


class TriageHint(BaseModel):
    """What the rule's author knows that helps triage route the alert."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Set when a match is likely a significant incident (NIS2 art. 23(3)), so that
    # triage considers the 24-hour early warning to the CCB (art. 23(4)(a)).
    early_warning_candidate: bool = False
