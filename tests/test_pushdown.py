"""The detectors' filters asked of the node: never an event lost, only fewer read."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers

from nis2triage import esclient
from nis2triage.config import SourceConfig
from nis2triage.features import Match
from nis2triage.pushdown import describe, node_query
from nis2triage.source import Cursor, Source

KEYWORD = frozenset({"keyword"})
NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def match(**all_of: Any) -> Match:
    return Match(all_of={k.replace("__", "."): v for k, v in all_of.items()})


# --- the query, from the field types --------------------------------------------


def test_keyword_conditions_go_to_the_node_one_clause_per_filter() -> None:
    auth = match(event__category="authentication")
    ssh = match(event__category="authentication", event__outcome=["failure", "unknown"])
    types = {"event.category": KEYWORD, "event.outcome": KEYWORD}

    query = node_query([auth, ssh, auth], types)

    assert query is not None
    assert describe(query) == (
        "(event.category in [authentication]) OR "
        "(event.category in [authentication] AND event.outcome in [failure, unknown])"
    )


@pytest.mark.parametrize(
    "types",
    [
        {"event.outcome": frozenset({"text"})},  # analysed: "Failed" is found as "failed"
        {"event.outcome": frozenset({"keyword", "unmapped"})},  # some index lacks it
        {"event.outcome": frozenset({"keyword", "text"})},  # two indices disagree
        {"event.outcome": frozenset({"keyword", "unsearchable"})},
        {},  # the node did not answer for the field
    ],
    ids=["text", "unmapped-somewhere", "two-types", "not-searchable", "unknown"],
)
def test_a_condition_the_node_cannot_judge_exactly_stays_with_the_agent(
    types: dict[str, frozenset[str]],
) -> None:
    narrow = match(event__category="authentication", event__outcome="Failed")
    types = {"event.category": KEYWORD, **types}

    query = node_query([narrow], types)

    # The other condition still narrows the read; the outcome is left to the agent.
    assert query is not None and describe(query) == "(event.category in [authentication])"


def test_a_field_inside_a_nested_object_stays_with_the_agent() -> None:
    users = match(event__category="authentication", user__name="root")
    types = {
        "event.category": KEYWORD,
        "user.name": KEYWORD,
        "user": frozenset({"object", "nested"}),  # nested in one index of the pattern
    }

    query = node_query([users], types)

    assert query is not None and describe(query) == "(event.category in [authentication])"


def test_a_filter_left_with_no_condition_makes_the_source_read_everything() -> None:
    keyword_only = match(event__category="authentication")
    text_only = match(message="Failed password")

    types = {"event.category": KEYWORD, "message": frozenset({"text"})}
    assert node_query([keyword_only, text_only], types) is None
    assert node_query([Match()], {}) is None
    assert node_query([], {}) is None


def test_values_are_asked_as_the_node_indexes_what_the_agent_reads() -> None:
    # JSON true in a keyword field: the agent reads "True", the node indexed "true".
    flagged = node_query([match(flag=True)], {"flag": KEYWORD})
    assert flagged is not None and describe(flagged) == "(flag in [True, true])"

    # On a boolean field, JSON true and the string "true" are both the node's true.
    boolean = node_query([match(ok=[True, "false"])], {"ok": frozenset({"boolean"})})
    assert boolean is not None and describe(boolean) == "(ok in [false, true])"

    # Neither boolean nor number: the node cannot hold it, the agent still decides.
    assert node_query([match(ok="yes")], {"ok": frozenset({"boolean"})}) is None
    # A number in a keyword field keeps the shipper's text (1e3), the agent reads 1000.0.
    assert node_query([match(port=22)], {"port": KEYWORD}) is None


# --- against the real node ------------------------------------------------------

MAPPING = {
    "properties": {
        "@timestamp": {"type": "date"},
        "event": {"properties": {"category": {"type": "keyword"}, "outcome": {"type": "text"}}},
        "flag": {"type": "keyword"},
        "ok": {"type": "boolean"},
    }
}
DOCS: list[dict[str, Any]] = [
    {"_id": "auth-failed", "event": {"category": "authentication", "outcome": "Failed"}},
    {"_id": "auth-ok", "event": {"category": "authentication", "outcome": "success"}},
    {"_id": "flat-auth", "event.category": "authentication"},
    {"_id": "listed-auth", "event": {"category": ["web", "authentication"]}},
    {"_id": "web", "event": {"category": "web"}},
    {"_id": "no-category"},
    {"_id": "flag-json-true", "flag": True, "event": {"category": "web"}},
    {"_id": "flag-text-true", "flag": "true", "event": {"category": "web"}},
    {"_id": "ok-text-true", "ok": "true", "event": {"category": "web"}},
]


def index_docs(es: Elasticsearch, index: str, mapping: dict[str, Any] = MAPPING) -> None:
    es.indices.create(index=index, mappings=mapping)
    actions = []
    for i, doc in enumerate(DOCS):
        source = {k: v for k, v in doc.items() if k != "_id"}
        source["@timestamp"] = (NOW - timedelta(minutes=30 - i)).isoformat()
        actions.append({"_index": index, "_id": doc["_id"], "_source": source})
    helpers.bulk(es, actions, refresh=True)


def read(es: Elasticsearch, index: str, filters: list[Match], push: bool = True) -> list[str]:
    cfg = SourceConfig(name="s", indices=[index], push_filters=push)
    source = Source(es, cfg, clock=lambda: NOW, filters=filters)
    return [e.id for batch in source.poll(Cursor()) for e in batch]


def taken(es: Elasticsearch, index: str, filters: list[Match], push: bool) -> set[str]:
    """What the filters take among the events the source reads."""
    cfg = SourceConfig(name="s", indices=[index], push_filters=push)
    source = Source(es, cfg, clock=lambda: NOW, filters=filters)
    matchers = [f.matcher() for f in filters]
    events = [e for batch in source.poll(Cursor()) for e in batch]
    return {e.id for e in events if any(m(e.doc) for m in matchers)}


@pytest.mark.parametrize(
    "filters",
    [
        [match(event__category="authentication")],
        [match(event__category="authentication", event__outcome="Failed")],
        [match(flag=True)],
        [match(flag="true")],
        [match(ok="true")],
        [match(ok=True), match(event__category="web")],
    ],
    ids=[
        "keyword",
        "keyword-and-text",
        "keyword-json-true",
        "keyword-text-true",
        "boolean-text",
        "boolean-or-keyword",
    ],
)
def test_the_detectors_take_the_same_events_with_and_without_the_node_filtering(
    es: Elasticsearch, index_name: str, filters: list[Match]
) -> None:
    index_docs(es, index_name)

    everything = taken(es, index_name, filters, push=False)

    assert everything  # each case takes something, so losing it would show
    assert taken(es, index_name, filters, push=True) == everything


def test_a_nested_object_on_the_node_loses_no_event(es: Elasticsearch, index_name: str) -> None:
    nested = {
        "properties": {
            "@timestamp": {"type": "date"},
            "user": {"type": "nested", "properties": {"name": {"type": "keyword"}}},
        }
    }
    es.indices.create(index=index_name, mappings=nested)
    es.index(
        index=index_name,
        id="root",
        refresh=True,
        document={"@timestamp": NOW.isoformat(), "user": {"name": "root"}},
    )

    assert taken(es, index_name, [match(user__name="root")], push=True) == {"root"}


def test_a_value_longer_than_ignore_above_loses_no_event(
    es: Elasticsearch, index_name: str
) -> None:
    # Kept in _source, not indexed: the node cannot find it, the agent can.
    short = {
        "properties": {
            "@timestamp": {"type": "date"},
            "event": {"properties": {"category": {"type": "keyword", "ignore_above": 5}}},
        }
    }
    es.indices.create(index=index_name, mappings=short)
    es.index(
        index=index_name,
        id="long",
        refresh=True,
        document={"@timestamp": NOW.isoformat(), "event": {"category": "authentication"}},
    )

    assert taken(es, index_name, [match(event__category="authentication")], push=True) == {"long"}


def test_the_source_reads_only_what_its_detectors_may_take(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    index_docs(es, index_name)

    with caplog.at_level(logging.INFO, logger="nis2triage.pushdown"):
        read_ids = read(es, index_name, [match(event__category="authentication")])

    assert read_ids == ["auth-failed", "auth-ok", "flat-auth", "listed-auth"]
    assert read(es, index_name, [match(event__category="authentication")], push=False) == [
        d["_id"] for d in DOCS
    ]
    assert (
        "reads only the events its detectors' filters may take: (event.category in "
        "[authentication])" in caplog.text
    )


def test_an_index_mapping_the_field_otherwise_makes_the_source_read_everything(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A new index of the pattern (a rollover) maps event.category as text.
    index_docs(es, f"{index_name}-1")
    text = {
        "properties": {
            "@timestamp": {"type": "date"},
            "event": {"properties": {"category": {"type": "text"}}},
        }
    }
    es.indices.create(index=f"{index_name}-2", mappings=text)
    es.index(
        index=f"{index_name}-2",
        id="text-auth",
        refresh=True,
        document={"@timestamp": NOW.isoformat(), "event": {"category": "Authentication"}},
    )
    filters = [match(event__category="authentication")]

    with caplog.at_level(logging.INFO, logger="nis2triage.pushdown"):
        read_ids = read(es, f"{index_name}-*", filters)

    assert len(read_ids) == len(DOCS) + 1
    assert "source s: reads every event" in caplog.text


def test_a_role_that_may_not_see_the_mappings_reads_everything_and_says_so_once(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    index_docs(es, index_name)
    # A key that may read the events but not see the mappings (no view_index_metadata).
    name = f"t-read-only-{uuid.uuid4().hex[:8]}"
    key = es.security.create_api_key(
        name=name,
        role_descriptors={name: {"indices": [{"names": [index_name], "privileges": ["read"]}]}},
    ).body
    reader = esclient.connect(
        replace(es_settings, username=None, password=None, api_key=key["encoded"])
    )
    cfg = SourceConfig(name="s", indices=[index_name])
    source = Source(
        reader, cfg, clock=lambda: NOW, filters=[match(event__category="authentication")]
    )

    try:
        with caplog.at_level(logging.WARNING, logger="nis2triage.pushdown"):
            first = [e.id for batch in source.poll(Cursor()) for e in batch]
            [e.id for batch in source.poll(Cursor()) for e in batch]
    finally:
        es.security.invalidate_api_key(ids=[key["id"]])

    assert first == [d["_id"] for d in DOCS]
    assert caplog.text.count("would not describe the indices' fields") == 1
    assert "view_index_metadata" in caplog.text
