"""The detectors' filters asked of the node: never an event lost, only fewer read.

The real-node cases come from a break run against the first version: each mapping
here once made the node leave out an event a detector takes.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from elasticsearch import BadRequestError, Elasticsearch, helpers

from nis2triage import esclient
from nis2triage.config import SourceConfig
from nis2triage.features import Match
from nis2triage.pushdown import MAX_VALUES, Fields, describe, plan, unsafe_fields
from nis2triage.replay import count_events
from nis2triage.source import Cursor, Source

KEYWORD = frozenset({"keyword"})
NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def match(**all_of: Any) -> Match:
    return Match(all_of={k.replace("__", "."): v for k, v in all_of.items()})


def fields(types: dict[str, frozenset[str]], runtime: tuple[str, ...] = ()) -> Fields:
    """Fields as one index describes them, `runtime` ones defined as runtime fields."""
    return Fields(types, frozenset(runtime), ("logs-1",))


def by_name(*filters: Match) -> dict[str, Match]:
    return {f"detector-{i}": f for i, f in enumerate(filters)}


def described(filters: dict[str, Match], found: Fields) -> str | None:
    query = plan(filters, found).query
    return None if query is None else describe(query)


# --- the query, from what the node says of the fields -------------------------------


def test_keyword_conditions_go_to_the_node_one_clause_per_filter() -> None:
    auth = match(event__category="authentication")
    web = match(event__category="web", event__outcome=["failure", "unknown"])
    found = fields({"event.category": KEYWORD, "event.outcome": KEYWORD})

    assert described(by_name(auth, web, auth), found) == (
        "(event.category in [authentication]) OR "
        "(event.category in [web] AND event.outcome in [failure, unknown])"
    )


def test_a_clause_inside_another_is_left_out() -> None:
    # Failed SSH logins are authentication events: asking for both asks for the first.
    auth = match(event__category="authentication")
    ssh = match(event__category="authentication", event__outcome="failure")
    found = fields({"event.category": KEYWORD, "event.outcome": KEYWORD})

    assert described(by_name(ssh, auth), found) == "(event.category in [authentication])"


def test_the_query_holds_only_for_the_indices_the_node_described() -> None:
    # An index the point in time reads but field_caps did not describe (an alias moved in
    # between) is read whole, whatever the filters.
    query = plan(by_name(match(a="x")), fields({"a": KEYWORD})).query

    assert query is not None
    described_only, any_other = query["bool"]["should"]
    assert described_only["bool"]["filter"][0] == {"terms": {"_index": ["logs-1"]}}
    assert any_other == {"bool": {"must_not": [{"terms": {"_index": ["logs-1"]}}]}}


def test_an_event_whose_value_the_node_set_aside_is_still_read() -> None:
    # ignore_above or ignore_malformed: the value is in _source, not in the index.
    query = plan(by_name(match(a="x")), fields({"a": KEYWORD})).query

    assert query is not None
    condition = query["bool"]["should"][0]["bool"]["filter"][1]["bool"]["filter"][0]
    assert condition == {"bool": {"should": [{"terms": {"a": ["x"]}}, {"term": {"_ignored": "a"}}]}}


@pytest.mark.parametrize(
    ("outcome", "runtime"),
    [
        (frozenset({"text"}), ()),  # analysed: "Failed" is found as "failed"
        (frozenset({"keyword", "unmapped"}), ()),  # some index lacks it
        (frozenset({"keyword", "text"}), ()),  # two indices disagree
        (frozenset({"keyword", "unsearchable"}), ()),
        (None, ()),  # the node did not answer for the field
        (KEYWORD, ("event.outcome",)),  # a runtime field, computed rather than read
    ],
    ids=["text", "unmapped-somewhere", "two-types", "not-searchable", "unknown", "runtime"],
)
def test_a_condition_the_node_cannot_judge_exactly_stays_with_the_agent(
    outcome: frozenset[str] | None, runtime: tuple[str, ...]
) -> None:
    narrow = match(event__category="authentication", event__outcome="Failed")
    types = {"event.category": KEYWORD} | ({"event.outcome": outcome} if outcome else {})

    # The other condition still narrows the read; the outcome is left to the agent.
    assert described(by_name(narrow), fields(types, runtime)) == (
        "(event.category in [authentication])"
    )


def test_a_field_inside_a_nested_object_stays_with_the_agent() -> None:
    users = match(event__category="authentication", user__name="root")
    types = {
        "event.category": KEYWORD,
        "user.name": KEYWORD,
        "user": frozenset({"object", "nested"}),  # nested in one index of the pattern
    }

    assert described(by_name(users), fields(types)) == "(event.category in [authentication])"


def test_a_filter_left_with_no_condition_makes_the_source_read_everything() -> None:
    keyword_only = match(event__category="authentication")
    text_only = match(message="Failed password")
    found = fields({"event.category": KEYWORD, "message": frozenset({"text"})})

    assert plan({"auth": keyword_only, "text": text_only}, found).query is None
    assert plan({"auth": keyword_only, "text": text_only}, found).unfiltered == ("text",)
    assert plan({"any": Match()}, fields({})).query is None
    assert plan({}, fields({})).query is None


def test_values_are_asked_as_the_node_indexes_what_the_agent_reads() -> None:
    # JSON true in a keyword field: the agent reads "True", the node indexed "true".
    assert described(by_name(match(flag=True)), fields({"flag": KEYWORD})) == (
        "(flag in [True, true])"
    )
    # On a boolean field, JSON true and the string "true" are both the node's true.
    boolean = fields({"ok": frozenset({"boolean"})})
    assert described(by_name(match(ok=[True, "false"])), boolean) == "(ok in [false, true])"


@pytest.mark.parametrize(
    ("wanted", "kind"),
    [
        ("yes", "boolean"),  # neither true nor false: the node cannot hold it
        (22, "keyword"),  # a number keeps the shipper's text (1e3), the agent reads 1000.0
        ("None", "keyword"),  # the agent's text for a null inside a list
        ("['x']", "keyword"),  # and for a list inside a list
        ([f"u{i}" for i in range(MAX_VALUES + 1)], "keyword"),  # past the node's terms limit
    ],
    ids=["not-boolean", "number", "none", "list", "too-many"],
)
def test_values_the_node_would_compare_otherwise_stay_with_the_agent(
    wanted: Any, kind: str
) -> None:
    assert plan(by_name(match(u=wanted)), fields({"u": frozenset({kind})})).query is None


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


def source_on(es: Elasticsearch, index: str, filters: list[Match], **cfg: Any) -> Source:
    """Source `s` over `index` for detectors with `filters`, its clock stopped at NOW."""
    config = SourceConfig(name="s", indices=[index], **cfg)
    return Source(es, config, clock=lambda: NOW, filters=by_name(*filters))


def ids(source: Source) -> list[str]:
    """The ids of the events one poll from the start reads."""
    return [e.id for batch in source.poll(Cursor()) for e in batch]


def read(es: Elasticsearch, index: str, filters: list[Match], push: bool = True) -> list[str]:
    return ids(source_on(es, index, filters, push_filters=push))


def taken(es: Elasticsearch, index: str, filters: list[Match], push: bool) -> set[str]:
    """What the filters take among the events the source reads."""
    source = source_on(es, index, filters, push_filters=push)
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


def keyword(**extra: Any) -> dict[str, Any]:
    return {"type": "keyword", **extra}


# Mappings, index settings, documents, and the filter that takes some of them.
LOSSES = {
    "nested": (
        {"properties": {"user": {"type": "nested", "properties": {"name": keyword()}}}},
        {},
        {"root": {"user": {"name": "root"}}},
        match(user__name="root"),
    ),
    "field-ignore-above": (
        {"properties": {"event": {"properties": {"category": keyword(ignore_above=5)}}}},
        {},
        {"long": {"event": {"category": "authentication"}}},
        match(event__category="authentication"),
    ),
    "index-ignore-above": (
        {"properties": {"event": {"properties": {"category": keyword()}}}},
        {"index.mapping.ignore_above": 10},
        {"long": {"event": {"category": "authentication"}}},
        match(event__category="authentication"),
    ),
    "boolean-ignore-malformed": (
        {"properties": {"ok": {"type": "boolean", "ignore_malformed": True}}},
        {},
        {"text-True": {"ok": "True"}, "json-true": {"ok": True}},
        match(ok=True),
    ),
    "index-ignore-malformed": (
        {"properties": {"ok": {"type": "boolean"}}},
        {"index.mapping.ignore_malformed": True},
        {"text-True": {"ok": "True"}},
        match(ok=True),
    ),
    # A runtime boolean reads "True" from _source and cannot parse it; the agent takes it.
    "runtime-field": (
        {"runtime": {"ok": {"type": "boolean"}}},
        {},
        {"text-True": {"ok": "True"}},
        match(ok=True),
    ),
    # The same, shadowing a mapped keyword field: field_caps then says boolean.
    "runtime-shadowing": (
        {"properties": {"ok": keyword()}, "runtime": {"ok": {"type": "boolean"}}},
        {},
        {"text-True": {"ok": "True"}},
        match(ok=True),
    ),
    "null-in-a-list": (
        {"properties": {"u": keyword()}},
        {},
        {"listed-null": {"u": ["y", None]}},
        match(u="None"),
    ),
}


@pytest.mark.parametrize("case", LOSSES.values(), ids=LOSSES.keys())
def test_what_the_node_does_not_index_as_the_agent_reads_it_is_still_read(
    es: Elasticsearch, index_name: str, case: tuple[Any, ...]
) -> None:
    mapping, settings, docs, wanted = case
    properties = {"@timestamp": {"type": "date"}, **mapping.get("properties", {})}
    es.indices.create(
        index=index_name, mappings={**mapping, "properties": properties}, settings=settings
    )
    when = NOW.isoformat()
    helpers.bulk(
        es,
        (
            {"_index": index_name, "_id": i, "_source": {"@timestamp": when, **d}}
            for i, d in docs.items()
        ),
        refresh=True,
    )

    everything = taken(es, index_name, [wanted], push=False)

    assert everything
    assert taken(es, index_name, [wanted], push=True) == everything


def test_a_search_the_node_refuses_is_read_again_unfiltered_and_said_once(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Three wanted values where the index allows two terms: every narrowed search fails.
    index_docs(es, index_name)
    es.indices.put_settings(index=index_name, settings={"index.max_terms_count": 2})
    wanted = match(event__category=["authentication", "web", "other"])
    source = source_on(es, index_name, [wanted])

    with caplog.at_level(logging.WARNING, logger="nis2triage.pushdown"):
        first = ids(source)
        again = ids(source)

    assert first == again == [d["_id"] for d in DOCS]
    assert caplog.text.count("refused the search narrowed") == 1
    assert "max_terms_count" in caplog.text


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


def test_a_filter_field_no_index_maps_is_said_once_naming_the_detector_and_field(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A typo in a detector's all_of made it take no event, and nothing said so.
    index_docs(es, index_name)
    typo = match(event__categroy="authentication")
    source = source_on(es, index_name, [typo, match(event__category="web")])

    with caplog.at_level(logging.WARNING, logger="nis2triage.pushdown"):
        ids(source)
        ids(source)

    said = [
        r.getMessage() for r in caplog.records if "no index of the source maps" in r.getMessage()
    ]
    assert len(said) == 1
    assert "detector detector-0's filter (all_of) names event.categroy" in said[0]
    assert index_name in said[0]


def test_a_filter_field_no_index_maps_is_said_without_pushing_filters_too(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # With push_filters: false the typo was never said: the check lived in the narrowing.
    index_docs(es, index_name)
    typo = match(event__categroy="authentication")
    source = source_on(es, index_name, [typo], push_filters=False)

    with caplog.at_level(logging.INFO, logger="nis2triage.pushdown"):
        read_ids = ids(source)
        ids(source)

    assert read_ids == [d["_id"] for d in DOCS]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1
    assert "detector detector-0's filter (all_of) names event.categroy" in said[0]


def test_a_feature_field_no_index_maps_is_said_once_naming_the_detector_and_feature(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A typo in a distinct feature's field (user.nme) made it measure nothing, silently.
    index_docs(es, index_name)
    config = SourceConfig(name="s", indices=[index_name])
    features = {"detector-0": [("sources", "source.iip"), ("logons", "event.category")]}
    source = Source(
        es, config, clock=lambda: NOW, filters=by_name(match(event__category="web")),
        features=features,
    )  # fmt: skip

    with caplog.at_level(logging.WARNING, logger="nis2triage.pushdown"):
        ids(source)
        ids(source)

    said = [
        r.getMessage() for r in caplog.records if "no index of the source maps" in r.getMessage()
    ]
    assert len(said) == 1  # event.category is mapped; source.iip said once
    assert "detector detector-0's feature sources names source.iip" in said[0]
    assert "that feature measures nothing" in said[0]


def test_fields_of_an_index_without_events_are_not_said_unmapped(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Before its first event an index maps nothing by itself: no typo can be told there.
    es.indices.create(index=index_name, mappings={"properties": {"@timestamp": {"type": "date"}}})
    source = source_on(es, index_name, [match(event__category="authentication")])

    with caplog.at_level(logging.WARNING, logger="nis2triage.pushdown"):
        ids(source)

    assert "no index of the source maps" not in caplog.text


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
        reader, cfg, clock=lambda: NOW, filters=by_name(match(event__category="authentication"))
    )

    try:
        with caplog.at_level(logging.WARNING, logger="nis2triage.pushdown"):
            first = ids(source)
            ids(source)
    finally:
        es.security.invalidate_api_key(ids=[key["id"]])

    assert first == [d["_id"] for d in DOCS]
    assert caplog.text.count("would not describe the indices' fields") == 1
    assert "view_index_metadata" in caplog.text


def test_a_source_query_the_node_refuses_is_not_blamed_on_the_detectors_filters(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    index_docs(es, index_name)
    # A query the load's check passes (one clause) but the node does not know.
    wrong = {"bogus": {"event.category": "web"}}
    source = source_on(es, index_name, [match(event__category="web")], query=wrong)

    with (
        caplog.at_level(logging.WARNING, logger="nis2triage.pushdown"),
        pytest.raises(BadRequestError),
    ):
        list(source.poll(Cursor()))

    assert source.narrowing is not None and source.narrowing.refused is None
    assert source.mistyped == []  # no index is to blame either
    assert "refused the search narrowed" not in caplog.text


def test_the_log_line_names_the_sources_own_query_beside_the_detectors_part(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    index_docs(es, index_name)
    wanted = [match(event__category="authentication")]
    source = source_on(es, index_name, wanted, query="NOT event.category:web")

    with caplog.at_level(logging.INFO, logger="nis2triage.pushdown"):
        read_ids = ids(source)

    assert read_ids == ["auth-failed", "auth-ok", "flat-auth"]  # listed-auth is also web
    assert (
        "(event.category in [authentication]), within its own query NOT event.category:web"
        in caplog.text
    )


def test_a_field_mapped_after_its_events_under_dynamic_false_loses_no_event(
    es: Elasticsearch, index_name: str
) -> None:
    # The event keeps the value in _source only; the mapping comes later (a template fixed).
    es.indices.create(
        index=index_name,
        mappings={"dynamic": False, "properties": {"@timestamp": {"type": "date"}}},
    )
    es.index(
        index=index_name,
        id="before",
        refresh=True,
        document={"@timestamp": NOW.isoformat(), "event": {"category": "authentication"}},
    )
    es.indices.put_mapping(
        index=index_name, properties={"event": {"properties": {"category": keyword()}}}
    )
    wanted = [match(event__category="authentication")]

    assert taken(es, index_name, wanted, push=True) == {"before"}


@pytest.mark.parametrize(
    ("mapping", "unsafe"),
    [
        ({}, False),
        ({"dynamic": "false"}, True),
        ({"dynamic": "strict"}, False),
        ({"dynamic": "runtime"}, True),
        # The nearest enclosing object's setting holds.
        ({"dynamic": "false", "properties": {"event": {"dynamic": "true"}}}, False),
        ({"properties": {"event": {"dynamic": False}}}, True),
    ],
    ids=["default", "false", "strict", "runtime", "object-true", "object-false"],
)
def test_fields_under_objects_that_do_not_map_new_fields_stay_with_the_agent(
    mapping: dict[str, Any], unsafe: bool
) -> None:
    found = unsafe_fields({"logs-1": {"mappings": mapping}}, ["event.category"])

    assert (found == {"event.category"}) is unsafe


def test_a_time_field_the_node_cannot_sort_by_is_not_blamed_on_the_detectors_filters(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A second index of the pattern maps @timestamp as keyword: every page's sort fails.
    index_docs(es, f"{index_name}-1")
    mapping = {"@timestamp": keyword(), "event": {"properties": {"category": keyword()}}}
    es.indices.create(index=f"{index_name}-2", mappings={"properties": mapping})
    source = source_on(es, f"{index_name}-*", [match(event__category="web")])
    source.narrow()
    assert source.narrowed is not None  # both indices map the filter's field as keyword

    with caplog.at_level(logging.WARNING, logger="nis2triage.pushdown"):
        read = {e.index for batch in source.poll(Cursor()) for e in batch}

    # The index that cannot be sorted is left out (`Source.leave_out_mistyped`), the
    # narrowing kept: the first index's events its filter takes are read.
    assert source.narrowing is not None and source.narrowing.refused is None
    assert source.mistyped == [f"{index_name}-2"]
    assert read == {f"{index_name}-1"}


def test_replay_counts_and_reads_unfiltered_when_the_node_refuses_the_narrowed_count(
    es: Elasticsearch, index_name: str
) -> None:
    index_docs(es, index_name)
    es.indices.put_settings(index=index_name, settings={"index.max_terms_count": 2})
    wanted = match(event__category=["authentication", "web", "other"])
    source = source_on(es, index_name, [wanted])

    in_range, to_read = count_events(es, {"s": source}, NOW - timedelta(hours=1), NOW)

    assert in_range == to_read == len(DOCS)
    assert source.narrowing is not None and source.narrowing.refused


def test_the_log_line_stays_short_whatever_the_filters() -> None:
    many = {f"d{i}": match(event__category=f"c{i}") for i in range(1000)}
    found = fields({"event.category": KEYWORD, "u": KEYWORD})

    said = described(many, found)
    empty = described(by_name(match(u="")), found)
    long = described(by_name(match(u="x" * 14_000)), found)

    assert said is not None and len(said) < 600 and said.endswith("more clauses)")
    assert empty == '(u in [""])'
    assert long == f'(u in ["{"x" * 40}"... (14,000 characters)])'


def test_a_key_under_a_flattened_field_is_not_said_unmapped(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The node lists no field labels.env under a flattened `labels`, yet the detector
    # reads it from the events and takes them: said as "the detector takes none".
    mapping = {"properties": {"@timestamp": {"type": "date"}, "labels": {"type": "flattened"}}}
    es.indices.create(index=index_name, mappings=mapping)
    for i, env in enumerate(("prod", "test")):
        doc = {"@timestamp": (NOW - timedelta(minutes=10 - i)).isoformat(), "labels": {"env": env}}
        es.index(index=index_name, id=env, document=doc, refresh=True)

    with caplog.at_level(logging.WARNING, logger="nis2triage.pushdown"):
        read_ids = read(es, index_name, [match(labels__env="prod")])

    assert read_ids == ["prod", "test"]  # the agent judges the filter itself
    assert "no index of the source maps" not in caplog.text
