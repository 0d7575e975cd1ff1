"""A rule whose index is a date math name (`<logs-{now/d}>`) reads back over its window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from elasticsearch import Elasticsearch

from nis2triage.rules.engine import run_rule
from nis2triage.rules.loader import rule_from_dict
from nis2triage.rules.state import RuleState

from native_support import MAPPING


def test_a_window_before_the_period_turned_is_read_in_the_last_periods_index(
    es: Elasticsearch, index_name: str
) -> None:
    # Resolved at the request alone, `<x-{now/d}>` named today's index: a window before
    # midnight UTC, evaluated after it, found nothing. Per minute here, so that the test
    # crosses the boundary at once; the node resolves `now` by its clock.
    before = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    earlier = f"{index_name}-{before:%Y.%m.%d.%H.%M}"
    es.indices.create(index=earlier, mappings=MAPPING)
    for second in range(5):
        event = {"@timestamp": (before + timedelta(seconds=second)).isoformat()}
        es.index(index=earlier, document={**event, "source": {"ip": "185.190.58.151"}})
    es.indices.refresh(index=earlier)
    rule = rule_from_dict(
        {
            "name": "burst",
            "type": "frequency",
            "index": f"<{index_name}-{{now/m{{yyyy.MM.dd.HH.mm}}}}>",
            "query_key": "source.ip",
            "num_events": 5,
            "timeframe": "1m",
        }
    )

    alerts = run_rule(es, rule, before, before + timedelta(minutes=1), RuleState())

    assert [a.entity for a in alerts] == ["185.190.58.151"]
    assert alerts[0].index_pattern == rule.index  # as written, for Kibana
