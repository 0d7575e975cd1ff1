"""The asset and service inventory: which hosts and networks matter, and how much."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nis2triage import yamlload
from nis2triage.errors import ConfigError
from nis2triage.nis2.entity import IrType
from nis2triage.records import Alert

Criticality = Literal["low", "medium", "high", "critical"]
CRITICALITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}


class Asset(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    hosts: list[str] = Field(default_factory=list)
    networks: list[str] = Field(default_factory=list)
    criticality: Criticality = "medium"
    service: str | None = None
    # The service's type in Implementing Regulation (EU) 2024/2690 Art. 1, if it has one: it
    # picks the significance thresholds (e.g. cloud: outage over 30 minutes, IR Art. 7(a)).
    service_type: IrType | None = None
    # Users of the service in the Union (IR Art. 3(3): contract customers included).
    users_served: int | None = Field(default=None, ge=0)
    cross_border: bool | None = None

    @field_validator("networks")
    @classmethod
    def _cidrs(cls, networks: list[str]) -> list[str]:
        for net in networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"{net!r} is not an address range like 10.0.0.0/8") from exc
        return networks


class Inventory(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    assets: list[Asset] = Field(default_factory=list)

    def for_alert(self, alert: Alert) -> Asset | None:
        """The most critical asset the alert touches: by host name, then by address."""
        hosts = {h.lower() for h in alert.related_hosts}
        addresses = [_ip(a) for a in (*alert.related_ips, alert.entity)]
        touched = [
            a
            for a in self.assets
            if hosts & {h.lower() for h in a.hosts} or _in_networks(addresses, a.networks)
        ]
        return max(touched, key=lambda a: CRITICALITY_RANK[a.criticality], default=None)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _in_networks(addresses: Sequence[object], networks: list[str]) -> bool:
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]
    return any(
        a in n
        for a in addresses
        if isinstance(a, ipaddress.IPv4Address | ipaddress.IPv6Address)
        for n in nets
        if a.version == n.version
    )


def load_inventory(path: str | Path | None) -> Inventory:
    if path is None:
        return Inventory()
    located = yamlload.load_file(path)
    if not isinstance(located.data, dict):
        raise ConfigError("an inventory is a mapping with an `assets` list", path=str(path))
    try:
        return Inventory.model_validate(located.data)
    except ValidationError as exc:
        from nis2triage.config import validation_error

        raise validation_error(located, exc, Inventory) from exc
