"""Incident facts: strict types, consistency, and the facts derived from others."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from nis2triage.nis2.entity import Entity
from nis2triage.nis2.facts import FACT_KINDS, Facts, namespace

MakeEntity = Callable[..., Entity]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"full_outage": "yes"}, "valid boolean", id="text-for-flag"),
        pytest.param({"deaths": True}, "valid integer", id="flag-for-count"),
        pytest.param({"financial_loss_eur": "9000"}, "valid number", id="text-for-amount"),
        pytest.param({"users_affected": -1}, "greater than or equal to 0", id="negative"),
        pytest.param({"occurred_at": datetime(2025, 1, 1)}, "timezone", id="naive-time"),
        pytest.param({"full_outage": False, "unavailability_minutes": 5}, "full_outage is false",
                     id="down-yet-not-down"),
        pytest.param({"loss": 1.0}, "Extra inputs", id="unknown-fact"),
    ],
)  # fmt: skip
def test_facts_refuse_what_they_cannot_mean(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Facts(**fields)


@pytest.mark.parametrize(
    ("fields", "full_outage", "minutes"),
    [
        pytest.param({"unavailability_minutes": 12.0}, True, 12.0, id="minutes-imply-outage"),
        pytest.param({"unavailability_minutes": 0.0}, False, 0.0, id="zero-minutes"),
        pytest.param({"full_outage": False}, False, 0.0, id="never-down-means-0-minutes"),
        pytest.param({"full_outage": True}, True, None, id="down-for-unknown-time"),
    ],
)
def test_outage_facts_settle_each_other(
    make_entity: MakeEntity, fields: dict[str, Any], full_outage: bool, minutes: float | None
) -> None:
    known = namespace(Facts(**fields), make_entity("cloud"))

    assert (known["full_outage"].value, known["unavailability_minutes"].value) == (
        full_outage,
        minutes,
    )


@pytest.mark.parametrize(
    ("fields", "value", "missing"),
    [
        pytest.param({}, None, ("planned_maintenance",), id="unknown"),
        pytest.param({"malicious_suspected": True}, False, (), id="malice-is-not-planned"),
        pytest.param({"malicious_suspected": True, "planned_maintenance": True}, True, (),
                     id="the-analyst-decides"),
    ],
)  # fmt: skip
def test_planned_maintenance(
    make_entity: MakeEntity, fields: dict[str, Any], value: bool | None, missing: tuple[str, ...]
) -> None:
    known = namespace(Facts(**fields), make_entity("dns"))["planned_maintenance"]

    assert (known.value, known.missing) == (value, missing)


def test_turnover_comes_from_the_entity(make_entity: MakeEntity) -> None:
    known = namespace(Facts(), make_entity("cdn", turnover=None))["annual_turnover_eur"]

    assert (known.value, known.missing) == (None, ("annual_turnover_eur",))


def test_recurrence_needs_the_incident_time_and_root_cause(make_entity: MakeEntity) -> None:
    facts = Facts(previous_incidents=(), occurred_at=datetime(2025, 1, 1, tzinfo=UTC))

    known = namespace(facts, make_entity("msp"))["recurrence_count"]

    assert (known.value, known.missing) == (None, ("root_cause_id",))


def test_fact_kinds_are_the_scalar_facts_plus_derived_ones() -> None:
    derived = {"annual_turnover_eur", "recurrence_count", "recurrence_loss_eur"}

    records = set(Facts.model_fields) - set(FACT_KINDS)

    assert (derived <= set(FACT_KINDS), records) == (
        True,
        {"service_type", "occurred_at", "root_cause_id", "previous_incidents", "sources"},
    )


@pytest.mark.parametrize(
    "given",
    [{"financial_loss_eur": 1e307}, {"users_affected": 10**23}, {"unavailability_minutes": 1e300}],
)
def test_figures_past_any_real_incident_are_refused(given: dict[str, Any]) -> None:
    # 1e307 EUR made the report's share of turnover overflow to infinity.
    with pytest.raises(ValidationError, match="less than or equal"):
        Facts(**given)


def test_large_real_figures_are_taken() -> None:
    facts = Facts(financial_loss_eur=4.2e9, users_affected=450_000_000)

    assert (facts.financial_loss_eur, facts.users_affected) == (4.2e9, 450_000_000)
