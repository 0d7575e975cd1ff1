"""Saying, once, a field a native rule names that no index it searches maps.

A rule keyed on `user.nme`, or filtered on `event.outcom:failure`, asks the node about
a field no event has: a term query or an aggregation on an unmapped field is not an
error, so the rule counts nothing and never fires (or, a flatline rule, always fires),
and nothing said why. The detectors' filters and features are checked the same way by
the source (`pushdown`); Sigma rules are not, since a rule set for Windows logs over a
cluster holding only Linux ones would be said rule by rule, every start.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from nis2triage.pushdown import describe_fields, mapped, parents
from nis2triage.rules.native import NativeRule
from nis2triage.source import index_names

log = logging.getLogger(__name__)

# How long a rule whose indices held no event waits before its fields are asked about
# again: three requests a cycle for each rule over an index still empty would add up.
RECHECK_S = 600.0
# Unmapped fields of one rule said a line each; the rest in one line, the first of them named.
MAX_SAID = 5
MAX_LISTED = 20

# The rule options that name one field each (`fields` names several).
_KEYS = ("timestamp_field", "query_key", "compare_key", "cardinality_field", "metric_agg_key")
# Query DSL clauses whose body is keyed by the field they test.
_LEAVES = frozenset(
    ("term", "terms", "match", "match_phrase", "match_phrase_prefix", "match_bool_prefix",
     "prefix", "wildcard", "regexp", "fuzzy", "range")
)  # fmt: skip
# Keys of a leaf's body that are options, not fields.
_OPTIONS = frozenset(("boost", "_name", "case_insensitive"))
# Quoted phrases, /regular expressions/ after a colon and ranges, whose text is no field:
# a range's bounds may hold unescaped colons (`[2024-01-01T00:00:00 TO *]`).
_QUOTED = re.compile(
    r'"(?:\\.|[^"\\])*"|(?<=:)\s*/(?:\\.|[^/\\])*/|(?<!\\)[\[{](?:\\.|[^\]}\\])*[\]}]'
)
# `field:` at the start of a term: after the start, a space, a bracket or an operator; a
# `-` only as one (`-process.name:x`), not inside a term (`web-01`): each start inside a
# long run of `a-a-a..` read to its end, 19 s for 40 kB.
_LUCENE_FIELD = re.compile(
    r"(?:^|(?<=[\s(+!&|])|(?<=-)(?<![\w@.\\-]-))((?:\\.|[\w@])(?:\\.|[\w@.-])*)\s*:"
)
_EXISTS = re.compile(r"_exists_\s*:\s*((?:\\.|[\w@.-])+)")


def named_fields(rule: NativeRule) -> list[tuple[str, str]]:
    """(where the rule names it, field) for every field the rule's options and filters name."""
    named = [(key, getattr(rule, key)) for key in _KEYS if getattr(rule, key, None)]
    named += [("fields", name) for name in getattr(rule, "fields", ())]
    for option in ("filter", "match_bucket_filter"):
        given = getattr(rule, option, None)
        if given is not None:
            named += [(option, name) for name in filter_fields(given)]
    return list(dict.fromkeys(named))


def filter_fields(given: str | dict[str, Any]) -> list[str]:
    """The field names a Lucene query string or a query DSL clause tests, each once; names
    with a wildcard and metadata fields (`_id`, `_index`) are left out."""
    found = _lucene_fields(given) if isinstance(given, str) else _dsl_fields(given)
    return [n for n in dict.fromkeys(found) if not n.startswith("_") and not set(n) & set("*?")]


def _lucene_fields(text: str) -> Iterator[str]:
    bare = _QUOTED.sub('""', text)
    for match in _LUCENE_FIELD.finditer(bare):
        yield _unescaped(match.group(1))
    for match in _EXISTS.finditer(bare):
        yield _unescaped(match.group(1))


def _unescaped(name: str) -> str:
    return re.sub(r"\\(.)", r"\1", name)


def _dsl_fields(query: Any) -> Iterator[str]:
    if isinstance(query, list):
        for item in query:
            yield from _dsl_fields(item)
        return
    if not isinstance(query, dict):
        return
    for kind, body in query.items():
        if kind in _LEAVES and isinstance(body, dict):
            yield from (str(k) for k in body if k not in _OPTIONS)
        elif kind == "exists" and isinstance(body, dict):
            yield str(body.get("field", ""))
        elif kind == "query_string" and isinstance(body, dict):
            yield from _lucene_fields(str(body.get("query", "")))
        else:
            yield from _dsl_fields(body)


class FieldCheck:
    """Checks each rule once per run of the agent, when its indices first hold events."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.checked: set[str] = set()
        self.clock = clock
        # Rule name -> when to look again, for rules whose indices held no event yet.
        self.retry_at: dict[str, float] = {}

    def check(self, es: Elasticsearch, rules: Sequence[NativeRule]) -> None:
        """Warn for each field of a not yet checked rule that no index of its `index` maps.
        A rule whose indices hold no event yet is checked again next time: an empty
        index maps nothing until its first event (dynamic mapping)."""
        for rule in rules:
            if rule.name in self.checked or self.clock() < self.retry_at.get(rule.name, 0.0):
                continue
            try:
                done = self._check_one(es, rule)
            except ApiError as exc:
                # The check only helps: a node that will not describe the fields (a role
                # without view_index_metadata) must not stop the rule. One that cannot yet
                # (503: no active shard, before the cluster recovered; 429) is asked again.
                log.debug("rule %s: its fields were not checked: %s", rule.name, exc)
                done = exc.meta.status != 429 and exc.meta.status < 500
            if done:
                self.checked.add(rule.name)
            else:
                self.retry_at[rule.name] = self.clock() + RECHECK_S

    @staticmethod
    def _check_one(es: Elasticsearch, rule: NativeRule) -> bool:
        # The node would read `*` in a name as a pattern and a comma as two names.
        named = [(w, n) for w, n in named_fields(rule) if not set(n) & set("*,")]
        indices = index_names([rule.index])
        names = [name for _, name in named]
        fields = describe_fields(es, indices, [*names, *parents(names)])
        missing = [(w, n) for w, n in named if not mapped(n, fields)]
        if not missing:
            return True

        held = es.count(index=",".join(indices), ignore_unavailable=True, allow_no_indices=True)
        if not held.body.get("count"):
            return False

        shown = ", ".join(fields.indices[:5]) + (", ..." if len(fields.indices) > 5 else "")
        for where, name in missing[:MAX_SAID]:
            log.warning(
                "rule %s: its %s names %s, which no index of %s maps (%s): unless the events "
                "hold it unindexed (a mapping with dynamic: false), no event has it and the "
                "rule's conditions on it never hold. Check the name against the events' "
                "fields (Discover, or GET <index>/_mapping)",
                rule.name,
                where,
                name,
                rule.index,
                shown or "no index",
            )
        _say_the_rest(rule, [name for _, name in missing[MAX_SAID:]])
        return True


def _say_the_rest(rule: NativeRule, names: list[str]) -> None:
    """The unmapped fields past the first `MAX_SAID`, in one line: a generated rule
    naming thousands wrote as many warnings."""
    if not names:
        return
    listed = ", ".join(names[:MAX_LISTED]) + (", ..." if len(names) > MAX_LISTED else "")
    log.warning(
        "rule %s: %d more fields it names are mapped by no index of %s, as above: %s",
        rule.name,
        len(names),
        rule.index,
        listed,
    )
