"""Which inventory assets no recent event names, said once at start.

An asset whose host names or addresses are misspelt in the inventory is never
touched by an alert: its alerts then take no asset's criticality, and the triage
route that would have started the NIS2 clock for a critical system does not hold.
Nothing else would show the typo, so at start the agent asks each source whether
any event of the last days names each asset, the way `assets.Inventory.for_alert`
matches them (host names without case, a short name against the full names it
starts, addresses and ranges), and says which assets none does.

A warning, not a refusal: an asset may be quiet for days (a standby system), and an
index may map these fields otherwise than ECS does (a `text` host name), which the
check cannot tell from a typo.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from nis2triage.assets import CRITICALITY_RANK, Asset, Inventory, address_of, host_key
from nis2triage.logs import some

log = logging.getLogger(__name__)

# Where events name a host, and where they carry an address the agent can match.
NAME_FIELDS = ("host.name", "host.hostname")
ADDRESS_FIELDS = (
    "host.ip",
    "source.ip",
    "destination.ip",
    "related.ip",
    "client.ip",
    "server.ip",
)
# The types under which the fields compare as the check asks (exact values, address ranges).
NAME_TYPES = frozenset({"keyword", "constant_keyword", "wildcard"})
ADDRESS_TYPES = frozenset({"ip"})
LOOKBACK = "now-7d"
# Assets named in the warning; the rest are counted.
NAMED_AT_MOST = 10


@dataclass(frozen=True)
class Reader:
    """What one source reads: its indices, time field and own query filters."""

    name: str
    indices: Sequence[str]
    time_field: str
    filters: Sequence[dict[str, Any]] = ()


def asset_query(asset: Asset) -> list[dict[str, Any]]:
    """The clauses of which any one names `asset` in an event."""
    clauses: list[dict[str, Any]] = []
    for host in asset.hosts:
        clauses += _host_clauses(host)
    for network in asset.networks:
        clauses += [{"term": {field: network}} for field in ADDRESS_FIELDS]
    return clauses


def _host_clauses(host: str) -> list[dict[str, Any]]:
    address = address_of(host)
    if address is not None:
        # The agent also matches an address an event gives as its host name (syslog
        # senders without a name are written so).
        named = [_name_term(field, str(address)) for field in NAME_FIELDS]
        return [*named, *({"term": {field: str(address)}} for field in ADDRESS_FIELDS)]
    clauses = []
    for key in _spellings(host_key(host)):
        clauses += _name_clauses(key)
    return clauses


def _spellings(key: str) -> list[str]:
    """An internationalised name in both the forms events write it: DNS's ASCII form
    (xn--), which the agent matches by, and the Unicode one people and most logs use."""
    if "xn--" not in key:
        return [key]
    try:
        return [key, key.encode("ascii").decode("idna")]
    except UnicodeError:
        return [key]  # an xn-- label that is no valid encoding: only itself matches


def _name_clauses(key: str) -> list[dict[str, Any]]:
    """The clauses of which any one names the host whose compared name is `key`."""
    short, dot, _ = key.partition(".")
    clauses = []
    for field in NAME_FIELDS:
        # An event's name may end with the dot of a fully qualified name, which the
        # agent's matching drops: `dc01.corp.example.` is `dc01.corp.example`.
        clauses += [_name_term(field, key), _name_term(field, f"{key}.")]
        if dot:
            # An event's short name touches the entry of its full name.
            clauses += [_name_term(field, short), _name_term(field, f"{short}.")]
        else:
            # An entry's short name touches the full names that start with it.
            clauses.append({"prefix": {field: {"value": f"{key}.", "case_insensitive": True}}})
    return clauses


def _name_term(field: str, value: str) -> dict[str, Any]:
    return {"term": {field: {"value": value, "case_insensitive": True}}}


def unseen(es: Elasticsearch, readers: Sequence[Reader], inventory: Inventory) -> list[Asset]:
    """The assets no event of the last days names in any source that read anything then;
    none when no source did (a new installation, or one whose sources are quiet)."""
    assets = [a for a in inventory.assets if a.hosts or a.networks]
    if not assets:
        return []
    seen: set[int] = set()
    active = False
    for reader in readers:
        if not _any_event(es, reader):
            continue
        mapped_otherwise = _mapped_otherwise(es, reader)
        if mapped_otherwise:
            # A host name split into words, or an address kept as text, matches no term
            # asked here: every asset would be said unseen.
            log.info(
                "source %s: the inventory check is skipped, since %s: it looks for exact "
                "host names and address ranges",
                reader.name,
                "; ".join(mapped_otherwise),
            )
            continue
        active = True
        seen |= _named(es, reader, assets)
    return [a for i, a in enumerate(assets) if i not in seen] if active else []


def _mapped_otherwise(es: Elasticsearch, reader: Reader) -> list[str]:
    """The fields the check reads that some index of `reader` maps under another type than
    the check needs, each with its types (empty when the node would not say)."""
    try:
        caps = es.field_caps(
            index=",".join(reader.indices),
            fields=[*NAME_FIELDS, *ADDRESS_FIELDS],
            ignore_unavailable=True,
            allow_no_indices=True,
        ).body
    except ApiError:
        return []
    wanted = {
        **dict.fromkeys(NAME_FIELDS, NAME_TYPES),
        **dict.fromkeys(ADDRESS_FIELDS, ADDRESS_TYPES),
    }
    found = caps.get("fields") or {}
    return [
        f"{name} is mapped as {', '.join(sorted(found[name]))}"
        for name, types in wanted.items()
        if name in found and not set(found[name]) <= types
    ]


def _window(reader: Reader) -> list[dict[str, Any]]:
    return [{"range": {reader.time_field: {"gte": LOOKBACK}}}, *reader.filters]


def _any_event(es: Elasticsearch, reader: Reader) -> bool:
    resp = es.search(
        index=",".join(reader.indices),
        query={"bool": {"filter": _window(reader)}},
        size=0,
        terminate_after=1,
        track_total_hits=True,
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    return int(resp["hits"]["total"]["value"]) > 0


def _named(es: Elasticsearch, reader: Reader, assets: Sequence[Asset]) -> set[int]:
    """The positions of the assets some event of `reader` names, in one request."""
    header = {"index": ",".join(reader.indices), "ignore_unavailable": True}
    searches: list[dict[str, Any]] = []
    for asset in assets:
        should = asset_query(asset)
        query = {"bool": {"filter": _window(reader), "should": should, "minimum_should_match": 1}}
        searches += [header, {"query": query, "size": 0, "terminate_after": 1}]
    # Not retried: a request that ran out of time would run as long again, each time.
    answers = es.options(max_retries=0).msearch(searches=searches)["responses"]
    # An answer that is an error (a field mapped otherwise in some index, say) counts as
    # seen: the check must not warn about what it could not look at.
    return {
        i
        for i, answer in enumerate(answers)
        if "error" in answer or int(answer["hits"]["total"]["value"]) > 0
    }


def say_unseen(assets: Sequence[Asset], readers: Sequence[Reader]) -> None:
    """One warning naming the assets (the most critical first) no recent event named."""
    if not assets:
        return
    ranked = sorted(assets, key=lambda a: -CRITICALITY_RANK[a.criticality])
    named = some([f"{a.name} ({a.criticality})" for a in ranked], NAMED_AT_MOST)
    log.warning(
        "%d assets of the inventory are named by no event of the last 7 days in sources %s: "
        "%s. Their alerts would take no asset's criticality: check their hosts and "
        "networks in the inventory against the events' %s and %s",
        len(ranked),
        ", ".join(r.name for r in readers),
        named,
        ", ".join(NAME_FIELDS),
        ", ".join(ADDRESS_FIELDS),
    )
