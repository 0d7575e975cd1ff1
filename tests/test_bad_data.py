"""Malformed documents never stop the agent; what it cannot use is set aside and counted.

Hypothesis throws documents at the processing path (every shipped detector's
ingest, bucket closing, alert documents serialised as the client would send
them): wrong types, nulls, missing fields, megabyte strings, deep nesting,
lone surrogates, odd numbers. A second test indexes a batch of them in the
real node and runs the real agent over them.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nis2triage import esclient
from nis2triage.agent import Agent
from nis2triage.config import load_config
from nis2triage.detectors import Detector, load_spec
from nis2triage.records import Event
from nis2triage.store import alert_document

from support import DETECTORS, run_agent, write_agent_config

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
# Every shipped detector, the network ones in their own folder included.
SPECS = [load_spec(p) for p in sorted(DETECTORS.rglob("*.yml"))]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),
    st.sampled_from(
        ["x" * 1_500_000, "root", "203.0.113.9", "::1", "authentication", "failure", "network"]
    ),
    st.just("outbound"),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ecs_keys = st.sampled_from(
    [
        *("source", "user", "event", "host", "related", "system", "source.ip", "user.name"),
        *("network", "destination", "source.bytes"),
    ]
)
inner_keys = st.sampled_from(
    ["ip", "name", "category", "outcome", "auth", "ssh", "event", "direction", "bytes"]
)
documents = st.dictionaries(
    ecs_keys, st.one_of(values, st.dictionaries(inner_keys, values, max_size=4)), max_size=6
)


def deep(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        doc = {"source": doc}
    return doc


def process(docs: list[dict[str, Any]]) -> int:
    """The agent's per-event path; returns how many alerts came out (all serialisable)."""
    detectors = [Detector(s) for s in SPECS]
    for i, doc in enumerate(docs):
        event = Event.at("idx", str(i), T0 + timedelta(seconds=i), doc)
        for detector in detectors:
            detector.ingest(event)
    alerts = [a for d in detectors for a in d.close(2**62, "idx")]
    for alert in alerts:
        json.dumps(alert_document(alert)).encode("utf-8")
    return len(alerts)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents, min_size=1, max_size=5))
def test_malformed_documents_never_break_the_processing_path(docs: list[dict[str, Any]]) -> None:
    assert process(docs) >= 0


def test_deep_nesting_and_huge_values_are_bounded() -> None:
    doc = {**deep(5000), "user": {"name": "u" * 2_000_000}, "event": {"category": "authentication"}}

    assert process([doc]) == 0


@pytest.mark.usefixtures("agent_env")
def test_the_real_agent_reads_every_malformed_document_it_is_given(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # `dynamic: false`: the node keeps any _source, as a real cluster with a strict template
    # would keep what its pipelines let through; only @timestamp is parsed.
    es.indices.create(
        index=index_name,
        mappings={"dynamic": False, "properties": {"@timestamp": {"type": "date"}}},
    )
    samples = [
        {"@timestamp": (datetime.now(UTC) - timedelta(hours=2, seconds=i)).isoformat(), **d}
        for i, d in enumerate(_samples())
    ]
    ok, errors = helpers.bulk(
        es, ({"_index": index_name, "_source": d} for d in samples), refresh=True
    )
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")

    report = run_agent(config, es)

    assert (ok, errors) == (len(samples), [])
    assert report.events == len(samples)
    es.indices.refresh(index=f"{index_name}-st-deadletter")
    dead = es.count(index=f"{index_name}-st-deadletter")["count"]
    assert dead == report.dead_letters


def _samples() -> list[dict[str, Any]]:
    """Hand-picked hostile documents, the kinds the property test generates."""
    return [
        {"source": {"ip": ["a", {"b": None}]}, "event": {"outcome": "failure"}},
        {"source.ip": None, "user": "not-an-object"},
        {"user": {"name": "\ud800\udfff\ud800"}, "event": {"category": ["authentication"]}},
        {"user": {"name": "x" * 1_000_000}, "event": {"category": "authentication"}},
        deep(200),
        {"event": {"category": "authentication", "outcome": 12}, "user": {"name": 3.5e300}},
        {"system": {"auth": {"ssh": {"event": ["Failed"], "method": {"password": True}}}}},
        {},
    ]


@pytest.mark.usefixtures("agent_env")
@pytest.mark.parametrize("when", ["-1000-01-01T00:00:00Z", "0000-06-01T00:00:00Z"])
def test_an_event_time_python_cannot_hold_is_set_aside_not_a_crash(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path, when: str
) -> None:
    # Elasticsearch stores these dates; Python's datetime has no year before 1.
    es.indices.create(index=index_name, mappings={"properties": {"@timestamp": {"type": "date"}}})
    recent = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    es.index(index=index_name, id="ancient", document={"@timestamp": when}, refresh=True)
    es.index(index=index_name, id="fine", document={"@timestamp": recent}, refresh=True)
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")

    first, second = run_agent(config, es), run_agent(config, es)

    es.indices.refresh(index=f"{index_name}-st-deadletter")
    [dead] = es.search(index=f"{index_name}-st-deadletter")["hits"]["hits"]
    assert (first.events, first.dead_letters, second.events, second.dead_letters) == (1, 1, 0, 0)
    assert dead["_source"]["event"] == {"index": index_name, "id": "ancient"}
    assert dead["_source"]["reason"].startswith("source auth: unusable event: event time ")


@pytest.mark.usefixtures("agent_env")
@pytest.mark.parametrize(
    ("earlier", "reason"),
    [
        (timedelta(days=1), "@timestamp holds 2 times; an event needs one"),
        # Sorted by a time Python cannot hold, it was set aside again at every poll.
        (timedelta(days=365 * 3000), "event time "),
    ],
    ids=["a-day-before", "before-year-1"],
)
def test_an_event_with_several_times_is_set_aside_once_not_read_by_every_poll(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    earlier: timedelta,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The range matches it by its recent time while it sorts by its old one.
    es.indices.create(index=index_name, mappings={"properties": {"@timestamp": {"type": "date"}}})
    now = datetime.now(UTC)
    old_ms = int((now.timestamp() - earlier.total_seconds()) * 1000)
    times = [old_ms, (now - timedelta(minutes=2)).isoformat()]
    es.index(index=index_name, id="twice", document={"@timestamp": times}, refresh=True)
    es.index(index=index_name, id="fine", document={"@timestamp": times[1]}, refresh=True)
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")

    polls = [run_agent(config, es)]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nis2triage.agent"):
        polls += [run_agent(config, es) for _ in range(2)]

    es.indices.refresh(index=f"{index_name}-st-deadletter")
    [dead] = es.search(index=f"{index_name}-st-deadletter")["hits"]["hits"]
    assert [(p.events, p.dead_letters) for p in polls] == [(1, 1), (0, 0), (0, 0)]
    assert dead["_source"]["event"] == {"index": index_name, "id": "twice"}
    assert reason in dead["_source"]["reason"]
    # Not read again: the set-aside warning is not repeated by the later polls.
    assert "set aside" not in caplog.text


@pytest.mark.usefixtures("agent_env")
def test_an_index_without_source_gives_dead_letters_not_a_crash(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    mappings = {"_source": {"enabled": False}, "properties": {"@timestamp": {"type": "date"}}}
    es.indices.create(index=index_name, mappings=mappings)
    recent = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    es.index(index=index_name, id="bare", document={"@timestamp": recent}, refresh=True)
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")

    first, second = run_agent(config, es), run_agent(config, es)

    es.indices.refresh(index=f"{index_name}-st-deadletter")
    [dead] = es.search(index=f"{index_name}-st-deadletter")["hits"]["hits"]
    assert (first.events, first.dead_letters, second.dead_letters) == (0, 1, 0)
    assert "has no _source (its index's mapping disables it)" in dead["_source"]["reason"]


@pytest.mark.usefixtures("agent_env")
def test_a_null_in_a_list_names_no_entity_nor_a_distinct_value(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # The node keeps no null of an array (`source.ip: [null]` holds no address). Read as the
    # text "None", such events all went into one made-up entity of that name, and the null
    # of `user.name: [null, "root"]` counted as a second account tried.
    es.indices.create(index=index_name, mappings={"properties": {"@timestamp": {"type": "date"}}})
    when = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    failed = {
        "@timestamp": when,
        "event": {"category": "authentication", "outcome": "failure"},
        "system": {"auth": {"ssh": {"event": "Failed", "method": "password"}}},
    }
    docs = [
        {**failed, "source": {"ip": [None]}, "user": {"name": "admin"}},
        {**failed, "source": {"ip": [None, "203.0.113.9"]}, "user": {"name": [None, "root"]}},
        {**failed, "source": {"ip": "203.0.113.9"}, "user": {"name": [None]}},
    ]
    helpers.bulk(es, ({"_index": index_name, "_source": d} for d in docs), refresh=True)
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    agent = Agent(load_config(config), es, b"test-snapshot-key-0123456789abcdef", b"pseudonym-k")
    agent.start()

    report = agent.run_once()

    detectors = {d.spec.name: d for run in agent.runs for d in run.detectors}
    ssh, per_user = detectors["ssh-brute-force"], detectors["auth-volume-per-user"]
    [bucket] = ssh.table.open["203.0.113.9"].values()
    assert report.events == 3
    assert (list(ssh.table.open), ssh.missing_entity) == (["203.0.113.9"], 1)
    assert bucket.distinct["users"] == {"root"}
    assert (sorted(per_user.table.open), per_user.missing_entity) == (["admin", "root"], 1)


@pytest.mark.usefixtures("agent_env")
@pytest.mark.parametrize("written", [True, "true"], ids=["json-true", "text-true"])
def test_a_boolean_written_as_text_meets_a_filter_on_true(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    written: bool | str,
) -> None:
    # The node indexes "true" in a boolean field as true, and Kibana and the node's query
    # find it so; the agent compared the text "true" with "True" and left it out of the
    # SSH detector's share of invalid accounts.
    mappings = {
        "properties": {
            "@timestamp": {"type": "date"},
            "system.auth.ssh.invalid_user": {"type": "boolean"},
        }
    }
    es.indices.create(index=index_name, mappings=mappings)
    doc = {
        "@timestamp": (datetime.now(UTC) - timedelta(seconds=30)).isoformat(),
        "event": {"category": "authentication", "outcome": "failure"},
        "source": {"ip": "203.0.113.9"},
        "system": {
            "auth": {"ssh": {"event": "Failed", "method": "password", "invalid_user": written}}
        },
    }
    es.index(index=index_name, document=doc, refresh=True)
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    agent = Agent(load_config(config), es, b"test-snapshot-key-0123456789abcdef", b"pseudonym-k")
    agent.start()

    agent.run_once()

    [ssh] = [d for run in agent.runs for d in run.detectors if d.spec.name == "ssh-brute-force"]
    [bucket] = ssh.table.open["203.0.113.9"].values()
    assert (bucket.events, bucket.counts.get("invalid_share")) == (1, 1)
