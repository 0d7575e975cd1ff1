"""`any`, `blacklist` and `whitelist`: rules that judge events one by one.

Exact list values are matched by Elasticsearch (a terms query, so an `ip`
field also takes CIDR ranges such as 10.0.0.0/8); every value is judged again
here, as Elasticsearch returns it: an address as an address (it comes back in
canonical form, `2001:db8::1` for a listed `2001:DB8::1`), a number as a number
(a `double` field's 5 comes back as 5.0), anything else as text. Regular
expressions are matched here alone, against the whole value, because Lucene's
regular-expression dialect is not the one operators test with. They run on RE2 (`linear_regex`):
the values come from the monitored indices, and a backtracking engine would let
one long value stall the agent.

Events of one entity at the same millisecond make one alert: an alert's id is
a hash of rule, entity and time, so two alerts there would be one document anyway.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, replace
from itertools import groupby
from typing import Any

from nis2triage.rules import lucene, search
from nis2triage.rules.alerts import RELATED_FIELDS, Finding, describe_key
from nis2triage.rules.native import AnyRule, BlacklistRule, WhitelistRule
from nis2triage.rules.options import Regex
from nis2triage.rules.search import Hit, Run
from nis2triage.rules.types.tiles import entity

_LISTED = "listed"
ListRule = BlacklistRule | WhitelistRule
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def evaluate_any(run: Run, rule: AnyRule) -> list[Finding]:
    key = rule.query_key
    also = [search.exists(key)] if key else []
    query = search.rule_query(rule, run.start, run.end, *also)
    hits = search.documents(run, rule, query, _fields(key))
    return [
        _finding(group, key, f"{rule.name}: matching event{describe_key(key, who)}")
        for who, group in _by_entity_and_time(hits, key)
    ]


def evaluate_list(run: Run, rule: ListRule) -> list[Finding]:
    field = rule.compare_key
    key = rule.query_key or field
    hits = search.documents(run, rule, _list_query(run, rule), _fields(key, field))
    listed = _Listed.of(rule)
    judged = (j for j in (_judged(rule, listed, h, key) for h in hits) if j is not None)
    return [
        _finding(group, key, _list_message(rule, group[0]))
        for _, group in _by_entity_and_time(judged, key)
    ]


def _list_query(run: Run, rule: ListRule) -> dict[str, Any]:
    field = rule.compare_key
    also = [search.exists(rule.query_key)] if rule.query_key else []
    listed = sorted(rule.exact_values())
    if isinstance(rule, WhitelistRule):
        if rule.ignore_null:
            also.append(search.exists(field))
        # No `must_not` on the listed values: an event whose field holds an allowed value
        # and another one must still be judged, value by value, here.
        return search.rule_query(rule, run.start, run.end, *also)
    # A blacklist event is either listed (Elasticsearch says so) or has a value to test here.
    named = {"terms": {field: listed, "_name": _LISTED}}
    wanted = ([named] if listed else []) + ([search.exists(field)] if rule.patterns() else [])
    also.append({"bool": {"should": wanted, "minimum_should_match": 1}})
    return search.rule_query(rule, run.start, run.end, *also)


@dataclass(frozen=True)
class _Listed:
    """A rule's list, read once per run: exact values, the addresses, networks and numbers
    among them, regexes."""

    values: frozenset[str]
    addresses: frozenset[Address]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    numbers: frozenset[int | float]
    patterns: tuple[Regex, ...]
    # A boolean field comes back as true or false; YAML lists it as 'true' or 'True'.
    truths: frozenset[bool] = frozenset()

    @classmethod
    def of(cls, rule: ListRule) -> _Listed:
        values = rule.exact_values()
        addresses, networks, numbers = set(), [], set()
        for item in values:
            if (address := _address(item)) is not None:
                addresses.add(address)
            # An ip field's terms query also takes CIDR ranges (10.0.0.0/8), so the list may too.
            elif "/" in item:
                with contextlib.suppress(ValueError):
                    networks.append(ipaddress.ip_network(item, strict=False))
            if (number := _number(item)) is not None:
                numbers.add(number)
        truths = frozenset(v.lower() == "true" for v in values if v.lower() in ("true", "false"))
        return cls(
            values,
            frozenset(addresses),
            tuple(networks),
            frozenset(numbers),
            rule.patterns(),
            truths,
        )

    def holds(self, value: Any) -> bool:
        """The value is listed, in a listed network, or fits a regex."""
        if isinstance(value, bool):
            return value in self.truths
        # A number field's value is compared as a number: "5" listed holds 5.0 (a double).
        if isinstance(value, int | float) and value in self.numbers:
            return True
        text = str(value)
        if text in self.values or any(p.fullmatch(text) for p in self.patterns):
            return True
        address = _address(text) if self.addresses or self.networks else None
        if address is None:
            return False
        return address in self.addresses or any(address in net for net in self.networks)


def _address(text: str) -> Address | None:
    """An address as Elasticsearch's ip fields return it: an IPv4-mapped IPv6 address
    (::ffff:10.0.0.1) comes back as the IPv4 address it maps."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address


def _number(text: str) -> int | float | None:
    """A listed value as a number, exactly for integers (a long beyond 2**53 stays exact)."""
    if "_" in text:  # Python reads 1_000 as a number; Elasticsearch does not
        return None
    for parse in (int, float):
        with contextlib.suppress(ValueError):
            number: int | float = parse(text)
            return number if number == number else None  # NaN equals nothing
    return None


def _judged(rule: ListRule, listed: _Listed, hit: Hit, key: str) -> Hit | None:
    """The hit if it offends, with the offending values first: the alert names them, and
    so does the entity when the compared field is also the query_key."""
    values = hit.fields.get(rule.compare_key, [])
    if isinstance(rule, BlacklistRule):
        offending = [v for v in values if listed.holds(v)]
        if not offending and _LISTED not in hit.matched:
            return None
    else:
        offending = [v for v in values if not listed.holds(v)]
        if values and not offending:
            return None
    if not offending:
        return hit
    # A field with several values: the alert (and the entity, when the field is the
    # query_key) names the one that offends, not the first.
    rest = [v for v in values if v not in offending]
    return replace(hit, fields={**hit.fields, rule.compare_key: [*offending, *rest]})


def _list_message(rule: ListRule, hit: Hit) -> str:
    field = rule.compare_key
    value = hit.first(field)
    if isinstance(rule, BlacklistRule):
        return f"{rule.name}: {field}={value} is on the blacklist"
    if value is None:
        return f"{rule.name}: event without {field}, so not on the whitelist"
    return f"{rule.name}: {field}={value} is not on the whitelist"


def _fields(*names: str | None) -> list[str]:
    return sorted({*RELATED_FIELDS, *(n for n in names if n)})


def _by_entity_and_time(hits: Iterable[Hit], key: str | None) -> list[tuple[str, list[Hit]]]:
    ordered = sorted(hits, key=lambda h: (entity(h.first(key) if key else None), h.at))
    grouped = groupby(ordered, key=lambda h: (entity(h.first(key) if key else None), h.at))
    return [(who, list(group)) for (who, _), group in grouped]


def _finding(group: list[Hit], key: str | None, message: str) -> Finding:
    first = group[0]
    value = first.first(key) if key else None
    conditions = [lucene.term(key, value)] if key and value is not None else []
    return Finding(
        entity="(missing)" if key and value is None else entity(value),
        at=first.at,
        start=first.at,
        end=search.from_millis(search.millis(first.at) + 1),
        score=float(len(group)),
        threshold=1.0,
        message=message,
        entity_field=key,
        conditions=(*conditions, _id_condition(group)),
        hits=tuple(group),
    )


def _id_condition(group: list[Hit]) -> str:
    return f"_id:({' OR '.join(lucene.quote(h.id) for h in group)})"
