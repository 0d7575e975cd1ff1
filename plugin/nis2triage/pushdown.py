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
- a runtime field (`runtime:` or `dynamic: runtime` in a mapping) is computed by the
  node, not read from `_source`, and may differ from it;
- under an object with `dynamic: false`, a field mapped after events that held it were
  indexed is not searchable in them: such fields stay with the agent (`unsafe_fields`);
- a field inside a `nested` object is indexed in documents of its own, which a plain
  query does not see;
- a number written into a keyword field keeps the text the shipper wrote (`1e3`), which
  the agent reads as another (`1000.0`): numeric wanted values stay with the agent, and
  so do wanted texts the agent may produce from a list element (`None`, `['x']`);
- a value past the field's `ignore_above`, or one `ignore_malformed` set aside, is kept
  in `_source` but not indexed: each condition also takes the events whose `_ignored`
  metadata names its field, whatever set the limit (the field, the index, logsdb).

A condition that cannot go to the node is left out of the node's query (which only
widens it); a detector left with no condition needs every event, and then the source
reads everything, as it did before. The query also holds only for the indices the node
described: any other index the point in time reads (an alias moved in between) is read
whole.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from nis2triage.features import Match

log = logging.getLogger(__name__)

# Field types whose term query compares the value as the agent's filter does.
EXACT_TYPES = frozenset({"keyword", "constant_keyword", "boolean"})
_BOOLEAN_TEXTS = {"True": True, "true": True, "False": False, "false": False}
# Wanted values per condition asked of the node: far below the node's own limit on terms
# (`index.max_terms_count`, 65,536 by default), which would refuse every search.
MAX_VALUES = 1000


@dataclass(frozen=True)
class Fields:
    """What the node says of the filters' fields across a source's indices."""

    # Each field's types (field_caps), "unmapped" where some index lacks it; the objects
    # above the fields are in it too.
    types: Mapping[str, frozenset[str]]
    # The fields some index defines as runtime fields (`runtime:`, `dynamic: runtime`), or
    # maps under an object that does not map new fields (`dynamic: false`): see `unsafe_fields`.
    runtime: frozenset[str]
    # The concrete indices described.
    indices: tuple[str, ...]


def fields_of(filters: Mapping[str, Match]) -> list[str]:
    """Every field an `all_of` condition of `filters` names, each once, in order."""
    return list(dict.fromkeys(name for match in filters.values() for name in match.all_of))


@dataclass(frozen=True)
class Plan:
    """The node's query (None: every event), and which detectors need every event."""

    query: dict[str, Any] | None
    unfiltered: tuple[str, ...] = ()


def plan(filters: Mapping[str, Match], fields: Fields) -> Plan:
    """A query that keeps every event one of `filters` (by detector) takes.

    One `should` clause per distinct filter, each the conditions of that filter which the
    node judges as the agent does (see the module's docstring).
    """
    # Keyed by their conditions' text: thousands of detectors are deduplicated in linear
    # time, where comparing each clause with every other took 42 s for 8,000.
    found: dict[frozenset[str], list[dict[str, Any]]] = {}
    unfiltered = []
    for name, match in filters.items():
        conditions = _conditions(match, fields)
        if not conditions:
            unfiltered.append(name)
        else:
            found.setdefault(frozenset(map(_key, conditions)), conditions)
    if unfiltered or not found:
        return Plan(None, tuple(unfiltered))
    clauses = [{"bool": {"filter": found[k]}} for k in _widest(found)]
    query = clauses[0] if len(clauses) == 1 else {"bool": {"should": clauses}}
    return Plan(_only_on(query, fields.indices))


def _key(condition: dict[str, Any]) -> str:
    return json.dumps(condition, sort_keys=True)


# Conditions per clause up to which `_widest` looks for a narrower clause inside it.
_WIDEST_UP_TO = 10


def _widest(found: Mapping[frozenset[str], Any]) -> list[frozenset[str]]:
    """The clauses no other clause already covers: one whose conditions include all of
    another's takes nothing that other does not (`a AND b` inside `a`). Each clause's
    subsets are looked up, not every other clause compared; a clause of more conditions
    than `_WIDEST_UP_TO` is kept as it is (a redundant clause costs the node, not events)."""
    return [
        one
        for one in found
        if len(one) > _WIDEST_UP_TO
        or not any(
            frozenset(part) in found
            for size in range(1, len(one))
            for part in itertools.combinations(one, size)
        )
    ]


def _only_on(query: dict[str, Any], indices: Sequence[str]) -> dict[str, Any]:
    """`query` on the described indices, every event of any other."""
    listed = {"terms": {"_index": list(indices)}}
    return {
        "bool": {
            "should": [
                {"bool": {"filter": [listed, query]}},
                {"bool": {"must_not": [listed]}},
            ]
        }
    }


def _conditions(match: Match, fields: Fields) -> list[dict[str, Any]]:
    conditions = []
    all_of, _ = match.compiled
    for name, wanted in all_of:
        values = _node_values(name, wanted, fields)
        if values is not None:
            # An event whose value the node set aside (ignore_above, ignore_malformed) is
            # still read: the agent may take it from `_source`.
            either = [{"terms": {name: values}}, {"term": {"_ignored": name}}]
            conditions.append({"bool": {"should": either}})
    return conditions


def _node_values(name: str, wanted: frozenset[str], fields: Fields) -> list[Any] | None:
    """The values to ask the node for so that it keeps every event the agent would take
    for this condition, or None if the node cannot be trusted with it.

    `wanted` holds the texts the agent compares with `str()` of the event's value.
    """
    types = fields.types.get(name, frozenset())
    if len(types) != 1 or name in fields.runtime or _inside_nested(name, fields):
        return None
    (kind,) = types
    if kind not in EXACT_TYPES or len(wanted) > MAX_VALUES:
        return None
    if kind == "boolean":
        # The agent sees JSON true as "True" and the string "true" as "true"; the node
        # indexes both as true. A wanted text that is neither is never a boolean.
        if not wanted <= _BOOLEAN_TEXTS.keys():
            return None
        return sorted({_BOOLEAN_TEXTS[text] for text in wanted})
    if any(_not_a_keyword(text) for text in wanted):
        return None
    # JSON true in a keyword field is indexed as "true" but read by the agent as "True".
    extra = {text.lower() for text in wanted if text in ("True", "False")}
    return sorted(wanted | extra)


def _not_a_keyword(text: str) -> bool:
    """Whether the agent could produce `text` from a value the node indexes otherwise: a
    number (1e3 read as 1000.0), or None or a list from a list's element."""
    if text == "None" or text[:1] in ("[", "{"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _inside_nested(name: str, fields: Fields) -> bool:
    """Whether an object above the field is `nested` in some index: its values are then
    in documents of their own, which a query outside a `nested` query never matches."""
    parts = name.split(".")
    return any("nested" in fields.types.get(".".join(parts[:i]), ()) for i in range(1, len(parts)))


def describe_fields(es: Elasticsearch, indices: Sequence[str], names: Sequence[str]) -> Fields:
    """What the node says of `names` across `indices`: types, runtime fields, indices."""
    # A name with a wildcard would be expanded by the node into other fields; one with a
    # comma would be split in two, as the client joins the list with commas.
    names = [f for f in names if "*" not in f and "," not in f]
    if not names:
        return Fields({}, frozenset(), ())
    index = ",".join(indices)
    caps = es.field_caps(
        index=index, fields=names, include_unmapped=True, ignore_unavailable=True,
        allow_no_indices=True,
    ).body  # fmt: skip
    # Only the runtime sections and the `dynamic` settings: a whole ECS mapping per index
    # and poll would be heavy.
    mappings = es.indices.get_mapping(
        index=index,
        ignore_unavailable=True,
        allow_no_indices=True,
        filter_path="*.mappings.runtime,*.mappings.dynamic,*.mappings.**.dynamic",
    ).body
    unsafe = _runtime(mappings) | unsafe_fields(mappings, names)
    return Fields(_types(caps), unsafe, tuple(caps.get("indices") or ()))


def parents(names: Sequence[str]) -> list[str]:
    """The objects above each of `names` (`a`, `a.b` for `a.b.c`), each once."""
    return list(
        dict.fromkeys(
            ".".join(parts[:i])
            for parts in (n.split(".") for n in names)
            for i in range(1, len(parts))
        )
    )


def mapped(name: str, fields: Fields) -> bool:
    """Whether some index maps `name`, or a flattened field above it: the node lists no
    field for a key under a flattened one (`labels.env` of `labels`), yet queries and
    aggregations reach it."""
    if name in fields.types or name in fields.runtime:
        return True
    parts = name.split(".")
    above = (".".join(parts[:i]) for i in range(1, len(parts)))
    return any("flattened" in fields.types.get(parent, ()) for parent in above)


def _types(caps: dict[str, Any]) -> dict[str, frozenset[str]]:
    types: dict[str, frozenset[str]] = {}
    for name, by_type in (caps.get("fields") or {}).items():
        kinds = set(by_type)
        if any(k != "unmapped" and not c.get("searchable") for k, c in by_type.items()):
            kinds.add("unsearchable")
        types[name] = frozenset(kinds)
    return types


def unsafe_fields(mappings: dict[str, Any], names: Sequence[str]) -> frozenset[str]:
    """The fields that some index maps under an object with `dynamic: false` (or runtime).

    Such an object keeps a field it does not map in `_source` alone. Map the field later
    (a template fixed, a package upgraded) and the events indexed before stay unsearchable
    by it, with no trace in `_ignored`; only the agent, reading `_source`, finds them.
    Under `dynamic: true` a field is mapped by the first event that holds it, and under
    `strict` an event with a field not mapped is refused, so neither can happen.
    """
    return frozenset(
        name
        for index in (mappings or {}).values()
        for name in names
        if _dynamic_of(name, (index or {}).get("mappings") or {}) in ("false", "runtime")
    )


def _dynamic_of(name: str, mapping: dict[str, Any]) -> str:
    """The `dynamic` setting that holds for field `name`: its nearest enclosing object's."""
    setting = mapping.get("dynamic", True)
    node = mapping
    for part in name.split(".")[:-1]:
        node = (node.get("properties") or {}).get(part) or {}
        if isinstance(node.get("dynamic"), bool | str):
            setting = node["dynamic"]
    return str(setting).lower()


def _runtime(mappings: dict[str, Any]) -> frozenset[str]:
    """Every field some index defines as a runtime field. The node searches a runtime
    field's computed value, even where it shadows a mapped field of the same name (whose
    type field_caps then no longer shows), while the agent reads `_source`."""
    return frozenset(
        name
        for index in (mappings or {}).values()
        for name in ((index.get("mappings") or {}).get("runtime") or {})
    )


class Narrowing:
    """The node's share of one source's detector filters, worked out again for each poll
    (an index created since, say by a rollover, may map a field otherwise)."""

    def __init__(
        self,
        source: str,
        filters: Mapping[str, Match],
        own_query: str | None = None,
        features: Mapping[str, Sequence[tuple[str, str]]] | None = None,
        push: bool = True,
    ) -> None:
        self.source = source
        self.filters = dict(filters)
        # False (the source's `push_filters: false`): no query for the node, yet the fields
        # are still checked as mapped, once the indices hold events.
        self.push = push
        self._checked = False
        # (feature, field) by detector: checked as mapped as the filters' fields are.
        self.features = dict(features or {})
        # The source's own query, named in the log line beside the detectors' part.
        self.own_query = own_query
        # Set when the node refused a narrowed search: every event is read from then on.
        self.refused: str | None = None
        # The last plan logged, or "refused" while the node will not describe the fields.
        self._said: Plan | str | None = None
        # The filter fields already said to be mapped by no index, each said once.
        self._said_unmapped: set[str] = set()

    def query(self, es: Elasticsearch, indices: Sequence[str]) -> dict[str, Any] | None:
        """The query to add to this poll's reads, or None to read every event."""
        if not self.filters or self.refused or self._checked:
            return None
        try:
            read = [name for pairs in self.features.values() for _, name in pairs]
            named = [*fields_of(self.filters), *read]
            fields = describe_fields(es, indices, [*named, *parents(named)])
        except ApiError as exc:
            # Reading everything is always correct, only slower. Said once, not per poll.
            if not self.push:
                log.debug("source %s: its fields were not checked: %s", self.source, exc)
                self._checked = True
            elif self._said != "refused":
                self._said = "refused"
                log.warning(
                    "source %s: the node would not describe the indices' fields (%s), so "
                    "every event is read; give the agent's role view_index_metadata on them "
                    "(`nis2triage setup` does)",
                    self.source,
                    exc,
                )
            return None
        judged = self._say_unmapped(es, indices, fields)
        if not self.push:
            self._checked = judged
            return None
        found = plan(self.filters, fields)
        self._say(found)
        return found.query

    def _say_unmapped(self, es: Elasticsearch, indices: Sequence[str], fields: Fields) -> bool:
        """Warn once per field when a detector's `all_of`, or one of its features, names a
        field no index of the source maps while they hold events: a misspelt name
        (`system.auth.ssh.evnt`) makes the detector take no event at all, or the feature
        measure nothing (`user.nme`), and nothing else would say so. False while the
        indices hold no event, which map no field yet."""
        named = [
            (detector, "filter (all_of)", "the detector takes none", name)
            for detector, match in self.filters.items()
            for name in match.all_of
        ]
        named += [
            (detector, f"feature {feature}", "that feature measures nothing", name)
            for detector, pairs in self.features.items()
            for feature, name in pairs
        ]
        unmapped = [
            (detector, what, then, name)
            for detector, what, then, name in named
            if not mapped(name, fields)
            and name not in self._said_unmapped
            and "*" not in name
            and "," not in name
        ]
        if not unmapped:
            return True
        if not fields.indices:
            return False

        # Indices without an event map nothing yet (dynamic mapping): no typo to see there.
        try:
            held = es.count(index=",".join(indices), ignore_unavailable=True, allow_no_indices=True)
        except ApiError:
            return True
        if not held.body.get("count"):
            return False

        for detector, what, then, name in unmapped:
            self._said_unmapped.add(name)
            log.warning(
                "source %s: detector %s's %s names %s, which no index of the source maps "
                "(%s): unless the events hold it unindexed (a mapping with dynamic: false), "
                "%s. Check the name against the events' fields (Discover, or GET "
                "<index>/_mapping)",
                self.source,
                detector,
                what,
                name,
                ", ".join(fields.indices[:5]) + (", ..." if len(fields.indices) > 5 else ""),
                then,
            )
        return True

    def refuse(self, reason: str) -> None:
        """The node refused a search with this plan's query: read every event from now on."""
        self.refused = reason
        log.warning(
            "source %s: the node refused the search narrowed to the detectors' filters (%s); "
            "every event is read from now on. Restart the agent once the cause is fixed",
            self.source,
            reason,
        )

    def _say(self, found: Plan) -> None:
        if found == self._said:
            return
        self._said = found
        if found.query is None:
            log.info(
                "source %s: reads every event: detector(s) %s have no condition the node "
                "judges exactly (only all_of on fields every index maps as keyword or "
                "boolean is asked of it; see docs/detectors.md)",
                self.source,
                ", ".join(found.unfiltered),
            )
        else:
            log.info(
                "source %s: reads only the events its detectors' filters may take: %s%s",
                self.source,
                describe(found.query),
                f", within its own query {self.own_query}" if self.own_query else "",
            )


# The longest description a log line gets; the clauses past it are counted.
MAX_DESCRIBED = 500


def describe(query: dict[str, Any]) -> str:
    """The narrowed part of a query (`plan`'s) in a short form a person reads in a log line."""
    narrowed = query["bool"]["should"][0]["bool"]["filter"][1]
    clauses = narrowed["bool"].get("should") or [narrowed]
    said: list[str] = []
    for clause in clauses:
        text = "(" + " AND ".join(_condition_text(c) for c in clause["bool"]["filter"]) + ")"
        if said and sum(map(len, said)) + len(text) > MAX_DESCRIBED:
            return " OR ".join(said) + f" OR ... ({len(clauses) - len(said):,} more clauses)"
        said.append(text)
    return " OR ".join(said)


def _condition_text(condition: dict[str, Any]) -> str:
    ((name, values),) = condition["bool"]["should"][0]["terms"].items()
    if len(values) > 5:
        return f"{name} in [{len(values):,} values]"
    return f"{name} in [{', '.join(map(_value_text, values))}]"


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    if len(text) > 40:
        return f"{json.dumps(text[:40])}... ({len(text):,} characters)"
    # An empty value is shown so that it reads as one.
    return text or '""'
