"""The incident lifecycle as pure functions: each returns the changed record, history included.

detected -> triaged -> aware -> <report>_sent ... -> closed. Awareness starts
the NIS2 clocks (Art. 23(4)): it is set by the agent for high-confidence
routes, or by an analyst's acknowledgement. Nothing here touches
Elasticsearch or reads the clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from nis2triage.assets import Address, Asset, Inventory, address_of, ipv4_inside
from nis2triage.errors import IncidentError
from nis2triage.incidents.record import (
    MAX_ALERTS,
    AlertSummary,
    AssetView,
    Incident,
    Status,
    Transition,
)
from nis2triage.notify.pseudonym import is_mac
from nis2triage.records import Alert, stable_id

AGENT = "nis2triage"
_BEFORE_AWARE: tuple[Status, ...] = ("detected", "triaged")


def step(
    incident: Incident,
    at: datetime,
    who: str,
    action: str,
    why: str,
    to: Status | None = None,
    details: dict[str, Any] | None = None,
    **changes: Any,
) -> Incident:
    """`incident` with `changes` applied and the transition recorded in its history."""
    target = to or incident.status
    move = Transition(
        seq=len(incident.history),
        at=at,
        who=who,
        action=action,
        from_status=incident.status if incident.history else None,
        to_status=target,
        why=why,
        details=details or {},
    )
    return incident.model_copy(
        update={**changes, "status": target, "history": (*incident.history, move)}
    )


def correlation_keys(alert: Alert, asset: Asset | None, by: Iterable[str]) -> tuple[str, ...]:
    """What an alert can share with an incident: its entity, its asset, its service."""
    keys = {
        "entity": f"entity:{alert.entity_field}={alert.entity}",
        "asset": f"asset:{asset.name}" if asset else None,
        "service": f"service:{asset.service}" if asset and asset.service else None,
    }
    return tuple(k for name in by if (k := keys[name]))


def open_incident(
    alert: Alert, asset: Asset | None, keys: tuple[str, ...], now: datetime
) -> Incident:
    """A new incident from its first alert: detected when the alert fired, triaged at once."""
    incident = Incident(
        id=stable_id("incident", keys[0], alert.id),
        title=alert.message,
        status="detected",
        opened_at=alert.timestamp,
        last_seen=alert.timestamp,
        window_end=alert.timestamp,
        keys=keys,
        alert_ids=(),
        alerts=(),
    )
    incident = step(incident, alert.timestamp, AGENT, "detected", f"{alert.name}: {alert.message}")
    incident = with_alert(incident, alert, asset, keys)
    return step(incident, now, AGENT, "triaged", alert.route_reason or "triaged", to="triaged")


def with_alert(
    incident: Incident, alert: Alert, asset: Asset | None, keys: tuple[str, ...]
) -> Incident:
    """The incident with one more alert: its IoCs, asset and route merged in."""
    alerts = incident.alerts
    if len(alerts) < MAX_ALERTS:
        alerts = (*alerts, AlertSummary.of(alert))
    assets = incident.assets
    if asset is not None and asset.name not in {a.name for a in assets}:
        assets = (*assets, _asset_view(asset))
    return incident.model_copy(
        update={
            "alert_ids": (*incident.alert_ids, alert.id),
            "alerts": alerts,
            "assets": assets,
            "keys": _merged(incident.keys, keys),
            "routes": _merged(incident.routes, [alert.route or "soc"]),
            "ips": _merged(incident.ips, alert.related_ips),
            "users": _merged(incident.users, _users(alert)),
            "hosts": _merged(incident.hosts, _hosts(alert)),
            # An alert may join with events older than the first one's (a rule's window
            # judged later): the incident was first detected at the earliest.
            "opened_at": min(incident.opened_at, alert.timestamp),
            "last_seen": max(incident.last_seen, alert.timestamp),
        }
    )


def _users(alert: Alert) -> tuple[str, ...]:
    return (*alert.related_users, *_own(alert.entity_field, alert.entity, "user"))


def _hosts(alert: Alert) -> tuple[str, ...]:
    return (*alert.related_hosts, *_own(alert.entity_field, alert.entity, "host"))


def named_entities(incident: Incident) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The user and host names an incident's reports must not carry in clear: those its
    alerts related, and each alert's own entity, whatever field it came from (incidents
    recorded before entities of every field were kept are covered too)."""
    alerts = [(a.entity_field, a.entity) for a in incident.alerts]
    users = [name for field, entity in alerts for name in _own(field, entity, "user")]
    hosts = [name for field, entity in alerts for name in _own(field, entity, "host")]
    users = [*incident.users, *users]
    hosts = [*incident.hosts, *hosts]
    return _merged(users, _short_users(users)), _merged(hosts, _short_hosts(hosts))


# Fields whose address is where an activity came from: a detection keyed on one judged
# that address's behaviour (the logins it tried, the ports it scanned).
ORIGIN_FIELDS = frozenset({"source.ip", "client.ip"})


def attacker_addresses(incident: Incident, inventory: Inventory) -> list[str]:
    """The addresses an incident's reports keep intact as indicators of compromise: the
    entities of its detections keyed on where an activity came from, on the internet,
    and listed by no asset of the inventory. Our design rule (docs: reports carry
    pseudonymised user and host identifiers, attacker IoCs stay intact): a private or
    reserved address, or one of the entity's own, names its people or machines, and is
    pseudonymised like them; an internet address probing the entity is what the CSIRT
    can block and compare with other reports."""
    kept = set()
    for alert in incident.alerts:
        address = address_of(alert.entity) if alert.entity_field in ORIGIN_FIELDS else None
        if address is not None and _on_the_internet(address, inventory):
            kept.add(str(address))
    return sorted(kept)


# NAT64's prefix for local use (RFC 8215): it may carry private IPv4 hosts, yet Python
# before 3.12.4 takes its addresses for global ones.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def _on_the_internet(address: Address, inventory: Inventory) -> bool:
    """Whether `address` is an internet host of no asset's, judged also by the IPv4 host
    it stands for: `64:ff9b::a14:7` (NAT64) is the inside 10.20.0.7, which a check of the
    IPv6 address alone kept in clear in the reports."""
    if address in _LOCAL_NAT64:
        return False
    seen_as = [a for a in (address, ipv4_inside(address)) if a is not None]
    return all(a.is_global and not inventory.lists_address(str(a)) for a in seen_as)


# Shorter than this, a name's short form is too likely a word of its own to replace.
MIN_SHORT_NAME = 3


def _short_users(users: Iterable[str]) -> list[str]:
    """How people write an account without its domain: `jan.peeters` for CORP\\jan.peeters
    or jan.peeters@corp.example."""
    short = [u.rsplit("\\", 1)[-1].split("@", 1)[0] for u in users]
    return [s for s, u in zip(short, users, strict=True) if s != u and len(s) >= MIN_SHORT_NAME]


def _short_hosts(hosts: Iterable[str]) -> list[str]:
    """How people write a machine without its domain: `jan-laptop` for
    jan-laptop.corp.example."""
    short = [h.split(".", 1)[0] for h in hosts]
    return [
        s
        for s, h in zip(short, hosts, strict=True)
        if s != h and len(s) >= MIN_SHORT_NAME and not s.isdigit()
    ]


def _own(field: str, entity: str, kind: str) -> tuple[str, ...]:
    """The alert's own entity if it is a name of `kind`, else nothing."""
    return (entity,) if _kind_of_entity(field, entity) == kind else ()


def _kind_of_entity(field: str, value: str) -> str | None:
    """ "host" for a machine's name, None for an address, IP or MAC (the scrubber finds
    those by their shape), "user" for anything else: an account, an e-mail, a name of whatever
    kind, pseudonymised rather than risk a person's name leaving in clear."""
    if not value or _is_address(value):
        return None
    parts = field.lower().split(".")
    machine = any("host" in part or part in ("computer_name", "computername") for part in parts)
    return "host" if machine else "user"


def _is_address(value: str) -> bool:
    if is_mac(value):
        return True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _merged(old: Iterable[str], new: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*old, *new]))


def _asset_view(asset: Asset) -> AssetView:
    return AssetView(
        name=asset.name,
        criticality=asset.criticality,
        service=asset.service,
        service_type=asset.service_type,
        users_served=asset.users_served,
        cross_border=asset.cross_border,
    )


def become_aware(
    incident: Incident, at: datetime, who: str, why: str, since: datetime | None = None
) -> Incident:
    """Awareness starts the reporting clocks; a later acknowledgement is only recorded.

    `since`: when the entity became aware, if earlier than this record (`at`): the
    clocks of NIS2 Art. 23(4) run from then, not from when someone wrote it down."""
    if incident.status == "closed":
        raise IncidentError(f"incident {incident.id} is closed; it cannot be acknowledged")
    if incident.status not in _BEFORE_AWARE:
        if since is None:
            return step(incident, at, who, "acknowledged", why)
        return _aware_earlier(incident, at, who, why, since)
    aware_at = since or at
    if aware_at != at:
        why += f" (aware since {aware_at.isoformat()})"
    return step(incident, at, who, "aware", why, to="aware", aware_at=aware_at)


def _aware_earlier(
    incident: Incident, at: datetime, who: str, why: str, since: datetime
) -> Incident:
    """An incident already aware (its first alert made it so) whose entity, it turns out,
    knew earlier: the clocks run from the first awareness, so they move back. A later
    moment changes nothing the law counts, and is refused rather than ignored."""
    if incident.aware_at is not None and since >= incident.aware_at:
        raise IncidentError(
            f"incident {incident.id} is aware since {incident.aware_at.isoformat()}; --at "
            f"{since.isoformat()} can only move it earlier (the clocks run from the first "
            "awareness): leave --at out to acknowledge it"
        )
    why += f" (aware since {since.isoformat()}, earlier than recorded)"
    return step(incident, at, who, "aware earlier", why, aware_at=since)


def require_aware(incident: Incident, what: str) -> None:
    if incident.status in _BEFORE_AWARE:
        raise IncidentError(
            f"incident {incident.id} is not acknowledged yet, so no {what}: "
            f"run `nis2triage incidents ack {incident.id}` first"
        )


def close(incident: Incident, at: datetime, who: str, why: str) -> Incident:
    """Handling has ended (the date NIS2 Art. 23(4)(e) counts the final report from)."""
    if incident.status == "closed":
        raise IncidentError(f"incident {incident.id} is already closed")
    return step(incident, at, who, "closed", why, to="closed", closed_at=at)
