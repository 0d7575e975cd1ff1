"""What a report on one incident carries, for any stage, before pseudonymisation.

Every report repeats the entity's identification, the incident's timeline,
significance (verdict, criteria met, facts missing), deadlines and the GDPR
reminder, and lists which of its stage's required items (NIS2 Art. 23(4)) are
filled. The result is plain JSON: the HTTP payload as it is, and the source of
the Markdown and PDF documents.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from nis2triage.incidents.assess import facts_of
from nis2triage.incidents.lifecycle import AGENT
from nis2triage.incidents.record import Incident
from nis2triage.nis2.brussels import show
from nis2triage.nis2.entity import Entity, format_enterprise_number
from nis2triage.notify.pseudonym import Verbatim, Written
from nis2triage.records import SEVERITY_RANK
from nis2triage.reports.stages import Stage

SCHEMA = "nis2triage/incident-report/1"
# Keys whose values leave as they are, unpseudonymised: the entity's own identification
# and contact, who prepared the report or took a step, and the report's own vocabulary
# (an entity that happens to be called `high` must not rename a severity).
AS_IS = (
    "entity", "prepared_by", "who", "schema", "report_type", "legal_basis", "tlp",
    "severity", "status", "kind", "detector", "tactics", "action", "to", "field",
)  # fmt: skip
# Keys holding what the analyst wrote: only IP, e-mail and MAC addresses are replaced
# there, since a user name that is also a word ("root", "test") would garble a sentence.
WRITTEN = ("description", "threat_type", "root_cause", "mitigation_applied", "mitigation_ongoing")
MAX_DETECTIONS = 50
IMPACT_FACTS = (
    "users_affected",
    "eu_users_total",
    "financial_loss_eur",
    "full_outage",
    "unavailability_minutes",
    "limited_availability_minutes",
    "data_compromised",
    "users_data_affected",
    "personal_data_involved",
    "trade_secrets_exfiltrated",
    "physical_access_compromised",
    "health_damage",
    "deaths",
    "severe_operational_disruption",
    "severe_financial_loss",
    "considerable_damage_to_others",
)


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts else None


def _moment(ts: datetime | None) -> dict[str, str | None]:
    """A time as stored (UTC) and as the reader expects it (Europe/Brussels)."""
    utc = ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None
    return {"utc": utc, "brussels": show(ts) if ts else None}


def tri_state(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def build(
    stage: Stage,
    incident: Incident,
    entity: Entity,
    *,
    key: str,
    now: datetime,
    who: str,
    tlp: str,
    chart: dict[str, Any],
    ref: str | None = None,
) -> dict[str, Any]:
    body = {
        **_header(stage, incident, entity, key, now, who, tlp, ref),
        **_assessment(incident, entity),
        "indicators": _indicators(incident),
        "detections": [_detection(a) for a in incident.alerts[:MAX_DETECTIONS]],
        "detections_total": incident.alert_count,
        "deadlines": _deadlines(incident, now),
        "previous_reports": _previous(incident),
        "gdpr": _gdpr(incident),
        "timeline": [_step(t) for t in incident.history],
        "chart": chart,
    }
    body["requirements"] = [
        {"field": f, "provided": _provided(body.get(f))} for f in stage.requires
    ]
    return body


def _header(
    stage: Stage,
    incident: Incident,
    entity: Entity,
    key: str,
    now: datetime,
    who: str,
    tlp: str,
    ref: str | None,
) -> dict[str, Any]:
    """Who reports what, under which article, and when the incident was seen and known."""
    return {
        "schema": SCHEMA,
        "report_type": stage.report,
        "legal_basis": f"NIS2 Directive (EU) 2022/2555, {stage.article.removeprefix('NIS2 ')}",
        "tlp": tlp,
        "reference": key,
        "request_ref": ref,
        "incident_id": incident.id,
        "generated": _moment(now),
        "prepared_by": who,
        "entity": _entity(entity),
        "summary": incident.title,
        "status": incident.status,
        "detected_at": _moment(incident.opened_at),
        "aware_at": _moment(incident.aware_at),
        "handled_at": _moment(incident.closed_at),
    }


def _assessment(incident: Incident, entity: Entity) -> dict[str, Any]:
    """What is known: malice, reach, severity, impact, significance and the analyst's account."""
    facts = facts_of(incident)
    significance = incident.significance
    return {
        "suspected_unlawful_or_malicious": tri_state(facts.malicious_suspected),
        "possible_cross_border_impact": tri_state(facts.cross_border),
        "member_states_affected": list(incident.narrative.member_states),
        "affected_services": incident.services,
        "affected_assets": [a.name for a in incident.assets],
        "severity": _severity(incident),
        "impact": _impact(facts.model_dump(), entity),
        "significance": significance.model_dump(mode="json") if significance else None,
        **incident.narrative.model_dump(exclude={"member_states"}),
    }


def _entity(entity: Entity) -> dict[str, Any]:
    return {
        "legal_name": entity.legal_name,
        "enterprise_number": format_enterprise_number(entity.enterprise_number),
        "sector": entity.sector,
        "entity_class": entity.entity_class,
        "ir_type": entity.ir_type,
        "contact_24x7": entity.contact_24x7,
    }


def _severity(incident: Incident) -> str | None:
    ranks = [SEVERITY_RANK[a.severity] for a in incident.alerts]
    names = {rank: name for name, rank in SEVERITY_RANK.items()}
    return names[max(ranks)] if ranks else None


def _impact(facts: dict[str, Any], entity: Entity) -> dict[str, Any]:
    known = {name: facts[name] for name in IMPACT_FACTS if facts.get(name) is not None}
    loss, turnover = known.get("financial_loss_eur"), entity.annual_turnover_eur
    if loss is not None and turnover:
        known["financial_loss_share_of_turnover"] = round(100 * loss / turnover, 3)
    return known


def _indicators(incident: Incident) -> dict[str, list[str]]:
    entities = [a.entity for a in incident.alerts if _is_ip(a.entity)]
    return {
        "ip": sorted(set(incident.ips) | set(entities)),
        "accounts": sorted(incident.users),
        "hosts": sorted(incident.hosts),
    }


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _detection(alert: Any) -> dict[str, Any]:
    return {
        "alert_id": alert.id,
        "detector": alert.name,
        "kind": alert.kind,
        "severity": alert.severity,
        "score": round(alert.score, 4),
        "threshold": round(alert.threshold, 4),
        "start": _iso(alert.start),
        "end": _iso(alert.end),
        "events": alert.events,
        "summary": alert.message,
        "tactics": list(alert.tags),
    }


def _deadlines(incident: Incident, now: datetime) -> list[dict[str, Any]]:
    done = incident.delivered()
    rows = []
    for d in incident.deadlines:
        state = "delivered" if d.key in done else ("overdue" if now > d.due else "open")
        rows.append(
            {
                "report": d.key,
                "due": _moment(d.due),
                "basis": d.basis,
                "source": d.source,
                "state": state,
            }
        )
    return rows


def _previous(incident: Incident) -> list[dict[str, Any]]:
    return [
        {
            "report": k,
            "status": r.status,
            "sent_at": _iso(r.sent_at),
            "reference": _theirs(r.reference),
        }
        for k, r in incident.reports.items()
    ]


def _gdpr(incident: Incident) -> dict[str, Any] | None:
    g = incident.gdpr
    if g is None:
        return None
    return {
        "authority": "Belgian Data Protection Authority (GBA/APD), web form",
        "source": "GDPR Art. 33(1)",
        "aware_at": _moment(g.aware_at),
        "due": _moment(g.due),
        "status": g.status,
        "reference": _theirs(g.reference),
        "reason": g.reason,
    }


def _theirs(reference: str | None) -> str | None:
    """The authority's own reference for a report: sent as it is, so it can match them."""
    return None if reference is None else Verbatim(reference)


def _step(t: Any) -> dict[str, Any]:
    # A person's reason (acknowledged, closed) keeps its words when pseudonymised; the
    # agent's own steps quote alert messages and are scrubbed in full.
    why = t.why if t.who == AGENT or t.why is None else Written(t.why)
    if t.action == "impact recorded" and t.details:
        # The texts themselves are in the report as they stand now: quoting them here
        # would send words an analyst has since reworded (a person's name, say) anyway.
        why = _recorded(t.details)
    return {"at": _moment(t.at), "who": t.who, "action": t.action, "to": t.to_status, "why": why}


def _recorded(details: dict[str, Any]) -> str:
    """What an impact step recorded: the facts with their values, the texts by name."""
    facts = [f"{k}={v}" for k, v in (details.get("facts") or {}).items()]
    texts = [*(details.get("narrative") or {}), *(details.get("gdpr") or {})]
    return "recorded " + ", ".join([*facts, *texts])


def _provided(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_provided(v) for v in value.values())
    return value not in (None, "", "unknown", [])
