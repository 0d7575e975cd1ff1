"""What an early warning to the CCB carries.

NIS2 Art. 23(4)(a): within 24 hours of becoming aware of a significant
incident, an early warning that says, where applicable, whether the incident
is suspected of being caused by unlawful or malicious acts and whether it
could have a cross-border impact. We add the entity's identification and the
detection and awareness times, which the CCB asks for in every notification.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nis2triage.assets import Asset
from nis2triage.nis2.entity import Entity, format_enterprise_number
from nis2triage.records import Alert

SCHEMA = "nis2triage/early-warning/1"


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def tri_state(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def detection_summary(alert: Alert) -> dict[str, Any]:
    return {
        "alert_id": alert.id,
        "detector": alert.name,
        "kind": alert.kind,
        "severity": alert.severity,
        "score": alert.score,
        "threshold": alert.threshold,
        "start": _iso(alert.start),
        "end": _iso(alert.end),
        "events": alert.evidence.get("events"),
        "summary": alert.message,
        "tactics": list(alert.tags),
    }


def early_warning(
    reference: str,
    entity: Entity,
    alerts: list[Alert],
    assets: list[Asset],
    aware_at: datetime,
) -> dict[str, Any]:
    """The early-warning payload, before pseudonymisation."""
    first = min(alerts, key=lambda a: a.timestamp)
    malicious = any("malicious" in a.hints for a in alerts) or None
    cross_border = [a.cross_border for a in assets if a.cross_border is not None]
    return {
        "schema": SCHEMA,
        "report_type": "early_warning",
        "legal_basis": "NIS2 Directive (EU) 2022/2555, Art. 23(4)(a)",
        "tlp": "TLP:AMBER",
        "reference": reference,
        "entity": {
            "legal_name": entity.legal_name,
            "enterprise_number": format_enterprise_number(entity.enterprise_number),
            "sector": entity.sector,
            "entity_class": entity.entity_class,
            "contact_24x7": entity.contact_24x7,
        },
        "detected_at": _iso(first.timestamp),
        "aware_at": _iso(aware_at),
        "suspected_unlawful_or_malicious": tri_state(malicious),
        "possible_cross_border_impact": tri_state(any(cross_border) if cross_border else None),
        "affected_services": sorted({a.service for a in assets if a.service}),
        "summary": f"{len(alerts)} detection(s) for {first.entity_field} {first.entity}: "
        + first.message,
        "indicators": {
            "ip": sorted({ip for a in alerts for ip in a.related_ips}),
            "accounts": sorted({u for a in alerts for u in a.related_users}),
        },
        "detections": [detection_summary(a) for a in alerts],
    }
