"""Running a converted Sigma rule over a time window, one alert per entity.

One alert per rule, per entity (host by default), per window: an analyst gets
"rule X fired 40 times on host Y between 10:02 and 10:07" rather than forty
alerts, and re-running the same window yields the same alert id (`Alert.id`),
so writing it again overwrites instead of duplicating.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from nis2triage import datemath
from nis2triage.errors import PartialResultsError, RuleExecutionError
from nis2triage.records import Alert
from nis2triage.rules import search
from nis2triage.rules.sigma import SigmaQuery

log = logging.getLogger(__name__)

MISSING_ENTITY = "(none)"
PAGE_SIZE = 500
SAMPLE_SIZE = 3


@dataclass(frozen=True)
class RunSettings:
    """Where a rule runs: indices, the field naming the entity, the event time field."""

    index_pattern: str
    entity_field: str = "host.name"
    time_field: str = "@timestamp"


def run_rule(
    es: Elasticsearch, rule: SigmaQuery, settings: RunSettings, start: datetime, end: datetime
) -> list[Alert]:
    """The alerts `rule` raises over [start, end), one per entity that has matching events."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must carry a time zone (use datetime.now(UTC))")
    alerts = [
        _alert(rule, settings, start, end, bucket)
        for bucket in _buckets(es, rule, settings, start, end)
    ]
    for alert in alerts:
        log.info(
            "sigma rule %r fired on %s=%s (%s events), alert %s",
            rule.name,
            alert.entity_field,
            alert.entity,
            alert.evidence["matched"],
            alert.id,
        )
    return alerts


def search_body(
    rule: SigmaQuery, settings: RunSettings, start: datetime, end: datetime
) -> dict[str, Any]:
    """The search: the rule's query string within the window, bucketed by entity."""
    window = {
        "gte": start.isoformat(),
        "lt": end.isoformat(),
        "format": "strict_date_optional_time",
    }
    return {
        "size": 0,
        "query": {
            "bool": {
                "filter": [
                    query_string(rule),
                    {"range": {settings.time_field: window}},
                ]
            }
        },
        "aggs": {"entities": _entity_aggregation(settings)},
    }


def query_string(rule: SigmaQuery) -> dict[str, Any]:
    """The rule's query as Kibana's Lucene bar sends it, but lenient only for keywords.

    Left to itself this node's query_string is lenient: `destination.ip:10.*` on an
    `ip` field then matches nothing, silently. A rule that can never fire is a blind
    spot, so a type mismatch is made an error that names the rule instead. Unbound
    keywords search every field, dates and addresses included, and need leniency;
    the field-bound parts of such a rule then lose that check (a known gap).
    """
    body = {"query": rule.query, "analyze_wildcard": True, "lenient": rule.keywords}
    return {"query_string": body}


def _entity_aggregation(settings: RunSettings) -> dict[str, Any]:
    source = {"terms": {"field": settings.entity_field, "missing_bucket": True}}
    newest = [{settings.time_field: {"order": "desc"}}]
    return {
        "composite": {"size": PAGE_SIZE, "sources": [{"entity": source}]},
        "aggs": {
            "first": {"min": {"field": settings.time_field}},
            "last": {"max": {"field": settings.time_field}},
            "sample": {"top_hits": {"size": SAMPLE_SIZE, "_source": False, "sort": newest}},
        },
    }


def _buckets(
    es: Elasticsearch, rule: SigmaQuery, settings: RunSettings, start: datetime, end: datetime
) -> Iterator[dict[str, Any]]:
    """Every entity bucket, page by page (composite paging keeps memory bounded)."""
    body = search_body(rule, settings, start, end)
    index = _over_the_window(rule, settings.index_pattern, start)
    while True:
        result = _search(es, rule, index, body)
        entities = result["aggregations"]["entities"]
        yield from entities["buckets"]
        if "after_key" not in entities or len(entities["buckets"]) < PAGE_SIZE:
            return
        body["aggs"]["entities"]["composite"]["after"] = entities["after_key"]


# Date math index names said to be read back only in part (`datemath.MAX_STEPS`).
_SAID_CUT: set[str] = set()


def _over_the_window(rule: SigmaQuery, index: str, start: datetime) -> str:
    """`index` with its date math names (`<winlogbeat-{now/d}>`) also as they resolved back
    to `start`: resolved at the request alone they named today's index, and a window before
    midnight UTC evaluated after it found nothing. Alerts keep the index as written."""
    names = index.split(",")
    if not any(datemath.is_date_math(n) for n in names):
        return index
    # The node resolves `now` by its own clock: the span runs to the real present.
    span = datetime.now(UTC) - start
    return ",".join(datemath.expand(names, span, f"Sigma rule {rule.name!r}", _SAID_CUT))


def _search(
    es: Elasticsearch, rule: SigmaQuery, index: str, body: dict[str, Any]
) -> dict[str, Any]:
    try:
        result: dict[str, Any] = es.search(
            index=index, ignore_unavailable=True, allow_no_indices=True, **body
        ).body
    except ApiError as exc:
        if not search.refused(exc):
            raise  # an outage or overload: the agent waits it out and tries the window again
        raise RuleExecutionError(
            f"Sigma rule {rule.name!r} ({rule.path}) was refused by Elasticsearch: "
            f"{error_reason(exc.body)}; check the field mapping for its log source"
        ) from exc
    failures = result.get("_shards", {}).get("failures")
    if failures:
        # Some shards answered: a partial count would under-report, so the window is retried.
        raise PartialResultsError(
            f"Sigma rule {rule.name!r} failed on {len(failures)} shard(s): "
            f"{error_reason({'error': failures[0].get('reason')})}; "
            "the window is tried again next cycle"
        )
    return result


def error_reason(body: Any) -> str:
    """The most specific reason Elasticsearch gave for refusing a search."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return str(body)
    causes = error.get("root_cause") or [error]
    first = causes[0] if isinstance(causes[0], dict) else error
    return f"{first.get('type')}: {first.get('reason')}"


def _alert(
    rule: SigmaQuery, settings: RunSettings, start: datetime, end: datetime, bucket: dict[str, Any]
) -> Alert:
    entity = bucket["key"]["entity"]
    entity_text = MISSING_ENTITY if entity is None else str(entity)
    count = int(bucket["doc_count"])
    first = search.clamped(bucket["first"]["value"], start, end)
    last = search.clamped(bucket["last"]["value"], start, end)
    samples = [f"{hit['_index']}/{hit['_id']}" for hit in bucket["sample"]["hits"]["hits"]]
    return Alert(
        kind="rule",
        name=rule.name,
        version=rule.version,
        severity=rule.severity,
        timestamp=last,
        start=start,
        end=end,
        score=float(count),
        threshold=1.0,
        entity_field=settings.entity_field,
        entity=entity_text,
        message=(
            f"Sigma rule '{rule.name}' matched {count} event(s) on {settings.entity_field} "
            f"{entity_text} between {first.isoformat()} and {last.isoformat()}"
        ),
        index_pattern=settings.index_pattern,
        query=rule.query,
        evidence={
            "matched": count,
            "first": first.isoformat(),
            "last": last.isoformat(),
            "sample_events": samples,
            "sigma_id": rule.rule_id,
            "sigma_level": rule.level,
            "sigma_file": rule.path,
        },
        tags=rule.tags,
    )
