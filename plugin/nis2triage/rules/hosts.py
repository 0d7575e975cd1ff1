"""The hosts a rule's alert is about, asked of the node when no event of it was pulled.

A count (`frequency`, `spike`, `cardinality`, ...) pulls no event, so its alert named no
host, and triage could not find the asset an attack hit: the demo's SSH brute force on
its high-importance server stayed on the `soc` route (new-user run). The alert's own
events (the rule's filter, the finding's conditions, its window) are asked for the
values of the ECS host fields; one request per alert, the rare cost of alerting.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from elasticsearch import ApiError

from nis2triage.errors import PartialResultsError
from nis2triage.features import MAX_RELATED
from nis2triage.records import Alert
from nis2triage.rules import search
from nis2triage.rules.alerts import HOST_NAMES, Finding
from nis2triage.rules.native import NativeRule
from nis2triage.rules.search import Run

log = logging.getLogger(__name__)


def named(run: Run, rule: NativeRule, alert: Alert, found: Finding) -> Alert:
    """`alert` with the hosts its events came from, when it names none and pulled none."""
    if alert.related_hosts or found.hits:
        return alert
    query = search.rule_query(rule, found.start, found.end, *map(_lucene, found.conditions))
    fields = {f: {"terms": {"field": f, "size": MAX_RELATED}} for f in HOST_NAMES}
    try:
        aggs = search.aggregate(run.es, rule.index, query, fields)
    except (ApiError, PartialResultsError) as exc:
        # The alert stands without them: triage routes it by its entity, as before.
        log.info("rule %s: the hosts of its alert on %s were not found: %s",
                 rule.name, alert.entity, exc)  # fmt: skip
        return alert
    found_hosts = {str(b["key"]) for f in HOST_NAMES for b in aggs.get(f, {}).get("buckets", [])}
    if not found_hosts:
        return alert
    return dataclasses.replace(alert, related_hosts=tuple(sorted(found_hosts)))


def _lucene(condition: str) -> dict[str, Any]:
    # The conditions are the Lucene the alert's Kibana query holds, written for it.
    return {"query_string": {"query": condition}}
