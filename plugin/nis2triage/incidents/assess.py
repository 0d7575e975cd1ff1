"""What is known about an incident, whether it is significant, and which reports are due.

Facts come from three places (nis2triage.nis2.facts): the detections (a
`malicious` hint on the detector means malice is suspected), the inventory of
the assets touched (service type, users in the Union, cross-border reach) and
the analyst's recorded impact, which wins over both.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from nis2triage.errors import IncidentError
from nis2triage.incidents.record import (
    GDPR_KEY,
    AlertSummary,
    Criterion,
    DeadlineView,
    Incident,
    SignificanceView,
)
from nis2triage.nis2 import clocks
from nis2triage.nis2.criteria import CriteriaSet
from nis2triage.nis2.entity import Entity
from nis2triage.nis2.facts import Facts
from nis2triage.nis2.significance import CriterionMet, assess

log = logging.getLogger(__name__)

# GDPR Art. 33(1): the supervisory authority within 72 hours of awareness of the breach.
GDPR_WINDOW = timedelta(hours=72)
# Detector hints (detectors/*.yml `hints`) and the detection facts they settle.
HINT_FACTS = {
    "malicious": "malicious_suspected",
    "unauthorised_access": "unauthorised_access_confirmed",
    "data_compromised": "data_compromised",
}
# Facts the analyst may record; the rest are derived or kept for recurrence records.
ANALYST_FACTS = frozenset(Facts.model_fields) - {"sources", "previous_incidents", "occurred_at"}


def check_impact(values: dict[str, Any]) -> dict[str, Any]:
    """Analyst facts, validated as the criteria will read them; IncidentError names the bad one."""
    unknown = sorted(set(values) - ANALYST_FACTS)
    if unknown:
        raise IncidentError(
            f"unknown fact(s) {', '.join(unknown)}; known: {', '.join(sorted(ANALYST_FACTS))}"
        )
    try:
        Facts.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise IncidentError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
    return values


def facts_of(incident: Incident) -> Facts:
    """Detection, inventory and analyst facts merged, each with where it came from."""
    found: dict[str, Any] = {"occurred_at": incident.opened_at}
    sources: dict[str, str] = {}
    for hint, fact in HINT_FACTS.items():
        alerts = [a for a in incident.alerts if hint in a.hints]
        if alerts:
            found[fact] = True
            sources[fact] = _evidence(alerts[0], len(alerts))
    for fact, (value, origin) in _inventory(incident).items():
        found[fact] = value
        sources[fact] = origin
    for fact, value in incident.impact.items():
        if not _still_valid(incident.id, fact, value):
            continue
        found[fact] = value
        sources[fact] = "recorded by the analyst"
    return Facts.model_validate({**found, "sources": sources})


def _still_valid(incident_id: str, fact: str, value: Any) -> bool:
    """Whether a recorded fact passes today's checks: one recorded before a bound was set
    (a loss of 1e307) must not stop every later assessment of its incident."""
    try:
        Facts.model_validate({fact: value})
    except ValidationError as exc:
        log.warning(
            "incident %s: its recorded %s (%r) is no longer taken (%s); record it again with "
            "`nis2triage incidents impact`",
            incident_id,
            fact,
            value,
            exc.errors()[0]["msg"],
        )
        return False
    return True


def _evidence(alert: AlertSummary, count: int) -> str:
    """Where a detection fact came from: index, query and time range (docs section 6)."""
    when = f"{alert.start:%Y-%m-%dT%H:%MZ}/{alert.end:%H:%MZ}"
    return (
        f"detector {alert.name} in {alert.index_pattern}: {alert.query} ({when}, {count} alert(s))"
    )


def _inventory(incident: Incident) -> dict[str, tuple[Any, str]]:
    assets = incident.assets
    out: dict[str, tuple[Any, str]] = {}
    typed = [a for a in assets if a.service_type]
    if typed:
        out["service_type"] = (typed[0].service_type, f"inventory: asset {typed[0].name}")
    served = [a for a in assets if a.users_served is not None]
    if served:
        names = ", ".join(a.name for a in served)
        out["eu_users_total"] = (sum(a.users_served or 0 for a in served), f"inventory: {names}")
    reach = [a.cross_border for a in assets if a.cross_border is not None]
    if reach:
        out["cross_border"] = (any(reach), "inventory: cross_border of the assets touched")
    return out


def service_types(incident: Incident) -> tuple[str | None, ...]:
    """The IR Art. 1 service types an incident is judged by: the analyst's, if recorded,
    else every type among the assets it touched, else None (the entity's own type)."""
    recorded = incident.impact.get("service_type")
    if recorded:
        return (recorded,)
    typed = dict.fromkeys(a.service_type for a in incident.assets if a.service_type)
    return tuple(typed) or (None,)


# A verdict under one service type outranks a lower one under another.
_RANK = {"not_significant": 0, "undetermined": 1, "significant": 2}


def significance(
    entity: Entity,
    facts: Facts,
    criteria: CriteriaSet,
    kinds: tuple[str | None, ...] | None = None,
) -> SignificanceView:
    """The verdict under each service type the incident touches, the gravest kept: an
    incident on a cloud platform and a trust service meets IR Art. 14's 20-minute outage
    even though Art. 7 asks for 30 (judging by the first asset alone hid it)."""
    kinds = kinds or (facts.service_type,)
    results = [assess(entity, facts.model_copy(update={"service_type": k}), criteria)
               for k in kinds]  # fmt: skip
    verdict = max((r.verdict for r in results), key=_RANK.__getitem__)
    chosen = [r for r in results if r.verdict == verdict]
    excluded = next((r.excluded_by for r in chosen if r.excluded_by), None)
    return SignificanceView(
        verdict=verdict,
        entity_kind=", ".join(r.entity_kind for r in chosen),
        met=tuple(_criterion(m) for r in chosen for m in r.met),
        missing=tuple(dict.fromkeys(m for r in chosen for m in r.missing)),
        undecided=tuple(dict.fromkeys(u for r in chosen for u in r.undecided)),
        excluded_by=_criterion(excluded) if excluded else None,
    )


def _criterion(met: CriterionMet) -> Criterion:
    return Criterion(id=met.id, source=met.source, evidence=met.evidence)


def _on_trust_services(incident: Incident, entity: Entity) -> bool:
    """Whether the 24-hour notification of NIS2 Art. 23(4)(b) applies: the incident
    touches a trust service the inventory lists (whatever the entity's configured type),
    or the entity is a trust service provider and no asset says otherwise."""
    kinds = service_types(incident)
    if kinds == (None,):
        return entity.trust_service_provider
    return "trust_service" in kinds


def deadlines(incident: Incident, entity: Entity, facts: Facts) -> tuple[DeadlineView, ...]:
    """The NIS2 reports due once the entity is aware (unless not significant), and the GDPR one."""
    views: list[DeadlineView] = []
    verdict = incident.significance.verdict if incident.significance else "undetermined"
    # Undetermined counts: the 24-hour early warning cannot wait for the full assessment.
    if incident.aware_at is not None and verdict != "not_significant":
        notification = incident.reports.get("incident_notification")
        due = clocks.deadlines(
            entity,
            incident.aware_at,
            notification_sent_at=notification.sent_at if notification else None,
            handled_at=incident.closed_at,
            requests=[
                clocks.IntermediateRequest(r.ref, r.requested_at, r.due) for r in incident.requests
            ],
            affects_trust_services=_on_trust_services(incident, entity),
        )
        views += [
            DeadlineView(report=d.report, key=d.key, due=d.due, basis=d.basis, source=d.source)
            for d in due
        ]
    if incident.gdpr is not None:
        basis = "awareness of the personal-data breach + 72 h"
        views.append(
            DeadlineView(
                report=GDPR_KEY,
                key=GDPR_KEY,
                due=incident.gdpr.due,
                basis=basis,
                source="GDPR Art. 33(1)",
            )
        )
    return tuple(sorted(views, key=lambda d: d.due))


def pending(incident: Incident, views: tuple[DeadlineView, ...]) -> tuple[str, ...]:
    """Deadline keys with nothing delivered yet."""
    done = incident.delivered()
    # The notification updates the early warning (Art. 23(4)(b)), so it also discharges it.
    if "incident_notification" in done:
        done.add("early_warning")
    # A final report sent while the incident runs on makes the progress report moot.
    if "final_report" in done:
        done.add("progress_report")
    return tuple(v.key for v in views if v.key not in done)


def refresh(incident: Incident, entity: Entity, criteria: CriteriaSet) -> Incident:
    """The incident with its significance, deadlines and pending reports recomputed."""
    facts = facts_of(incident)
    verdict = significance(entity, facts, criteria, service_types(incident))
    judged = incident.model_copy(update={"significance": verdict})
    views = deadlines(judged, entity, facts)
    waiting = pending(judged, views)
    overdue = tuple(k for k in judged.overdue if k in waiting)
    return judged.model_copy(update={"deadlines": views, "pending": waiting, "overdue": overdue})
