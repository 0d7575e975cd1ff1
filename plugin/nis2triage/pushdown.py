"""The detectors' filters asked of the node, so that a source reads only events some detector takes.

Every detector filters its events in the agent (`features.Match`). Without help from
the node, a source reads, decodes and tests every event of its indices, most of which
no detector wants: in `make bench`'s day 36% of the documents (web and configuration
audit, internal flows) were read only to be thrown away.

The query given to the node may keep events the agent then drops, never drop an event
the agent would take: the agent still applies each filter exactly, so the node's part
only has to be a superset. That is why only `all_of` conditions go to the node, and only
on fields that every index of the source maps as `keyword`, `constant_keyword` or
`boolean`, where the node compares values as the agent does:

- a `text` field is analysed: the node would find `Failed` only as `failed`, if at all;
- a field some index does not map (or maps otherwise) cannot be searched there, yet its
  events may hold the value in `_source`, which is what the agent reads;
- a number written into a keyword field keeps the text the shipper wrote (`1e3`), which
  the agent reads as another (`1000.0`): numeric wanted values stay with the agent;
- a field inside a `nested` object is indexed in documents of its own, which a plain
  query does not see;
- a keyword value longer than the field's `ignore_above` is kept in `_source` but not
  indexed: a wanted value longer than the shortest `ignore_above` stays with the agent.

A condition that cannot go to the node is left out of the node's query (which only
widens it); a detector left with no condition needs every event, and then the source
reads everything, as it did before.

Not covered: a runtime field in the mapping that shadows a `_source` field with other
values (the node searches the runtime value and the agent reads the stored one: neither
field_caps nor the field mappings tell such a field apart), and the index setting
`index.mapping.ignore_above` (only the fields' own `ignore_above` is read).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from nis2triage.features import Match

log = logging.getLogger(__name__)

# Field types whose term query compares the value as the agent's filter does.
EXACT_TYPES = frozenset({"keyword", "constant_keyword", "boolean"})
_BOOLEAN_TEXTS = {"True": True, "true": True, "False": False, "false": False}

# What field_caps says of each field: the set of its types across the indices, with
# "unmapped" where some index does not map it.
FieldTypes = Mapping[str, frozenset[str]]
# The shortest `ignore_above` of each keyword field that has one, across the indices.
Limits = Mapping[str, int]


def fields_of(filters: Sequence[Match]) -> list[str]:
    """Every field an `all_of` condition of `filters` names, each once, in order."""
    return list(dict.fromkeys(name for match in filters for name in match.all_of))


def node_query(
    filters: Sequence[Match], types: FieldTypes, limits: Limits | None = None
) -> dict[str, Any] | None:
    """A query that keeps every event one of `filters` takes, or None when it would be all.

    One `should` clause per distinct filter, each the conditions of that filter which the
    node judges as the agent does (see the module's docstring).
    """
    clauses: list[dict[str, Any]] = []
    for match in filters:
        terms = _terms(match, types, limits or {})
        if not terms:
            # This detector needs every event: nothing can be left out for the source.
            return None
        clause = {"bool": {"filter": terms}}
        if clause not in clauses:
            clauses.append(clause)
    if not clauses:
        return None
    if len(clauses) == 1:
        return clauses[0]
    return {"bool": {"should": clauses, "minimum_should_match": 1}}


def _terms(match: Match, types: FieldTypes, limits: Limits) -> list[dict[str, Any]]:
    terms = []
    all_of, _ = match.compiled
    for name, wanted in all_of:
        if _inside_nested(name, types):
            continue
        if name in limits and any(len(text) > limits[name] for text in wanted):
            continue
        values = _node_values(wanted, types.get(name, frozenset()))
        if values is not None:
            terms.append({"terms": {name: values}})
    return terms


def _inside_nested(name: str, types: FieldTypes) -> bool:
    """Whether an object above the field is `nested` in some index: its values are then
    in documents of their own, which a query outside a `nested` query never matches."""
    parts = name.split(".")
    return any("nested" in types.get(".".join(parts[:i]), ()) for i in range(1, len(parts)))


def _node_values(wanted: frozenset[str], types: frozenset[str]) -> list[Any] | None:
    """The values to ask the node for so that it keeps every event the agent would take
    for this condition, or None if the node cannot be trusted with it.

    `wanted` holds the texts the agent compares with `str()` of the event's value.
    """
    if len(types) != 1:
        return None  # unmapped somewhere, or mapped two ways
    (kind,) = types
    if kind not in EXACT_TYPES:
        return None
    if kind == "boolean":
        # The agent sees JSON true as "True" and the string "true" as "true"; the node
        # indexes both as true. A wanted text that is neither is never a boolean.
        if not wanted <= _BOOLEAN_TEXTS.keys():
            return None
        return sorted({_BOOLEAN_TEXTS[text] for text in wanted})
    if any(_is_number(text) for text in wanted):
        return None
    # JSON true in a keyword field is indexed as "true" but read by the agent as "True".
    extra = {text.lower() for text in wanted if text in ("True", "False")}
    return sorted(wanted | extra)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def field_types(es: Elasticsearch, indices: Sequence[str], fields: Sequence[str]) -> FieldTypes:
    """Each field's types across `indices` ("unmapped" where an index lacks it).

    A field the node does not answer for is left out, which keeps it from the query.
    """
    # A name with a wildcard would be expanded by the node into other fields; one with a
    # comma would be split in two, as the client joins the list with commas.
    fields = [f for f in fields if "*" not in f and "," not in f]
    if not fields:
        return {}
    answer = es.field_caps(
        index=",".join(indices),
        fields=list(fields),
        include_unmapped=True,
        ignore_unavailable=True,
        allow_no_indices=True,
    ).body
    types: dict[str, frozenset[str]] = {}
    # The objects above each field come back too: kept, to see whether one is nested.
    for name, by_type in (answer.get("fields") or {}).items():
        kinds = set(by_type)
        if any(k != "unmapped" and not caps.get("searchable") for k, caps in by_type.items()):
            kinds.add("unsearchable")
        types[name] = frozenset(kinds)
    return types


def ignore_above(es: Elasticsearch, indices: Sequence[str], fields: Sequence[str]) -> Limits:
    """The shortest `ignore_above` each field has in any of `indices` (none: no limit)."""
    if not fields:
        return {}
    answer = es.indices.get_field_mapping(
        index=",".join(indices), fields=list(fields), ignore_unavailable=True, allow_no_indices=True
    ).body
    limits: dict[str, int] = {}
    for index in answer.values():
        for name, found in (index.get("mappings") or {}).items():
            for mapping in (found.get("mapping") or {}).values():
                limit = mapping.get("ignore_above")
                if isinstance(limit, int):
                    limits[name] = min(limit, limits.get(name, limit))
    return limits


class Narrowing:
    """The node's share of one source's detector filters, worked out again for each poll
    (an index created since, say by a rollover, may map a field otherwise)."""

    def __init__(self, source: str, filters: Sequence[Match]) -> None:
        self.source = source
        self.filters = list(filters)
        # The last query logged ("refused" while the node will not describe the fields).
        self._said: dict[str, Any] | str | None = "not yet"

    def query(self, es: Elasticsearch, indices: Sequence[str]) -> dict[str, Any] | None:
        """The query to add to this poll's reads, or None to read every event."""
        if not self.filters:
            return None
        fields = fields_of(self.filters)
        try:
            types = field_types(es, indices, fields)
            limits = ignore_above(es, indices, [f for f in fields if f in types])
        except ApiError as exc:
            # Reading everything is always correct, only slower. Said once, not per poll.
            if self._said != "refused":
                self._said = "refused"
                log.warning(
                    "source %s: the node would not describe the indices' fields (%s), so "
                    "every event is read; give the agent's role view_index_metadata on them "
                    "(`nis2triage setup` does)",
                    self.source,
                    exc,
                )
            return None
        query = node_query(self.filters, types, limits)
        self._say(query)
        return query

    def _say(self, query: dict[str, Any] | None) -> None:
        if query == self._said:
            return
        self._said = query
        if query is None:
            log.info(
                "source %s: reads every event (a detector's filter has no condition the "
                "node can judge exactly: only keyword and boolean fields are asked of it)",
                self.source,
            )
        else:
            log.info(
                "source %s: reads only the events its detectors' filters may take: %s",
                self.source,
                describe(query),
            )


def describe(query: dict[str, Any]) -> str:
    """The query in a short form a person reads in a log line."""
    clauses = query["bool"].get("should") or [query]
    return " OR ".join(
        "(" + " AND ".join(_term_text(t) for t in c["bool"]["filter"]) + ")" for c in clauses
    )


def _term_text(term: dict[str, Any]) -> str:
    ((name, values),) = term["terms"].items()
    shown = ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)
    return f"{name} in [{shown}]"
