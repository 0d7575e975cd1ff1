"""Facts from detections, inventory and analyst; significance; which deadlines are pending."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from nis2triage.assets import Asset
from nis2triage.errors import IncidentError
from nis2triage.incidents import assess, lifecycle
from nis2triage.incidents.record import GDPR_KEY, Gdpr, Incident, StageReport
from nis2triage.nis2.criteria import load_directory

from .conftest import LAB, T0, agent_config, alert

CRITERIA = load_directory(Path(__file__).resolve().parents[2] / "rules" / "nis2")
ENTITY = agent_config("x").entity
CLOUD = Asset(name="vm-farm", hosts=["LabSZ"], criticality="critical", service="iaas",
              service_type="cloud", users_served=40_000, cross_border=True)  # fmt: skip


def opened(asset: Asset = LAB, aware: bool = True, **impact: object) -> Incident:
    incident = lifecycle.open_incident(alert(), asset, ("k",), T0)
    if aware:
        incident = lifecycle.become_aware(incident, T0, "alice", "confirmed")
    return assess.refresh(incident.model_copy(update={"impact": impact}), ENTITY, CRITERIA)


def test_facts_merge_detection_inventory_and_analyst_with_the_analyst_last() -> None:
    incident = lifecycle.open_incident(alert(), CLOUD, ("k",), T0)
    facts = assess.facts_of(incident.model_copy(update={"impact": {"cross_border": False}}))

    assert facts.malicious_suspected is True
    assert "ssh-brute-force in t-none-logs" in facts.sources["malicious_suspected"]
    assert (facts.service_type, facts.eu_users_total) == ("cloud", 40_000)
    assert facts.cross_border is False
    assert facts.sources["cross_border"] == "recorded by the analyst"


@pytest.mark.parametrize(
    ("asset", "impact", "verdict", "met"),
    [
        pytest.param(LAB, {}, "undetermined", (), id="other-sector-nothing-known"),
        pytest.param(LAB, {"severe_operational_disruption": True}, "significant",
                     ("art23-severe-disruption",), id="other-sector-severe-disruption"),
        pytest.param(CLOUD, {"unavailability_minutes": 45.0}, "significant",
                     ("cloud-outage",), id="cloud-outage-over-30-min"),
    ],
)  # fmt: skip
def test_significance_uses_the_inventory_service_type(
    asset: Asset, impact: dict[str, object], verdict: str, met: tuple[str, ...]
) -> None:
    incident = opened(asset, **impact)

    assert incident.significance.verdict == verdict
    assert tuple(m.id for m in incident.significance.met) == met


def test_no_deadline_before_awareness_and_three_after() -> None:
    before, after = opened(aware=False), opened()

    assert before.deadlines == ()
    assert after.pending == ("early_warning", "incident_notification", "progress_report")
    assert after.deadlines[0].due == T0 + timedelta(hours=24)


def test_a_sent_notification_also_discharges_the_early_warning() -> None:
    incident = opened()
    key = "incident_notification"
    sent = StageReport(key=key, report=key, outbox_id="x", status="sent", queued_at=T0, by="alice",
                       sent_at=T0 + timedelta(hours=5))  # fmt: skip
    done = assess.refresh(
        incident.model_copy(update={"reports": {sent.key: sent}}), ENTITY, CRITERIA
    )

    assert "early_warning" not in done.pending
    assert "incident_notification" not in done.pending


def test_the_gdpr_duty_has_its_own_72_hour_clock() -> None:
    incident = opened()
    duty = Gdpr(aware_at=T0 + timedelta(hours=10), due=T0 + timedelta(hours=82))
    judged = assess.refresh(incident.model_copy(update={"gdpr": duty}), ENTITY, CRITERIA)

    gdpr = next(d for d in judged.deadlines if d.key == GDPR_KEY)
    assert gdpr.due == T0 + timedelta(hours=82)
    assert gdpr.source == "GDPR Art. 33(1)"
    assert GDPR_KEY in judged.pending


@pytest.mark.parametrize(
    ("facts", "match"),
    [
        pytest.param({"users": 3}, "unknown fact", id="unknown"),
        pytest.param({"users_affected": -1}, "greater than or equal", id="negative"),
        pytest.param({"malicious_suspected": "yes"}, "valid boolean", id="not-a-flag"),
        pytest.param({"financial_loss_eur": float("inf")}, "finite number", id="infinite-loss"),
        pytest.param({"financial_loss_eur": float("nan")}, "finite number", id="nan-loss"),
    ],
)
def test_bad_analyst_facts_are_refused_with_the_reason(
    facts: dict[str, object], match: str
) -> None:
    with pytest.raises(IncidentError, match=match):
        assess.check_impact(facts)


def test_a_fact_recorded_before_its_bound_is_set_aside_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Stored before losses were bounded: it must not stop every assessment of its incident.
    incident = lifecycle.open_incident(alert(), CLOUD, ("k",), T0)
    impact = {"financial_loss_eur": 1e307, "cross_border": False}

    with caplog.at_level("WARNING", logger="nis2triage.incidents.assess"):
        facts = assess.facts_of(incident.model_copy(update={"impact": impact}))

    assert (facts.financial_loss_eur, facts.cross_border) == (None, False)
    [said] = [r.getMessage() for r in caplog.records]
    assert said.startswith(f"incident {incident.id}: its recorded financial_loss_eur (1e+307)")
