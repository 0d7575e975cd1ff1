"""Triage routes from severity, score and asset criticality."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nis2triage.assets import Asset, Inventory
from nis2triage.records import Alert
from nis2triage.triage import load_rules, route

from support import REPO

T = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
RULES = load_rules(REPO / "rules" / "triage.yml")
INVENTORY = Inventory(
    assets=[
        Asset(name="scada", hosts=["plc-gw"], criticality="critical"),
        Asset(name="lab", hosts=["LabSZ"], networks=["10.1.0.0/16"], criticality="high"),
        Asset(name="kiosk", hosts=["kiosk1"], criticality="low"),
    ]
)


def alert(
    severity: str, score: float, host: str, hints: tuple[str, ...] = (), events: int = 20
) -> Alert:
    return Alert(
        kind="detector",
        name="d",
        version="1",
        severity=severity,  # type: ignore[arg-type]
        timestamp=T,
        start=T,
        end=T,
        score=score,
        threshold=0.8,
        entity_field="source.ip",
        entity="203.0.113.9",
        message="m",
        index_pattern="logs",
        query="q",
        related_hosts=(host,),
        hints=hints,
        evidence={"events": events},
    )


@pytest.mark.parametrize(
    ("severity", "score", "host", "hints", "expected"),
    [
        pytest.param("high", 0.99, "plc-gw", (), "contain", id="confident-on-critical"),
        pytest.param("high", 0.90, "plc-gw", (), "early_warning", id="less-confident-on-critical"),
        pytest.param("high", 0.99, "LabSZ", (), "early_warning", id="high-asset"),
        pytest.param("medium", 0.99, "LabSZ", (), "soc", id="medium-severity"),
        pytest.param("critical", 0.99, "kiosk1", (), "soc", id="low-asset"),
        pytest.param(
            "low", 0.81, "kiosk1", ("early_warning_candidate",), "early_warning", id="hint"
        ),
        pytest.param("high", 0.99, "unknown-host", (), "soc", id="no-asset"),
    ],
)
def test_routes(severity: str, score: float, host: str, hints: tuple, expected: str) -> None:
    routed, _ = route(alert(severity, score, host, hints), RULES, INVENTORY)

    assert routed.route == expected
    assert routed.route_reason


@pytest.mark.parametrize(("events", "expected"), [(9, "soc"), (10, "early_warning")])
def test_a_handful_of_events_is_not_an_early_warning(events: int, expected: str) -> None:
    routed, _ = route(alert("high", 0.95, "LabSZ", events=events), RULES, INVENTORY)

    assert routed.route == expected
    assert routed.route_reason


def test_reason_names_the_rule_and_what_held() -> None:
    routed, asset = route(alert("high", 0.99, "plc-gw"), RULES, INVENTORY)

    assert asset is not None and asset.name == "scada"
    assert routed.route_reason == (
        "rule 'high-confidence-threat-on-critical-asset': severity high >= high; "
        "score/threshold 1.24 >= 1.2; asset scada is critical"
    )


def test_asset_found_by_address_range() -> None:
    a = alert("high", 0.99, "elsewhere")
    a = Alert(**{**a.__dict__, "related_ips": ("10.1.2.3",)})

    assert INVENTORY.for_alert(a) == INVENTORY.assets[1]
