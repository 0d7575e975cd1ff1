"""Triage: every alert goes to one route, `contain`, `early_warning` or `soc`.

Routes are rules in `rules/triage.yml`, tried in order; the first whose
conditions all hold decides, and its name and the conditions that held are
stored on the alert as the reason. An alert no rule claims takes the default.

A file that would leave a route dead is refused at load: an unknown kind or hint
(a typo never holds), an empty list, two routes of one name (the reason would not
tell them apart), a route with no conditions before others (they would never be
tried). Names of rules and detectors depend on the rule set, which is loaded
apart from this file: `unknown_names` says which a route names in vain.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, get_args, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nis2triage import yamlload
from nis2triage.assets import Asset, Criticality, Inventory
from nis2triage.errors import ConfigError
from nis2triage.incidents.assess import HINT_FACTS
from nis2triage.records import SEVERITY_RANK, Alert, Route, Severity
from nis2triage.yamlload import Located

log = logging.getLogger(__name__)

# What an alert can carry: its kind (records.Alert), the hint native and Sigma rules set
# from `triage: {early_warning_candidate: true}` (rules/alerts.py), and the detector hints
# the incident assessment reads (incidents/assess.py). A route on anything else never holds.
KINDS: tuple[str, ...] = get_args(get_type_hints(Alert)["kind"])
HINTS: tuple[str, ...] = ("early_warning_candidate", *HINT_FACTS)


class Conditions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    severity_at_least: Severity | None = None
    # Strict: YAML's `yes` and `true` are no numbers here, as in rules and detectors. Finite:
    # `.inf` is a bar no finite score passes, a route that would never hold.
    score_ratio_at_least: float | None = Field(default=None, gt=0, strict=True, allow_inf_nan=False)
    events_at_least: int | None = Field(default=None, ge=1, strict=True)
    asset_criticality_in: list[Criticality] | None = None
    kinds: list[str] | None = None
    names: list[str] | None = None
    hints_any: list[str] | None = None


class RouteRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    route: Route
    when: Conditions = Conditions()


class TriageRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    default: Route = "soc"
    routes: list[RouteRule] = Field(default_factory=list)


def load_rules(path: str | Path | None) -> TriageRules:
    if path is None:
        return TriageRules()
    located = yamlload.load_file(path)
    if not isinstance(located.data, dict):
        raise ConfigError("a triage file is a mapping with `default` and `routes`", path=str(path))
    try:
        rules = TriageRules.model_validate(located.data)
    except ValidationError as exc:
        from nis2triage.config import validation_error

        raise validation_error(located, exc, TriageRules) from exc
    problems = [*_dead_conditions(located, rules), *_duplicates(located, rules)]
    problems += _catch_all_not_last(located, rules)
    problems.sort(key=lambda p: (p.line or 0, p.column or 0))
    if problems:
        error = ConfigError("\n".join(str(p) for p in problems))
        error.path, error.line = problems[0].path, problems[0].line
        raise error
    return rules


def unknown_names(rules: TriageRules, known: Iterable[str]) -> list[str]:
    """Warnings for the `names` no rule or detector of the rule set has: such a name never
    holds. Warnings, not errors: the rule set is loaded apart from the triage file, and a
    Sigma folder may lose a rule the routes still name."""
    have = set(known)
    said = []
    for rule in rules.routes:
        for name in sorted(set(rule.when.names or ()) - have):
            close = difflib.get_close_matches(name, sorted(have), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            said.append(
                f"triage route {rule.name!r}: no rule or detector is named {name!r}{hint}, "
                "so this condition never holds"
            )
    for warning in said:
        log.warning("%s", warning)
    return said


def _dead_conditions(located: Located, rules: TriageRules) -> list[ConfigError]:
    """Unknown kinds and hints, and empty lists: conditions that can never hold."""
    found = []
    for i, rule in enumerate(rules.routes):
        when = ("routes", i, "when")
        lists: dict[str, list[Any] | None] = {
            "kinds": rule.when.kinds,
            "hints_any": rule.when.hints_any,
            "names": rule.when.names,
            "asset_criticality_in": rule.when.asset_criticality_in,
        }
        for key in [k for k, given in lists.items() if given == []]:
            said = "an empty list never holds; list values or remove the condition"
            found.append(located.error((*when, key), f"route {rule.name!r}: {said}"))
        for key, allowed, label in (("kinds", KINDS, "kinds"), ("hints_any", HINTS, "hints")):
            for j, value in enumerate(lists[key] or ()):
                if value not in allowed:
                    said = f"route {rule.name!r}: {_unknown_value(value, allowed, label)}"
                    found.append(located.error((*when, key, j), said))
    return found


def _unknown_value(value: str, allowed: tuple[str, ...], label: str) -> str:
    close = difflib.get_close_matches(value, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"no alert has {value!r}, so this never holds: {hint}known {label}: {', '.join(allowed)}"


def _duplicates(located: Located, rules: TriageRules) -> list[ConfigError]:
    first: dict[str, int] = {}
    found = []
    for i, rule in enumerate(rules.routes):
        if rule.name in first:
            line = located.line_of(("routes", first[rule.name], "name"))
            said = (
                f"route name {rule.name!r} is already used by the route on line {line}; "
                "an alert's reason names its route, so give each route its own name"
            )
            found.append(located.error(("routes", i, "name"), said))
        first.setdefault(rule.name, i)
    return found


def _always(when: Conditions) -> bool:
    """Whether every alert meets `when`: no conditions, or only ones none can fail (the
    lowest severity, every kind)."""
    lowest = min(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__)
    trivial = Conditions(
        severity_at_least=when.severity_at_least if when.severity_at_least == lowest else None,
        kinds=when.kinds if when.kinds is not None and set(KINDS) <= set(when.kinds) else None,
    )
    return when == trivial


def _catch_all_not_last(located: Located, rules: TriageRules) -> list[ConfigError]:
    """A route without conditions claims every alert: the routes after it are never tried."""
    for i, rule in enumerate(rules.routes[:-1]):
        if _always(rule.when):
            after = ", ".join(repr(r.name) for r in rules.routes[i + 1 :])
            said = (
                f"route {rule.name!r} has no condition an alert can fail, so it claims every "
                f"alert and the "
                f"routes after it ({after}) are never tried; give it conditions, move it "
                f"last, or drop it and write `default: {rule.route}`"
            )
            return [located.error(("routes", i), said)]
    return []


def score_ratio(alert: Alert) -> float:
    """How far past its bar the alert went (score / threshold); 1.0 when there is no bar."""
    return alert.score / alert.threshold if alert.threshold > 0 else 1.0


def _holds(when: Conditions, alert: Alert, asset: Asset | None) -> list[str] | None:
    """The conditions that held, in words, or None when one did not."""
    said: list[str] = []
    if when.severity_at_least is not None:
        if SEVERITY_RANK[alert.severity] < SEVERITY_RANK[when.severity_at_least]:
            return None
        said.append(f"severity {alert.severity} >= {when.severity_at_least}")
    if when.score_ratio_at_least is not None:
        ratio = score_ratio(alert)
        if ratio < when.score_ratio_at_least:
            return None
        said.append(f"score/threshold {ratio:.2f} >= {when.score_ratio_at_least}")
    if when.events_at_least is not None:
        # Detectors count "events", native rules "count", Sigma rules "matched".
        ev = alert.evidence
        events = ev.get("events", ev.get("count", ev.get("matched", 0)))
        if not isinstance(events, int | float) or events < when.events_at_least:
            return None
        said.append(f"{events:g} events >= {when.events_at_least}")
    if when.asset_criticality_in is not None:
        if asset is None or asset.criticality not in when.asset_criticality_in:
            return None
        said.append(f"asset {asset.name} is {asset.criticality}")
    checks: list[tuple[str, list[str] | None, set[str]]] = [
        ("kinds", when.kinds, {alert.kind}),
        ("names", when.names, {alert.name}),
        ("hints", when.hints_any, set(alert.hints)),
    ]
    for label, wanted, have in checks:
        if wanted is not None:
            if not have & set(wanted):
                return None
            said.append(f"{label} {sorted(have & set(wanted))}")
    return said


def route(alert: Alert, rules: TriageRules, inventory: Inventory) -> tuple[Alert, Asset | None]:
    """The alert with its route and reason set, and the asset it touches (if any)."""
    asset = inventory.for_alert(alert)
    for rule in rules.routes:
        held = _holds(rule.when, alert, asset)
        if held is not None:
            reason = f"rule '{rule.name}': " + ("; ".join(held) or "always")
            return dataclasses.replace(alert, route=rule.route, route_reason=reason), asset
    reason = "no triage rule matched; default route"
    return dataclasses.replace(alert, route=rules.default, route_reason=reason), asset
