"""The three-valued verdict: significant, not significant, or undetermined with what is missing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from nis2triage.errors import ConfigError
from nis2triage.nis2.criteria import CriteriaSet
from nis2triage.nis2.entity import Entity
from nis2triage.nis2.facts import Facts, PreviousIncident
from nis2triage.nis2.significance import assess

MakeEntity = Callable[..., Entity]

# A cloud incident with every fact the cloud and IR Art. 3 criteria ask about, all below.
QUIET_CLOUD: dict[str, Any] = {
    "financial_loss_eur": 1_000.0,
    "trade_secrets_exfiltrated": False,
    "deaths": 0,
    "death_risk": False,
    "health_damage": False,
    "unauthorised_access_confirmed": False,
    "full_outage": False,
    "limited_availability_minutes": 0.0,
    "data_compromised": False,
    "occurred_at": datetime(2025, 6, 1, tzinfo=UTC),
    "root_cause_id": "RC-1",
    "previous_incidents": (),
    "planned_maintenance": False,
}


def test_every_criterion_known_unmet_is_not_significant(
    criteria: CriteriaSet, make_entity: MakeEntity
) -> None:
    result = assess(make_entity("cloud"), Facts(**QUIET_CLOUD), criteria)

    assert (result.verdict, result.met, result.missing) == ("not_significant", (), ())


def test_one_unknown_fact_leaves_it_undetermined_and_named(
    criteria: CriteriaSet, make_entity: MakeEntity
) -> None:
    facts = Facts(**{**QUIET_CLOUD, "health_damage": None})

    result = assess(make_entity("cloud"), facts, criteria)

    assert (result.verdict, result.missing, result.undecided) == (
        "undetermined",
        ("health_damage",),
        ("ir-health-damage",),
    )


def test_one_criterion_met_is_significant_whatever_else_is_unknown(
    criteria: CriteriaSet, make_entity: MakeEntity
) -> None:
    facts = Facts(unavailability_minutes=45, planned_maintenance=False)

    result = assess(make_entity("cloud"), facts, criteria)

    assert result.verdict == "significant"
    assert [(m.id, m.source) for m in result.met] == [("cloud-outage", "IR Art. 7(a)")]
    assert "ir-financial-loss" in result.undecided


def test_evidence_quotes_values_and_where_they_came_from(
    criteria: CriteriaSet, make_entity: MakeEntity
) -> None:
    source = "uptime-* 2025-06-01T10:00Z..11:00Z"
    facts = Facts(
        limited_availability_minutes=90,
        users_affected=80_000,
        eu_users_total=1_000_000,
        planned_maintenance=False,
        sources={"users_affected": source},
    )

    (met,) = assess(make_entity("cdn"), facts, criteria).met

    assert met.evidence.endswith(
        f"limited_availability_minutes = 90 > 60; users_affected = 80,000 > 0.05 × "
        f"eu_users_total (1,000,000) = 50,000 [{source}]"
    )


@pytest.mark.parametrize(
    ("extra", "verdict", "missing"),
    [
        pytest.param({"planned_maintenance": True}, "not_significant", (), id="planned"),
        pytest.param({}, "undetermined", ("planned_maintenance",), id="unknown"),
        pytest.param({"planned_maintenance": False}, "significant", (), id="unplanned"),
        pytest.param({"malicious_suspected": True}, "significant", (), id="malice-rules-it-out"),
    ],
)
def test_planned_maintenance_never_counts(
    criteria: CriteriaSet,
    make_entity: MakeEntity,
    extra: dict[str, Any],
    verdict: str,
    missing: tuple[str, ...],
) -> None:
    facts = Facts(unavailability_minutes=240, **extra)

    result = assess(make_entity("cloud"), facts, criteria)

    assert (result.verdict, result.missing) == (verdict, missing)


def test_planned_maintenance_names_the_exclusion(
    criteria: CriteriaSet, make_entity: MakeEntity
) -> None:
    facts = Facts(full_outage=True, planned_maintenance=True, malicious_suspected=False)

    result = assess(make_entity("data_centre"), facts, criteria)

    assert result.excluded_by is not None
    assert (result.excluded_by.id, result.excluded_by.source) == (
        "ir-planned-maintenance",
        "IR Art. 3(2)",
    )


def test_other_sector_with_every_judgement_negative_is_not_significant(
    criteria: CriteriaSet, make_entity: MakeEntity
) -> None:
    facts = Facts(
        severe_operational_disruption=False,
        severe_financial_loss=False,
        considerable_damage_to_others=False,
        unavailability_minutes=600,  # an IR threshold, irrelevant outside IR Art. 1 types
    )

    result = assess(make_entity(None), facts, criteria)

    assert (result.entity_kind, result.verdict) == ("other", "not_significant")


def test_inventory_service_type_selects_the_criteria(
    criteria: CriteriaSet, make_entity: MakeEntity
) -> None:
    facts = Facts(
        service_type="data_centre", physical_access_compromised=True, planned_maintenance=False
    )

    result = assess(make_entity("cloud"), facts, criteria)

    assert (result.entity_kind, [m.id for m in result.met]) == (
        "data_centre",
        ["data-centre-physical-access"],
    )


def test_entity_type_without_criteria_is_a_config_error(make_entity: MakeEntity) -> None:
    empty = CriteriaSet((), (), {})

    with pytest.raises(ConfigError, match="no significance criterion applies to entity type 'dns'"):
        assess(make_entity("dns"), Facts(), empty)


def earlier(when: str, loss: float | None, cause: str = "RC-7") -> PreviousIncident:
    day = datetime.fromisoformat(when)
    return PreviousIncident(ref=f"INC-{when}", occurred_at=day, root_cause_id=cause,
                            financial_loss_eur=loss)  # fmt: skip


# 14:00 in Brussels; six calendar months back is 28 February 14:00 CET, 13:00 UTC.
NOW = datetime(2025, 8, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("previous", "loss", "want"),
    [
        pytest.param([earlier("2025-03-15T00:00Z", 300_000)], 250_000, "met", id="two-above-500k"),
        pytest.param([earlier("2025-03-15T00:00Z", 250_000)], 250_000, "unmet", id="exactly-500k"),
        pytest.param([earlier("2025-05-01T00:00Z", 200_000), earlier("2025-07-01T00:00Z", 200_000)],
                     100_001, "met", id="three-together"),
        pytest.param([earlier("2025-02-28T13:00Z", 900_000)], 1, "met", id="6-months-exactly"),
        pytest.param([earlier("2025-02-28T12:59Z", 900_000)], 1, "unmet", id="a-minute-older"),
        pytest.param([earlier("2025-05-01T00:00Z", 900_000, "RC-8")], 1, "unmet", id="other-cause"),
        pytest.param([earlier("2025-05-01T00:00Z", None)], 250_000, "unknown", id="loss-unknown"),
    ],
)  # fmt: skip
def test_recurring_incidents(
    criteria: CriteriaSet,
    make_entity: MakeEntity,
    previous: list[PreviousIncident],
    loss: float,
    want: str,
) -> None:
    facts = Facts(occurred_at=NOW, root_cause_id="RC-7", previous_incidents=tuple(previous),
                  financial_loss_eur=loss)  # fmt: skip

    result = assess(make_entity("msp"), facts, criteria)

    assert result.status("ir-recurring") == want


def test_recurrence_names_the_missing_earlier_loss(
    criteria: CriteriaSet, make_entity: MakeEntity
) -> None:
    unknown_loss = earlier("2025-05-01T00:00Z", None)
    facts = Facts(**{**QUIET_CLOUD, "occurred_at": NOW, "root_cause_id": "RC-7",
                     "previous_incidents": (unknown_loss,)})  # fmt: skip

    result = assess(make_entity("cloud"), facts, criteria)

    assert result.missing == ("previous_incidents[INC-2025-05-01T00:00Z].financial_loss_eur",)


@pytest.mark.parametrize(
    ("kind", "known", "met"),
    [
        pytest.param(
            "cloud", {"trade_secrets_exfiltrated": True}, "ir-trade-secrets", id="secrets"
        ),
        pytest.param("cloud", {"deaths": 1}, "ir-death", id="death"),
        pytest.param(
            "cloud",
            {"data_compromised": True, "malicious_suspected": True},
            "cloud-malicious-compromise",
            id="attack",
        ),
        pytest.param(
            None, {"considerable_damage_to_others": True}, "art23-damage-to-others", id="other"
        ),
    ],
)
def test_planned_maintenance_sets_aside_only_what_maintenance_can_have_planned(
    criteria: CriteriaSet,
    make_entity: MakeEntity,
    kind: str | None,
    known: dict[str, Any],
    met: str,
) -> None:
    # IR Art. 3(2) excludes planned interruptions and planned consequences of maintenance:
    # a death or an attack during a maintenance window is neither, yet "planned: yes"
    # made every such incident not significant, with no deadline.
    facts = Facts(planned_maintenance=True, unavailability_minutes=240, **known)

    result = assess(make_entity(kind), facts, criteria)

    assert (result.verdict, result.excluded_by) == ("significant", None)
    assert met in [m.id for m in result.met]
    # The outage, planned, is still set aside.
    assert not any(m.id.endswith("-outage") for m in result.met)


def test_a_criterion_maintenance_cannot_explain_is_met_before_planning_is_known(
    criteria: CriteriaSet, make_entity: MakeEntity
) -> None:
    # Whether it was planned matters only to what planning can explain.
    result = assess(make_entity("cloud"), Facts(deaths=1), criteria)

    assert result.verdict == "significant"


def test_an_exclusion_covering_no_criterion_is_refused_at_load(tmp_path: Any) -> None:
    from nis2triage.nis2.criteria import load_directory

    (tmp_path / "x.yml").write_text(
        "criteria:\n"
        "  - {id: a-outage, source: s, summary: s, applies_to: [other],"
        " when: {fact: full_outage, op: eq, value: true}}\n"
        "exclusions:\n"
        "  - {id: planned, source: s, summary: s, applies_to: [other], covers: ['*-outgae'],"
        " when: {fact: planned_maintenance, op: eq, value: true}}\n"
    )

    with pytest.raises(ConfigError, match=r"x.yml:4: .*covers.*'\*-outgae' names no criterion"):
        load_directory(tmp_path)
