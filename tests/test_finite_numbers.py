"""Numbers JSON cannot carry (NaN, the infinities) never make the node refuse a document."""

from __future__ import annotations

import math
import sys
from datetime import timedelta

from elasticsearch import Elasticsearch, helpers

from nis2triage import esclient
from nis2triage.rules.engine import run_rule
from nis2triage.rules.state import RuleState
from nis2triage.store import FLOAT32_MAX, Store, alert_document
from tests.rules.native_support import T0, at, make_rule


def test_finite_keeps_structure_and_replaces_only_what_json_cannot_hold() -> None:
    given = {"a": [1.5, math.inf, {"b": -math.inf}], "c": (math.nan, "inf", 2)}

    assert esclient.finite(given) == {
        "a": [1.5, sys.float_info.max, {"b": -sys.float_info.max}],
        "c": [None, "inf", 2],
    }


def test_a_metric_summed_past_the_largest_double_is_written_as_an_alert(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str
) -> None:
    # The break run's case: three values near the largest double, summed by the node.
    es.indices.create(index=index_name, mappings={"properties": {"d": {"type": "double"}}})
    huge = [
        {"_index": index_name, "@timestamp": at(m).isoformat(), "d": 1.7e308} for m in (1, 2, 3)
    ]
    helpers.bulk(es, huge, refresh=True)
    rule = make_rule(
        "metric_aggregation",
        index_name,
        metric_agg_type="sum",
        metric_agg_key="d",
        max_threshold=100,
        timeframe="10m",
    )
    [alert] = run_rule(es, rule, T0, T0 + timedelta(minutes=10), RuleState())
    assert alert.score == math.inf
    client = esclient.connect(es_settings)
    store = Store(client, f"{index_name}-st")
    store.ensure_indices()

    # One document alone, and in a bulk write: the node refused both before.
    store.put("state", "probe", {"score": math.inf, "ratio": math.nan}, refresh=True)
    assert store.create_many("alerts", [(alert.id, alert_document(alert))], refresh=True) == 1

    assert store.get("state", "probe") == {"score": sys.float_info.max, "ratio": None}
    written = store.get("alerts", alert.id)
    # The mapping's float holds no more than float32's largest value; the sum is in the text.
    assert written is not None
    assert written["event"]["risk_score"] == written["nis2triage"]["score"] == FLOAT32_MAX
    assert written["message"] == "test metric_aggregation: sum of d was inf in 10m, above 100"
    assert client.count(index=store.index("deadletter"))["count"] == 0
