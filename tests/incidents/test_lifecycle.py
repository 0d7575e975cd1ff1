"""The lifecycle as pure functions: correlation keys, opening, awareness, closing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from nis2triage.assets import Asset, Inventory
from nis2triage.errors import IncidentError
from nis2triage.incidents import lifecycle
from nis2triage.incidents.record import later_status

from .conftest import LAB, T0, alert


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        pytest.param(["entity"], ("entity:source.ip=203.0.113.9",), id="entity"),
        pytest.param(["asset", "service"], ("asset:labsz", "service:research"), id="asset-service"),
    ],
)
def test_correlation_keys_follow_the_configuration(
    by: list[str], expected: tuple[str, ...]
) -> None:
    assert lifecycle.correlation_keys(alert(), LAB, by) == expected


def test_a_new_incident_is_detected_at_the_alert_and_triaged_when_filed() -> None:
    filed = T0 + timedelta(hours=2)
    incident = lifecycle.open_incident(alert(), LAB, ("k",), filed)

    assert [(t.action, t.at) for t in incident.history] == [("detected", T0), ("triaged", filed)]
    assert incident.status == "triaged"
    assert incident.aware_at is None
    assert incident.users == ("oracle",)
    assert incident.ips == ("203.0.113.9",)


def test_an_alert_joining_with_earlier_events_moves_the_first_detection_back() -> None:
    # A rule's alert over 10:02-10:03 joined an incident first detected at 10:05, which
    # then said "first detected 10:05" in its reports all the same.
    incident = lifecycle.open_incident(alert(), LAB, ("k",), T0)
    earlier = alert(at=T0 - timedelta(minutes=3))

    joined = lifecycle.with_alert(incident, earlier, LAB, ("k",))

    assert (joined.opened_at, joined.last_seen) == (T0 - timedelta(minutes=3), T0)


def test_awareness_is_set_once_and_a_later_acknowledgement_only_recorded() -> None:
    incident = lifecycle.open_incident(alert(), LAB, ("k",), T0)
    aware = lifecycle.become_aware(incident, T0 + timedelta(hours=1), "alice", "confirmed")
    again = lifecycle.become_aware(aware, T0 + timedelta(hours=3), "bob", "seen")

    assert aware.aware_at == again.aware_at == T0 + timedelta(hours=1)
    assert [t.action for t in again.history][-2:] == ["aware", "acknowledged"]
    assert again.history[-1].who == "bob"


def test_a_closed_incident_cannot_be_closed_or_acknowledged_again() -> None:
    closed = lifecycle.close(lifecycle.open_incident(alert(), LAB, ("k",), T0), T0, "alice", "done")

    with pytest.raises(IncidentError, match="already closed"):
        lifecycle.close(closed, T0, "alice", "again")
    with pytest.raises(IncidentError, match="is closed"):
        lifecycle.become_aware(closed, T0, "alice", "late")


@pytest.mark.parametrize(
    ("current", "reached", "expected"),
    [
        pytest.param("aware", "early_warning_sent", "early_warning_sent", id="forward"),
        pytest.param(
            "incident_notification_sent",
            "early_warning_sent",
            "incident_notification_sent",
            id="no-step-back",
        ),
        pytest.param("closed", "final_report_sent", "closed", id="closed-stays"),
    ],
)
def test_status_only_moves_forward(current: str, reached: str, expected: str) -> None:
    assert later_status(current, reached) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "entity", "users", "hosts"),
    [
        # The address's local part too, as people write an account without its domain.
        (
            "user.email",
            "jan.peeters@port.example",
            ("oracle", "jan.peeters@port.example", "jan.peeters"),
            (),
        ),
        ("winlog.event_data.TargetUserName", "JPeeters", ("oracle", "JPeeters"), ()),
        ("host.name", "LT-JAN-PEETERS", ("oracle",), ("LT-JAN-PEETERS",)),
        ("source.ip", "203.0.113.9", ("oracle",), ()),
        # A MAC address is found by its shape, as an IP address is: a "mac-" pseudonym.
        ("source.mac", "00-1A-2B-3C-4D-5E", ("oracle",), ()),
    ],
)
def test_an_alerts_own_entity_is_named_for_pseudonyms_whatever_its_field(
    field: str, entity: str, users: tuple[str, ...], hosts: tuple[str, ...]
) -> None:
    on = replace(alert(), entity_field=field, entity=entity, related_hosts=())
    incident = lifecycle.open_incident(on, LAB, ("k",), T0)
    # An incident recorded before every field's entity was kept still names it.
    older = incident.model_copy(update={"users": ("oracle",), "hosts": ()})

    assert lifecycle.named_entities(incident) == (users, hosts)
    assert lifecycle.named_entities(older) == (users, hosts)


@pytest.mark.parametrize(
    ("field", "entity", "kept"),
    [
        pytest.param("source.ip", "185.190.58.151", ["185.190.58.151"], id="internet-origin"),
        # A dual-stack socket's IPv4 peer is that IPv4 address.
        pytest.param("client.ip", "::ffff:185.190.58.151", ["185.190.58.151"], id="mapped"),
        pytest.param("source.ip", "10.20.0.7", [], id="private"),
        pytest.param("source.ip", "203.0.113.9", [], id="documentation-range"),
        pytest.param("source.ip", "192.0.2.10", [], id="inventoried-by-the-entity"),
        pytest.param("destination.ip", "185.190.58.151", [], id="destination"),
        pytest.param("user.name", "185.190.58.151", [], id="a-user-field"),
        # Translated forms are judged by the IPv4 host they stand for as well: these were
        # kept in clear, though they name an inside host or the entity's own address.
        pytest.param("source.ip", "64:ff9b::a14:7", [], id="nat64-of-a-private-address"),
        pytest.param("source.ip", "64:ff9b:1::a14:7", [], id="local-use-nat64"),
        pytest.param("source.ip", "2002:a14:7::1", [], id="6to4-of-a-private-address"),
        pytest.param("source.ip", "64:ff9b::5152:5354", [], id="nat64-of-an-inventoried-address"),
        pytest.param(
            "source.ip", "64:ff9b::b9be:3a97", ["64:ff9b::b9be:3a97"], id="nat64-of-an-attacker"
        ),
    ],
)
def test_attacker_addresses_are_internet_origins_the_inventory_does_not_list(
    field: str, entity: str, kept: list[str]
) -> None:
    inventory = Inventory(assets=[Asset(name="edge", networks=["192.0.2.0/24", "81.82.83.0/24"])])
    on = replace(alert(), entity_field=field, entity=entity)
    incident = lifecycle.open_incident(on, LAB, ("k",), T0)

    assert lifecycle.attacker_addresses(incident, inventory) == kept
