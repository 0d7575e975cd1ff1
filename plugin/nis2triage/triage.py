"""Triage: every alert goes to one route, `contain`, `early_warning` or `soc`.

Routes are rules in `rules/triage.yml`, tried in order; the first whose
conditions all hold decides, and its name and the conditions that held are
stored on the alert as the reason. An alert no rule claims takes the default.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nis2triage import yamlload
from nis2triage.assets import Asset, Criticality, Inventory
from nis2triage.errors import ConfigError
from nis2triage.records import SEVERITY_RANK, Alert, Route, Severity


class Conditions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    severity_at_least: Severity | None = None
    score_ratio_at_least: float | None = Field(default=None, gt=0)
    events_at_least: int | None = Field(default=None, ge=1)
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
        return TriageRules.model_validate(located.data)
    except ValidationError as exc:
        from nis2triage.config import validation_error

        raise validation_error(located, exc, TriageRules) from exc


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
