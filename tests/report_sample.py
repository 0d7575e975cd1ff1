"""A report payload for a made-up incident, built without Elasticsearch (chart numbers given)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nis2triage.assets import Asset
from nis2triage.incidents import assess, lifecycle
from nis2triage.incidents.record import Incident, Narrative
from nis2triage.nis2.criteria import load_directory
from nis2triage.nis2.entity import Entity
from nis2triage.notify.pseudonym import Pseudonymiser
from nis2triage.records import Alert
from nis2triage.reports import content
from nis2triage.reports.stages import BY_REPORT

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ATTACKER = "198.51.100.23"
ACCOUNTS = ("oracle", "postgres", "backupsvc")
ENTITY = Entity(legal_name="Test Entity NV", enterprise_number="0403.019.261", sector="energy",
                entity_class="essential", contact_24x7="+32 2 000 00 00")  # fmt: skip
CRITERIA = load_directory(Path(__file__).resolve().parents[1] / "rules" / "nis2")
ASSET = Asset(name="labsz", hosts=["LabSZ"], criticality="high", service="research")


def sample_alert(at: datetime = T0) -> Alert:
    return Alert(
        kind="detector", name="ssh-brute-force", version="1", severity="high", timestamp=at,
        start=at - timedelta(minutes=5), end=at, score=0.97, threshold=0.8,
        entity_field="source.ip", entity=ATTACKER,
        message=f"{ATTACKER} failed 40 SSH logins, trying 3 distinct accounts",
        index_pattern="logs", query=f'source.ip:"{ATTACKER}"', related_ips=(ATTACKER,),
        related_users=ACCOUNTS, related_hosts=("LabSZ",), evidence={"events": 40},
        hints=("malicious",), route="early_warning", route_reason="serious detection",
    )  # fmt: skip


def sample_incident() -> Incident:
    incident = lifecycle.open_incident(sample_alert(), ASSET, ("k",), T0)
    incident = lifecycle.with_alert(incident, sample_alert(T0 + timedelta(minutes=5)), ASSET, ())
    incident = lifecycle.become_aware(incident, T0 + timedelta(minutes=10), "alice", "confirmed")
    story = Narrative(description=f"Password guessing from {ATTACKER} against service accounts",
                      threat_type="credential brute force", root_cause="SSH open to the internet",
                      mitigation_applied="address blocked", mitigation_ongoing="key-only logins",
                      member_states=("BE",))  # fmt: skip
    impact = {"severe_operational_disruption": True, "users_affected": 1200, "cross_border": False}
    incident = incident.model_copy(update={"impact": impact, "narrative": story})
    return assess.refresh(incident, ENTITY, CRITERIA)


def sample_chart() -> dict[str, Any]:
    steps = [T0 + timedelta(minutes=5 * i) for i in range(-12, 13)]
    return {
        "interval": "5m",
        "events": [
            {"t": t.isoformat(), "all": 20 + i, "incident": i % 7} for i, t in enumerate(steps)
        ],
        "scores": [{"t": T0.isoformat(), "score": 0.97, "threshold": 0.8}],
    }


def sample_payload(report: str, pseudonymise: bool = True) -> dict[str, Any]:
    incident = sample_incident()
    later = T0 + timedelta(hours=1)
    body = content.build(BY_REPORT[report], incident, ENTITY, key="k" * 32, now=later, who="alice",
                         tlp="TLP:AMBER", chart=sample_chart())  # fmt: skip
    if not pseudonymise:
        return body
    key = b"pseudonym-key-0123456789"
    users, hosts = lifecycle.named_entities(incident)
    return dict(Pseudonymiser(key).scrub(body, users, hosts, content.AS_IS, content.WRITTEN))
