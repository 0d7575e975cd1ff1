"""The value types rule files share: durations, filters, ATT&CK tags, regexes, list files.

Each type checks and converts one YAML value, and its error says what was
expected, so the loader can turn it into a message with the file and line.
"""

from __future__ import annotations

import difflib
import re
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
DURATION_HINT = "a duration such as '90s', '5m', '1h', '30d' or {minutes: 5}"

# ATT&CK as Sigma writes it: tactics by name, techniques, groups and software by id.
_ATTACK_TAG = re.compile(r"^attack\.(t\d{4}(\.\d{3})?|[gs]\d{4}|[a-z][a-z_-]+)$")
MAX_LIST_FILE_BYTES = 5_000_000


def _to_timedelta(value: Any) -> Any:
    if isinstance(value, str):
        found = _DURATION.match(value)
        if not found:
            raise ValueError(f"{value!r} is not {DURATION_HINT}")
        return timedelta(**{_UNITS[found.group(2)]: float(found.group(1))})
    if isinstance(value, dict):
        for unit in set(value) - _DICT_UNITS:
            close = difflib.get_close_matches(str(unit), _DICT_UNITS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            units = ", ".join(sorted(_DICT_UNITS))
            raise ValueError(f"unknown unit {unit!r}; {hint}units: {units}")
        return timedelta(**{unit: float(n) for unit, n in value.items()})
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value} has no unit; write e.g. '{value}s' or '{value}m'")
    return value


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("cannot be negative")
    return value


Duration = Annotated[timedelta, BeforeValidator(_to_timedelta), AfterValidator(_positive)]
# A duration that may be zero: `realert: 0s` alerts on every detection.
Period = Annotated[timedelta, BeforeValidator(_to_timedelta), AfterValidator(_not_negative)]


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
    if not isinstance(value, str):
        return value
    base = Path((info.context or {}).get("rule_dir", "."))
    path = base / value
    try:
        if path.stat().st_size > MAX_LIST_FILE_BYTES:
            raise ValueError(f"{path} is larger than {MAX_LIST_FILE_BYTES} bytes; split it")
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(
            f"cannot read list file {path}: {exc.strerror}; "
            "paths are relative to the rule file's folder"
        ) from None
    except UnicodeDecodeError:
        raise ValueError(f"list file {path} is not UTF-8 text") from None
    values = {s.strip() for s in lines if s.strip() and not s.strip().startswith("#")}
    return ValueList(str(path), frozenset(values))


ListFile = Annotated[ValueList, BeforeValidator(_read_value_list)]


class TriageHint(BaseModel):
    """What the rule's author knows that helps triage route the alert."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Set when a match is likely a significant incident (NIS2 art. 23(3)), so that
    # triage considers the 24-hour early warning to the CCB (art. 23(4)(a)).
    early_warning_candidate: bool = False
