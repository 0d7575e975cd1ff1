"""The asset and service inventory: which hosts and networks matter, and how much.

How an alert's host names and addresses find their asset (docs/triage.md says the same):

- Host names compare without regard to ASCII case (RFC 4343) or a trailing dot:
  `DC01.corp.example.` is `dc01.corp.example`; an internationalised name compares in
  its IDNA ASCII form: `DC01.SOCIÉTÉ.example` is `dc01.xn--socit-esab.example`.
- A short name (no dot) and a full name match when the full name starts with it:
  an alert on `DC01` touches an entry `dc01.corp.example`, and an alert on
  `dc01.corp.example` touches an entry `dc01`. Two full names match only when equal.
- An address, under `hosts` or in an alert's host names, matches as an address; an
  IPv4-mapped IPv6 address (`::ffff:10.20.1.1`) is the IPv4 address it carries.
- Of the assets touched, the most critical decides; among equals, the first listed.
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from nis2triage import yamlload
from nis2triage.errors import ConfigError
from nis2triage.nis2.entity import IrType
from nis2triage.records import Alert

Criticality = Literal["low", "medium", "high", "critical"]
CRITICALITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A host entry is compared as a name, never as a pattern: these would match only themselves.
WILDCARDS = frozenset("*?[]")
IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _host_entry(host: str) -> str:
    """An address, or a name an alert can carry: no spaces, patterns or empty labels."""
    if host != host.strip():
        raise ValueError(f"{host!r} has spaces around it: write {host.strip()!r}")
    if address_of(host) is not None:
        return host
    if not host.removesuffix("."):
        raise ValueError(f"{host!r} is empty: give the host's name or address")
    if WILDCARDS & set(host):
        raise ValueError(
            f"{host!r}: wildcards are not supported (an entry matches its own name, and a "
            "short name the full names it starts): list each host, or their addresses "
            "under networks (e.g. 10.20.0.0/16)"
        )
    if "/" in host and _range(host) is not None:
        raise ValueError(f"{host!r} is an address range: list it under networks")
    if any(c.isspace() or not c.isprintable() for c in host):
        raise ValueError(f"{host!r} has a space or control character: no host name has one")
    if "" in host.removesuffix(".").split("."):
        raise ValueError(f"{host!r} has an empty label (a leading dot or two dots): remove it")
    return host


def _network_entry(text: str) -> str:
    """A range written as it is meant: ip_network(strict=False) would silently widen
    10.20.30.0/8 to all of 10.0.0.0/8."""
    wide = _range(text)
    if wide is None:
        raise ValueError(f"{text!r} is not an address range like 10.0.0.0/8")
    try:
        ipaddress.ip_network(text)
    except ValueError:
        raise ValueError(
            f"{text!r} has host bits set: it would mean {wide} ({wide.num_addresses} "
            f"addresses); write {wide} if that is meant, else correct the prefix length"
        ) from None
    if isinstance(wide, ipaddress.IPv6Network) and wide.subnet_of(IPV4_MAPPED):
        # Alerts' IPv4-mapped addresses are matched as IPv4: so must the range be.
        v4 = ipaddress.IPv4Network((int(wide.network_address) & 0xFFFFFFFF, wide.prefixlen - 96))
        raise ValueError(f"{text!r} is IPv4 written as IPv6: write {v4}")
    return text


def _range(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


HostEntry = Annotated[str, AfterValidator(_host_entry)]
NetworkEntry = Annotated[str, AfterValidator(_network_entry)]


class Asset(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    hosts: list[HostEntry] = Field(default_factory=list)
    networks: list[NetworkEntry] = Field(default_factory=list)
    criticality: Criticality = "medium"
    service: str | None = None
    # The service's type in Implementing Regulation (EU) 2024/2690 Art. 1, if it has one: it
    # picks the significance thresholds (e.g. cloud: outage over 30 minutes, IR Art. 7(a)).
    service_type: IrType | None = None
    # Users of the service in the Union (IR Art. 3(3): contract customers included).
    users_served: int | None = Field(default=None, ge=0)
    cross_border: bool | None = None


class Inventory(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    assets: list[Asset] = Field(default_factory=list)

    def for_alert(self, alert: Alert) -> Asset | None:
        """The most critical asset the alert touches, by host name or address."""
        names = [*alert.related_hosts]
        if alert.entity_field in HOST_FIELDS:
            names.append(alert.entity)
        found = [address_of(a) for a in (*alert.related_ips, alert.entity, *names)]
        touched = self._index.touched(names, [a for a in found if a is not None])
        # In the order listed, so that max() keeps the first of equal criticality.
        assets = [self.assets[i] for i in sorted(touched)]
        return max(assets, key=lambda a: CRITICALITY_RANK[a.criticality], default=None)

    def lists_address(self, text: str) -> bool:
        """Whether `text` is an address that some asset lists among its hosts or networks."""
        address = address_of(text)
        return address is not None and bool(self._index.touched([], [address]))

    @model_validator(mode="after")
    def _one_meaning(self, info: ValidationInfo) -> Inventory:
        """Refuses two assets of one name, and one host under assets of two criticalities:
        which was meant would be a guess (the break run's DC01 took the low one)."""
        clashes = _clashes(self.assets)
        if not clashes:
            return self
        located = (info.context or {}).get("located")
        if isinstance(located, yamlload.Located):
            # Not a ValueError, so pydantic lets it through: both lines, not "(top level)".
            raise _refusal(located, clashes)
        raise ValueError(
            "; ".join(f"{_dotted(c.loc)}: {c.said(_dotted(c.first))}" for c in clashes)
        )

    @cached_property
    def _index(self) -> _Index:
        # Built once: an alert then costs a few look-ups, not a pass over every host.
        return _Index.of(self.assets)


HOST_FIELDS = ("host.name", "host.hostname")


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(map(str, loc))


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def host_key(name: str) -> str:
    """A host name as it compares: ASCII letters in lower case (RFC 4343) and without the
    trailing dot that ends a fully qualified name. An internationalised name is compared
    as DNS carries it (`dc01.société.example` is `dc01.xn--socit-esab.example`), after
    IDNA's own mapping of case and full-width forms (`SOCIÉTÉ` is `société`)."""
    key = name.strip().translate(_ASCII_LOWER)
    if not key.isascii():
        key = _ace(key)
    return key.removesuffix(".")


def _ace(name: str) -> str:
    """`name` in IDNA's ASCII form; as written when IDNA refuses it (an empty or over-long
    label, a character no host name may hold): it then matches only itself."""
    try:
        return name.encode("idna").decode("ascii").translate(_ASCII_LOWER)
    except UnicodeError:
        return name


def address_of(text: str) -> Address | None:
    """`text` as an address, the way alerts are matched (None when it is none)."""
    try:
        found = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if not isinstance(found, ipaddress.IPv6Address):
        return found
    # A zone (fe80::1%eth0) names the interface that reached the address, not the host:
    # compared with it, an entry matched no alert, whose addresses carry none.
    if found.scope_id is not None:
        found = ipaddress.IPv6Address(int(found))
    # A dual-stack socket writes an IPv4 peer as ::ffff:a.b.c.d; it is that IPv4 peer.
    return found.ipv4_mapped if found.ipv4_mapped is not None else found


# IPv6 prefixes whose addresses stand for an IPv4 host: NAT64's well-known prefix (RFC
# 6052 2.1) and the old IPv4-compatible form (RFC 4291 2.5.5.1) in their last 32 bits,
# 6to4 (RFC 3056) in bits 16 to 47.
_IPV4_LAST = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("::/96"))
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def ipv4_inside(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 host a translated IPv6 address stands for; None for any other address."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if any(address in prefix for prefix in _IPV4_LAST):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)
    return None


# An entry's place in the inventory: (asset, host) positions.
Entry = tuple[int, int]


@dataclass(frozen=True)
class _Index:
    """Where each host name, short name and address is listed."""

    names: dict[str, list[Entry]] = field(default_factory=dict)
    # The first label of each full name listed: where an alert's short name looks.
    labels: dict[str, list[Entry]] = field(default_factory=dict)
    addresses: dict[Address, list[Entry]] = field(default_factory=dict)
    # The assets of each range, by IP version and prefix length: an address is looked up
    # once per length listed (at most 33 or 129), not compared with every range. A pass
    # over 20,000 ranges took 14 ms an alert: minutes for a burst of alerts.
    networks: dict[tuple[int, int], dict[Network, list[int]]] = field(default_factory=dict)

    @classmethod
    def of(cls, assets: Sequence[Asset]) -> _Index:
        index = cls()
        for i, asset in enumerate(assets):
            for j, host in enumerate(asset.hosts):
                index.add(host, (i, j))
            for text in asset.networks:
                network = ipaddress.ip_network(text)
                ranges = index.networks.setdefault((network.version, network.prefixlen), {})
                ranges.setdefault(network, []).append(i)
        return index

    def add(self, host: str, entry: Entry) -> None:
        address = address_of(host)
        if address is not None:
            self.addresses.setdefault(address, []).append(entry)
            return
        key = host_key(host)
        self.names.setdefault(key, []).append(entry)
        short, dot, _ = key.partition(".")
        if dot:
            self.labels.setdefault(short, []).append(entry)

    def matching(self, host: str) -> list[Entry]:
        """The entries an alert's host name or address `host` touches."""
        address = address_of(host)
        if address is not None:
            return self.addresses.get(address, [])
        key = host_key(host)
        short, dot, _ = key.partition(".")
        # A full name also touches an entry of its short name; a short name, the full
        # names that start with it.
        related = self.names.get(short, []) if dot else self.labels.get(key, [])
        return [*self.names.get(key, []), *related]

    def touched(self, names: Iterable[str], addresses: Iterable[Address]) -> set[int]:
        found = {i for name in names if address_of(name) is None for i, _ in self.matching(name)}
        for address in addresses:
            found.update(i for i, _ in self.addresses.get(address, []))
            found.update(self._in_ranges(address))
        return found

    def _in_ranges(self, address: Address) -> list[int]:
        """The assets whose ranges hold `address`."""
        found = []
        for (version, length), ranges in self.networks.items():
            if version == address.version:
                holding = ipaddress.ip_network((address, length), strict=False)
                found += ranges.get(holding, [])
        return found


@dataclass(frozen=True)
class _Clash:
    """Two entries that make the asset an alert touches depend on which is read first."""

    loc: tuple[str | int, ...]
    first: tuple[str | int, ...]
    said: Callable[[str], str]  # the message, given where the first entry is


def _clashes(assets: Sequence[Asset]) -> list[_Clash]:
    found: list[_Clash] = []
    named: dict[str, int] = {}
    index = _Index()
    for i, asset in enumerate(assets):
        first = named.setdefault(asset.name.strip().casefold(), i)
        if first != i:
            found.append(_name_clash(asset.name, i, first))
        for j, host in enumerate(asset.hosts):
            # Within one criticality the asset touched does not change a route.
            other = next(
                (e for e in index.matching(host) if assets[e[0]].criticality != asset.criticality),
                None,
            )
            if other is not None:
                found.append(_host_clash(assets, (i, j), other))
            index.add(host, (i, j))
    return found


def _name_clash(name: str, i: int, first: int) -> _Clash:
    return _Clash(
        ("assets", i, "name"),
        ("assets", first, "name"),
        lambda where: (
            f"{name!r} is also the name of the asset at {where}: give each asset its own name"
        ),
    )


def _host_clash(assets: Sequence[Asset], entry: Entry, other: Entry) -> _Clash:
    asset, earlier = assets[entry[0]], assets[other[0]]
    host, first = asset.hosts[entry[1]], earlier.hosts[other[1]]
    return _Clash(
        ("assets", entry[0], "hosts", entry[1]),
        ("assets", other[0], "hosts", other[1]),
        lambda where: (
            f"{host!r} (asset {asset.name!r}, {asset.criticality}) names the same "
            f"host as {first!r} (asset {earlier.name!r}, {earlier.criticality}, {where}): an alert "
            "on it would take the most critical; list the host under one asset only"
        ),
    )


def _refusal(located: yamlload.Located, clashes: list[_Clash]) -> ConfigError:
    """Every clash, each at its line and naming the line of the entry it clashes with."""
    said = [str(located.error(c.loc, c.said(f"line {located.line_of(c.first)}"))) for c in clashes]
    error = ConfigError("\n".join(said))
    error.path, error.line = located.path, located.line_of(clashes[0].loc)
    return error


def load_inventory(path: str | Path | None) -> Inventory:
    if path is None:
        return Inventory()
    _within_size(Path(path))
    located = yamlload.load_file(path)
    if not isinstance(located.data, dict):
        raise ConfigError("an inventory is a mapping with an `assets` list", path=str(path))
    try:
        return Inventory.model_validate(located.data, context={"located": located})
    except ValidationError as exc:
        from nis2triage.config import validation_error

        raise validation_error(located, exc, Inventory) from exc


def _within_size(path: Path) -> None:
    """The loader's "split it" cannot be followed here: `assets` names one file."""
    try:
        size = path.stat().st_size if path.is_file() else 0
    except OSError:
        return  # the loader says why it cannot read the file
    if size > yamlload.MAX_BYTES:
        raise ConfigError(
            f"an inventory is at most {yamlload.MAX_BYTES} bytes and `assets` names one file, "
            "so it cannot be split: give hosts that share a range one entry under `networks` "
            "(e.g. 10.20.0.0/16) instead of one each, leave out hosts whose asset no triage "
            "route or report needs (a host listed nowhere has no asset) and drop comments",
            path=str(path),
        )
