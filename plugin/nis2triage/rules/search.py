"""Asking Elasticsearch for a rule: its query over a time range, aggregation pages, documents.

Counting is left to Elasticsearch aggregations; documents are pulled only by
the types that judge them one by one, through a point in time and
search_after, so that paging neither skips nor repeats a document.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from nis2triage.errors import PartialResultsError
from nis2triage.logs import some
from nis2triage.rules.native import RuleBase

log = logging.getLogger(__name__)

PAGE = 1000
# A run pulls at most this many documents; a window holding more is cut, with a warning,
# because one alert per document beyond it would bury the analyst anyway.
MAX_DOCUMENTS = 100_000


@dataclass(frozen=True)
class Run:
    """One evaluation of a rule over [start, end), as `run_rule` was asked for it."""

    es: Elasticsearch
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Hit:
    """A pulled document: where it is, its time and the requested fields (as lists)."""

    index: str
    id: str
    at: datetime
    fields: dict[str, list[Any]]
    matched: tuple[str, ...] = ()

    def first(self, field: str) -> Any:
        values = self.fields.get(field) or [None]
        return values[0]


def refused(exc: ApiError) -> bool:
    """Whether the node refused the rule's own request (its query, its fields): asking
    again will not change that, so the rule is paused. An overload (429), a node or shard
    failing (5xx) or the agent's credentials (401, 403) are the agent's to wait out, for
    every rule at once, like a lost connection."""
    status = exc.meta.status
    return 400 <= status < 500 and status not in (401, 403, 408, 429)


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def length_millis(length: timedelta) -> int:
    return round(length.total_seconds() * 1000)


def from_millis(value: int | float) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def clamped(value: int | float, start: datetime, end: datetime) -> datetime:
    """The time the node gave for a document that [start, end) matched, kept inside it.

    A time field may hold several times: the node sorts and aggregates by one of them,
    which may lie anywhere (year -1199, or past 9999, where a datetime cannot go) while
    another put the document in the range. One such event must not stop the rule, or the
    agent: its time inside the range is unknown, so the nearest edge stands for it.
    """
    return from_millis(min(max(float(value), millis(start)), millis(end) - 1))


def time_clause(field: str, start: datetime, end: datetime) -> dict[str, Any]:
    """[start, end) in epoch milliseconds, the only time format this module uses."""
    bounds = {"gte": millis(start), "lt": millis(end), "format": "epoch_millis"}
    return {"range": {field: bounds}}


def filter_clause(given: str | dict[str, Any] | None) -> dict[str, Any]:
    if given is None:
        return {"match_all": {}}
    if isinstance(given, str):
        return {"query_string": {"query": given}}
    return given


def rule_query(
    rule: RuleBase, start: datetime, end: datetime, *also: dict[str, Any]
) -> dict[str, Any]:
    """The rule's filter over [start, end), with further required clauses."""
    clauses = [filter_clause(rule.filter), time_clause(rule.timestamp_field, start, end), *also]
    return {"bool": {"filter": clauses}}


def exists(field: str) -> dict[str, Any]:
    return {"exists": {"field": field}}


def terms(field: str, values: list[Any]) -> dict[str, Any]:
    return {"terms": {field: values}}


def whole(body: Mapping[str, Any], index: str) -> Mapping[str, Any]:
    """`body` unless some shards failed: a partial count or page would under-report."""
    failures = body.get("_shards", {}).get("failures") or []
    if failures:
        reason = failures[0].get("reason", {})
        said = reason.get("reason") if isinstance(reason, dict) else reason
        # The failing indices named: "fix that index's mapping" is advice one can follow
        # only knowing which of the pattern's indices it is. Not done for rules, as sources
        # do (`Source.leave_out_mistyped`): leaving such an index out of the rule's reads,
        # so one index mapping the time as keyword holds every rule over its pattern.
        failing = sorted({str(f["index"]) for f in failures if f.get("index")})
        named = f" (in {some(failing)})" if failing else ""
        raise PartialResultsError(
            f"{len(failures)} shard(s) of {index}{named} failed the search ({said}); "
            "the window is tried again next cycle"
        )
    return body


def count(es: Elasticsearch, index: str, query: dict[str, Any]) -> int:
    body = es.count(index=index, query=query, ignore_unavailable=True, allow_no_indices=True)
    return int(whole(body.body, index)["count"])


# (rule, key) pairs whose missing documents were already warned about, in this process.
_SAID_MISSING: set[tuple[str, str]] = set()


def count_without_key(run: Run, rule: RuleBase, key: str, start: datetime) -> int:
    """Documents the filter matches that lack `key`: per-key counting ignores them, and says so."""
    query = rule_query(rule, start, run.end)
    query["bool"]["must_not"] = [exists(key)]
    missing = count(run.es, rule.index, query)
    if missing and (rule.name, key) not in _SAID_MISSING:
        # A warning the first time (a typo in query_key leaves every document out), then
        # information only: some documents lacking the key can be normal.
        _SAID_MISSING.add((rule.name, key))
        log.warning(
            "rule %s: %d matching documents lack %s and are not counted per key; check "
            "query_key if that is most of them (said once per rule, then at INFO)",
            rule.name,
            missing,
            key,
        )
    elif missing:
        log.info("rule %s: %d documents lack %s, not counted per key", rule.name, missing, key)
    return missing


def aggregate(
    es: Elasticsearch, index: str, query: dict[str, Any], aggs: dict[str, Any]
) -> dict[str, Any]:
    """The aggregations of a size-0 search; empty when the pattern matches no index yet."""
    body = es.search(
        index=index, size=0, query=query, aggs=aggs, ignore_unavailable=True, allow_no_indices=True
    ).body
    result: dict[str, Any] = whole(body, index).get("aggregations", {})
    return result


def composite(
    es: Elasticsearch,
    index: str,
    query: dict[str, Any],
    sources: list[dict[str, Any]],
    aggs: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every bucket of a composite aggregation, a page at a time."""
    after: dict[str, Any] | None = None
    while True:
        spec: dict[str, Any] = {"size": PAGE, "sources": sources}
        if after:
            spec["after"] = after
        result = aggregate(es, index, query, {"c": {"composite": spec, "aggs": aggs or {}}})
        page = result.get("c", {})
        yield from page.get("buckets", [])
        after = page.get("after_key")
        if not after or len(page.get("buckets", [])) < PAGE:
            return


def documents(run: Run, rule: RuleBase, query: dict[str, Any], fields: list[str]) -> Iterator[Hit]:
    """Matching documents in time order, paged through a point in time with search_after.

    `query` must keep to the run's window: each hit's time is kept inside it (`clamped`).
    """
    es = run.es
    try:
        opened = es.open_point_in_time(index=rule.index, keep_alive="1m", ignore_unavailable=True)
    except ApiError as exc:
        if exc.meta.status != 503:
            raise
        # A shard of the pattern is unavailable (a node restarting, an index not yet
        # allocated): like a partial answer, a condition to wait out, not a broken rule.
        raise PartialResultsError(
            f"{rule.index}: a shard is unavailable ({exc.message}); "
            "the window is tried again next cycle"
        ) from exc
    pit = opened["id"]
    try:
        yield from _pages(run, pit, rule, query, fields)
    finally:
        es.close_point_in_time(id=pit)


def _pages(
    run: Run, pit: str, rule: RuleBase, query: dict[str, Any], fields: list[str]
) -> Iterator[Hit]:
    sort: list[str | Mapping[str, Any]] = [
        {rule.timestamp_field: {"order": "asc", "format": "epoch_millis"}},
        "_shard_doc",
    ]
    after: list[Any] | None = None
    pulled = 0
    while pulled < MAX_DOCUMENTS:
        page = run.es.search(
            pit={"id": pit, "keep_alive": "1m"},
            size=PAGE,
            query=query,
            sort=sort,
            search_after=after,
            fields=[{"field": f} for f in fields],
            source=False,
            track_total_hits=False,
        )
        hits = whole(page.body, rule.index)["hits"]["hits"]
        for hit in hits:
            at = clamped(hit["sort"][0], run.start, run.end)
            matched = tuple(hit.get("matched_queries", ()))
            yield Hit(hit["_index"], hit["_id"], at, hit.get("fields", {}), matched)
        pulled += len(hits)
        if len(hits) < PAGE:
            return
        after = hits[-1]["sort"]
    log.warning("rule %s: stopped after %d documents in one window", rule.name, MAX_DOCUMENTS)
