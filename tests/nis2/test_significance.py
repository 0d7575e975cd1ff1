"""Each shipped significance criterion just below and just above its threshold, and unknown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nis2triage.nis2.criteria import CriteriaSet
from nis2triage.nis2.entity import Entity
from nis2triage.nis2.facts import Facts
from nis2triage.nis2.significance import assess

MakeEntity = Callable[..., Entity]
MET, UNMET, UNKNOWN = "met", "unmet", "unknown"
Row = tuple[str, dict[str, Any], str, str]


def rows(kind: str | None, prefix: str, table: list[Row]) -> list[Any]:
    """Parameters for one entity kind: (criterion id suffix, facts, expected status, label)."""
    return [
        pytest.param(kind, f"{prefix}-{suffix}", facts, want, id=f"{prefix}-{suffix}-{label}")
        for suffix, facts, want, label in table
    ]


def limited(users: int, total: int | None = None, minutes: float = 61) -> dict[str, Any]:
    """Availability limited for `minutes`, for `users` of `total` EU users."""
    return {
        "limited_availability_minutes": minutes,
        "users_affected": users,
        "eu_users_total": total,
    }


def leaked(users: int, total: int | None = None, malicious: bool | None = None) -> dict[str, Any]:
    """Data compromised for `users` of `total` EU users."""
    facts = {"data_compromised": True, "users_data_affected": users, "eu_users_total": total}
    return {**facts, "malicious_suspected": malicious}


def slow(seconds: float, minutes: float | None) -> dict[str, Any]:
    return {"mean_response_seconds": seconds, "slow_response_minutes": minutes}


def misconfigured(names: int, managed: int | None) -> dict[str, Any]:
    return {
        "data_compromised": True,
        "compromise_by_misconfiguration": True,
        "domain_names_affected": names,
        "domain_names_managed": managed,
    }


ACCESS = {"unauthorised_access_confirmed": True, "malicious_suspected": True}

# The entity's turnover is EUR 20 m: 5 % is EUR 1 m, so EUR 500,000 is the lower threshold.
IR_GENERAL = rows("cloud", "ir", [
    ("financial-loss", {"financial_loss_eur": 500_000}, UNMET, "500k"),
    ("financial-loss", {"financial_loss_eur": 500_001}, MET, "500k+1"),
    ("financial-loss", {}, UNKNOWN, "no-figure"),
    ("trade-secrets", {"trade_secrets_exfiltrated": False}, UNMET, "no"),
    ("trade-secrets", {"trade_secrets_exfiltrated": True}, MET, "yes"),
    ("death", {"deaths": 0, "death_risk": False}, UNMET, "none"),
    ("death", {"deaths": 1}, MET, "one-death"),
    ("death", {"deaths": 0, "death_risk": True}, MET, "risk"),
    ("death", {"deaths": 0}, UNKNOWN, "risk-unknown"),
    ("health-damage", {"health_damage": False}, UNMET, "no"),
    ("health-damage", {"health_damage": True}, MET, "yes"),
    ("malicious-access", {**ACCESS, "severe_operational_disruption": True}, MET, "all-three"),
    ("malicious-access", {**ACCESS, "malicious_suspected": False}, UNMET, "not-malicious"),
    ("malicious-access", ACCESS, UNKNOWN, "impact-unknown"),
])  # fmt: skip

ART23 = rows(None, "art23", [
    ("severe-disruption", {"severe_operational_disruption": False}, UNMET, "no"),
    ("severe-disruption", {"severe_operational_disruption": True}, MET, "yes"),
    ("financial-loss", {"severe_financial_loss": False}, UNMET, "no"),
    ("financial-loss", {"severe_financial_loss": True}, MET, "yes"),
    # No statutory euro figure outside the IR types: the amount alone decides nothing.
    ("financial-loss", {"financial_loss_eur": 9e6}, UNKNOWN, "euros-only"),
    ("damage-to-others", {"considerable_damage_to_others": False}, UNMET, "no"),
    ("damage-to-others", {"considerable_damage_to_others": True}, MET, "yes"),
])  # fmt: skip

DNS = rows("dns", "dns", [
    ("outage", {"unavailability_minutes": 30}, UNMET, "30min"),
    ("outage", {"unavailability_minutes": 31}, MET, "31min"),
    ("outage", {"full_outage": False}, UNMET, "never-down"),
    ("slow-response", slow(10, 90), UNMET, "10s"),
    ("slow-response", slow(10.5, 60), UNMET, "60min"),
    ("slow-response", slow(10.5, 61), MET, "10.5s-61min"),
    ("slow-response", slow(12, None), UNKNOWN, "duration-unknown"),
    # The exception: under 1,000 names and at most 1 % of those managed, by misconfiguration.
    ("data-compromised", misconfigured(999, 100_000), UNMET, "999-of-100k"),
    ("data-compromised", misconfigured(1000, 1_000_000), MET, "1000-names"),
    ("data-compromised", misconfigured(999, 99_000), MET, "over-1pct"),
    ("data-compromised", misconfigured(999, None), UNKNOWN, "managed-unknown"),
    ("data-compromised", {"data_compromised": True, "compromise_by_misconfiguration": False},
     MET, "not-misconfiguration"),
])  # fmt: skip

TLD = rows("tld", "tld", [
    ("outage", {"full_outage": False}, UNMET, "up"),
    ("outage", {"unavailability_minutes": 1}, MET, "1min"),
    ("slow-response", slow(11, 61), MET, "11s-61min"),
    ("slow-response", slow(9.9, 600), UNMET, "9.9s"),
    ("data-compromised", {"data_compromised": False}, UNMET, "no"),
    ("data-compromised", {"data_compromised": True}, MET, "yes"),
])  # fmt: skip

DATA_CENTRE = rows("data_centre", "data-centre", [
    ("outage", {"full_outage": False}, UNMET, "up"),
    ("outage", {"full_outage": True}, MET, "down"),
    ("limited-availability", {"limited_availability_minutes": 60}, UNMET, "60min"),
    ("limited-availability", {"limited_availability_minutes": 61}, MET, "61min"),
    ("malicious-compromise", {"data_compromised": True, "malicious_suspected": False},
     UNMET, "accident"),
    ("malicious-compromise", {"data_compromised": True, "malicious_suspected": True},
     MET, "malicious"),
    ("physical-access", {"physical_access_compromised": False}, UNMET, "no"),
    ("physical-access", {"physical_access_compromised": True}, MET, "yes"),
])  # fmt: skip

# 1 % of 1 m users is 10,000, below 200,000; 0.1 % of 50,000 is 50, below 100.
TRUST = rows("trust_service", "trust-service", [
    ("outage", {"unavailability_minutes": 20}, UNMET, "20min"),
    ("outage", {"unavailability_minutes": 21}, MET, "21min"),
    ("weekly-unavailability", {"weekly_unavailability_minutes": 60}, UNMET, "60min"),
    ("weekly-unavailability", {"weekly_unavailability_minutes": 61}, MET, "61min"),
    ("limited-availability", limited(10_000, 1_000_000, minutes=1), UNMET, "1pct"),
    ("limited-availability", limited(10_001, 1_000_000, minutes=1), MET, "1pct+1"),
    ("limited-availability", limited(200_000, 100_000_000), UNMET, "200k"),
    ("limited-availability", limited(200_001), MET, "200k+1"),
    ("physical-access", {"physical_access_compromised": False}, UNMET, "no"),
    ("physical-access", {"physical_access_compromised": True}, MET, "yes"),
    ("compromise-users", leaked(50, 50_000), UNMET, "0.1pct"),
    ("compromise-users", leaked(51, 50_000), MET, "0.1pct+1"),
    ("compromise-users", leaked(100, 1_000_000), UNMET, "100"),
    ("compromise-users", leaked(101), MET, "101"),
    ("compromise-users", leaked(60), UNKNOWN, "total-unknown"),
])  # fmt: skip


def service_rows(kind: str, prefix: str) -> list[Any]:
    """Cloud, CDN, MSP/MSSP (IR Arts. 7, 9, 10) share thresholds; 5 % of 1 m is 50,000."""
    return rows(kind, prefix, [
        ("outage", {"unavailability_minutes": 30}, UNMET, f"{kind}-30min"),
        ("outage", {"unavailability_minutes": 30.5}, MET, f"{kind}-30.5min"),
        ("limited-availability", limited(50_000, 1_000_000), UNMET, f"{kind}-5pct"),
        ("limited-availability", limited(50_001, 1_000_000), MET, f"{kind}-5pct+1"),
        ("limited-availability", limited(1_000_000, 40_000_000), UNMET, f"{kind}-1m"),
        ("limited-availability", limited(1_000_001), MET, f"{kind}-1m+1"),
        ("limited-availability", limited(2_000_000, minutes=60), UNMET, f"{kind}-60min"),
        ("limited-availability", limited(60_000), UNKNOWN, f"{kind}-total-unknown"),
        ("malicious-compromise", leaked(1, malicious=True), MET, f"{kind}-malicious"),
        ("malicious-compromise", {"data_compromised": False}, UNMET, f"{kind}-intact"),
        ("compromise-users", leaked(50_000, 1_000_000), UNMET, f"{kind}-5pct"),
        ("compromise-users", leaked(50_001, 1_000_000), MET, f"{kind}-5pct+1"),
    ])  # fmt: skip


def platform_rows(kind: str, prefix: str) -> list[Any]:
    """Marketplaces, search engines, social networks (IR Arts. 11-13): no duration threshold."""
    down = {"full_outage": True, "eu_users_total": 10_000_000}
    return rows(kind, prefix, [
        ("outage", {**down, "users_affected": 500_000}, UNMET, f"{kind}-5pct"),
        ("outage", {**down, "users_affected": 500_001}, MET, f"{kind}-5pct+1"),
        ("outage", {"full_outage": False, "users_affected": 9_000_000}, UNMET, f"{kind}-up"),
        ("limited-availability", limited(1_000_001, minutes=5), MET, f"{kind}-1m+1"),
        ("limited-availability", limited(2_000_000, minutes=0), UNMET, f"{kind}-not-limited"),
        ("malicious-compromise", leaked(1, malicious=True), MET, f"{kind}-malicious"),
        ("malicious-compromise", leaked(1, malicious=False), UNMET, f"{kind}-accident"),
        ("compromise-users", leaked(1_000_000, 30_000_000), UNMET, f"{kind}-1m"),
        ("compromise-users", leaked(1_000_001, 30_000_000), MET, f"{kind}-1m+1"),
    ])  # fmt: skip


SERVICES = [
    *service_rows("cloud", "cloud"),
    *service_rows("cdn", "cdn"),
    *service_rows("msp", "msp-mssp"),
    *service_rows("mssp", "msp-mssp"),
    *platform_rows("marketplace", "marketplace"),
    *platform_rows("search_engine", "search-engine"),
    *platform_rows("social_network", "social-network"),
]
ALL_ROWS = IR_GENERAL + ART23 + DNS + TLD + DATA_CENTRE + TRUST + SERVICES


@pytest.mark.parametrize(("kind", "criterion_id", "facts", "want"), ALL_ROWS)
def test_criterion_threshold(
    criteria: CriteriaSet,
    make_entity: MakeEntity,
    kind: str | None,
    criterion_id: str,
    facts: dict[str, Any],
    want: str,
) -> None:
    result = assess(make_entity(kind), Facts(**facts), criteria)

    assert result.status(criterion_id) == want


def test_every_shipped_criterion_is_exercised_both_ways(criteria: CriteriaSet) -> None:
    seen = {(p.values[1], p.values[3]) for p in ALL_ROWS}

    lacking = [c.id for c in criteria.criteria if not {(c.id, MET), (c.id, UNMET)} <= seen]

    assert lacking == ["ir-recurring"]  # tested with dated incidents in test_verdict.py


@pytest.mark.parametrize(
    ("turnover", "loss", "want"),
    [
        pytest.param(4_000_000, 200_000, UNMET, id="5pct-of-4m-exactly"),
        pytest.param(4_000_000, 200_001, MET, id="above-5pct-of-4m"),
        pytest.param(None, 600_000, MET, id="no-turnover-above-500k"),
        pytest.param(None, 400_000, UNKNOWN, id="no-turnover-below-500k"),
    ],
)
def test_financial_loss_uses_the_lower_threshold(
    criteria: CriteriaSet, make_entity: MakeEntity, turnover: float | None, loss: float, want: str
) -> None:
    result = assess(make_entity("cloud", turnover), Facts(financial_loss_eur=loss), criteria)

    assert result.status("ir-financial-loss") == want


def test_a_criterion_of_another_type_is_not_assessed(
    criteria: CriteriaSet, make_entity: MakeEntity
) -> None:
    result = assess(make_entity("cloud"), Facts(unavailability_minutes=25), criteria)

    assert (result.status("cloud-outage"), result.status("trust-service-outage")) == (
        UNMET,
        "not_assessed",
    )
