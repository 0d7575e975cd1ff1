"""An incident judged against every IR service type it touches, and the trust-service
notification clock (NIS2 Art. 23(4)(b): 24 hours for incidents on trust services)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from nis2triage.assets import Asset
from nis2triage.incidents import assess, lifecycle
from nis2triage.incidents.record import Incident
from nis2triage.nis2.criteria import load_directory

from .conftest import T0, agent_config, alert

CRITERIA = load_directory(Path(__file__).resolve().parents[2] / "rules" / "nis2")
ENTITY = agent_config("x").entity
CLOUD = Asset(name="vm-farm", hosts=["LabSZ"], criticality="critical", service="iaas",
              service_type="cloud", users_served=40_000)  # fmt: skip
SIGNING = Asset(name="qsign", hosts=["sign01"], criticality="critical", service="e-signature",
                service_type="trust_service", users_served=40_000)  # fmt: skip


def touching(*assets: Asset, **impact: object) -> Incident:
    """An aware incident whose alerts touched `assets`, in that order."""
    incident = lifecycle.open_incident(alert(), assets[0], ("k",), T0)
    for asset in assets[1:]:
        later = alert(at=T0 + timedelta(minutes=1))
        incident = lifecycle.with_alert(incident, later, asset, ("k",))
    incident = lifecycle.become_aware(incident, T0, "alice", "confirmed")
    return assess.refresh(incident.model_copy(update={"impact": impact}), ENTITY, CRITERIA)


def notification_due(incident: Incident) -> timedelta:
    due = next(d.due for d in incident.deadlines if d.key == "incident_notification")
    return due - T0


def test_a_trust_service_down_25_minutes_is_significant_whichever_asset_came_first() -> None:
    # IR Art. 14(a): a trust service unavailable for more than 20 minutes. The cloud
    # asset's own threshold (30 minutes, IR Art. 7(a)) must not hide it.
    incident = touching(CLOUD, SIGNING, unavailability_minutes=25.0, planned_maintenance=False)

    assert incident.significance is not None
    assert incident.significance.verdict == "significant"
    assert [m.id for m in incident.significance.met] == ["trust-service-outage"]


def test_an_incident_on_a_trust_service_is_notified_within_24_hours() -> None:
    # The configured entity has no IR type; the inventory says it runs a trust service.
    assert notification_due(touching(SIGNING)) == timedelta(hours=24)
    assert notification_due(touching(CLOUD, SIGNING)) == timedelta(hours=24)


def test_an_incident_off_the_trust_services_keeps_72_hours() -> None:
    assert notification_due(touching(CLOUD)) == timedelta(hours=72)
