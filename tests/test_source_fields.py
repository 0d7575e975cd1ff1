"""A source asks the node only for the fields its detectors read."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers

from nis2triage import esclient
from nis2triage.agent import Agent
from nis2triage.config import SourceConfig, load_config
from nis2triage.demo import index_docs
from nis2triage.detectors import DetectorSpec, fields_read
from nis2triage.features import Match, get_field
from nis2triage.source import Cursor, Source

from support import real_log_docs, write_agent_config

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
EVIDENCE = ["source.ip", "related.ip", "user.name", "related.user", "host.name", "host.hostname"]


def spec(**given: Any) -> DetectorSpec:
    return DetectorSpec.model_validate(
        {"name": "d", "source": "s", "model": [{"anomaly.HalfSpaceTrees": {}}], **given}
    )


def test_the_fields_read_are_those_of_filters_entities_features_and_evidence() -> None:
    one = spec(
        filter={"all_of": {"event.outcome": "failure"}, "none_of": {"tags": "x"}, "exists": ["a"]},
        entity="destination.ip",
        features=[
            {"name": "n", "kind": "count", "where": {"all_of": {"event.code": 4625}}},
            {"name": "b", "kind": "sum", "field": "source.bytes"},
        ],
    )
    other = spec(entity="user.name", features=[{"name": "u", "kind": "distinct", "field": "url"}])

    assert fields_read([one, other]) == [
        *EVIDENCE,
        "a",
        "event.outcome",
        "tags",
        "destination.ip",
        "event.code",
        "source.bytes",
        "url",
    ]


def test_each_event_holds_the_fields_asked_in_every_form_and_nothing_else(
    es: Elasticsearch, index_name: str
) -> None:
    ts = (NOW - timedelta(minutes=5)).isoformat()
    docs = [
        {"source": {"ip": "10.0.0.1", "port": 22}, "message": "m" * 5000},
        {"source.ip": "10.0.0.2", "source.port": 22},
        {"system": {"auth.ssh": {"method": "password"}}, "system.auth": {"ssh.event": "Failed"}},
        {"user": {"name": ["a", "b"], "id": 7}, "related": {"ip": ["10.0.0.3"]}},
    ]
    actions = (
        {"_index": index_name, "_id": str(n), "@timestamp": ts, **d} for n, d in enumerate(docs)
    )
    helpers.bulk(es, actions, refresh=True)
    fields = [
        "source.ip",
        "system.auth.ssh.method",
        "system.auth.ssh.event",
        "user.name",
        "related.ip",
    ]
    cfg = SourceConfig(name="s", indices=[index_name], batch_size=10)

    read = Source(es, cfg, clock=lambda: NOW, fields=fields).poll(Cursor())

    by_id = {e.id: e.doc for batch in read for e in batch}
    assert by_id == {
        "0": {"@timestamp": ts, "source": {"ip": "10.0.0.1"}},
        "1": {"@timestamp": ts, "source.ip": "10.0.0.2"},
        "2": {
            "@timestamp": ts,
            "system": {"auth.ssh": {"method": "password"}},
            "system.auth": {"ssh.event": "Failed"},
        },
        "3": {"@timestamp": ts, "user": {"name": ["a", "b"]}, "related": {"ip": ["10.0.0.3"]}},
    }


@pytest.fixture
def padded(es: Elasticsearch, index_name: str) -> tuple[str, str]:
    """The real SSH log twice: as it is, and each event with 20 kB no detector reads."""
    docs = real_log_docs()
    index_docs(es, index_name, docs)
    index_docs(es, f"{index_name}-padded", [{**d, "winlog": {"xml": "x" * 20_000}} for d in docs])
    return index_name, f"{index_name}-padded"


def test_fields_no_detector_reads_change_no_alert_and_are_not_read(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    tmp_path: Path,
    padded: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NIS2TRIAGE_TEST_ES_PASSWORD", es_settings.password or "")
    alerts, sizes = [], []
    for index in padded:
        config = load_config(
            write_agent_config(tmp_path / index, es_settings, index, f"{index}-st")
        )
        agent = Agent(config, es, b"k" * 32, b"p" * 32)
        agent.start()
        report = agent.run_once()
        alerts.append(sorted((a.name, a.entity, a.start, round(a.score, 9)) for a in report.alerts))
        sizes.append([(run.source.fit.size, run.source.fit.per_hit) for run in agent.runs])

    assert alerts[0] == alerts[1] and len(alerts[0]) > 0
    # Each padded event would otherwise be read at 20 kB; it is read at under 1 kB, as
    # the plain ones are (their index names differ in length).
    assert [size for size, _ in sizes[0]] == [size for size, _ in sizes[1]] == [250]
    assert [per_hit < 1000 for _, per_hit in sizes[0] + sizes[1]] == [True, True]


def test_an_index_keeping_no_source_makes_the_source_read_whole_documents_said_once(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    ts = (NOW - timedelta(minutes=5)).isoformat()
    # Keyword, so that the node is asked for the detector's filter too.
    fields = {"@timestamp": {"type": "date"}, "event.outcome": {"type": "keyword"}}
    es.indices.create(index=f"{index_name}-full", mappings={"properties": fields})
    bare = {"_source": {"enabled": False}, "properties": fields}
    es.indices.create(index=f"{index_name}-bare", mappings=bare)
    for index, doc_id in ((f"{index_name}-bare", "bare"), (f"{index_name}-full", "full")):
        doc = {"@timestamp": ts, "event": {"outcome": "failure"}, "message": "m"}
        es.index(index=index, id=doc_id, document=doc, refresh=True)
    cfg = SourceConfig(name="s", indices=[f"{index_name}-*"], batch_size=10)
    filters = {"d": Match(all_of={"event.outcome": "failure"})}
    source = Source(es, cfg, lambda: NOW, filters, ["event.outcome"])

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        events = [e for batch in source.poll(Cursor()) for e in batch]

    assert [(e.id, e.doc["message"]) for e in events] == [("full", "m")]
    assert [u.id for u in source.take_unusable()] == ["bare"]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "source s: an index it reads keeps no _source" in said[0]
    assert f"_source is disabled in the mappings for index [{index_name}-bare]" in said[0]
    # The refusal is not blamed on the detectors' filters, which the node still applies.
    assert source.fields is None and source.narrowed is not None


def test_a_field_named_with_a_backslash_before_a_dot_is_read(
    es: Elasticsearch, index_name: str
) -> None:
    # The node reads `\.` in an include as an escaped dot, and kept neither key.
    ts = (NOW - timedelta(minutes=5)).isoformat()
    doc = {"@timestamp": ts, "a\\.b": "one", "x": {"y\\.z": "two"}, "message": "m"}
    es.index(index=index_name, id="0", document=doc, refresh=True)
    cfg = SourceConfig(name="s", indices=[index_name], batch_size=10)

    read = Source(es, cfg, clock=lambda: NOW, fields=["a\\.b", "x.y\\.z"]).poll(Cursor())

    (event,) = [e for batch in read for e in batch]
    assert [get_field(event.doc, f) for f in ("a\\.b", "x.y\\.z")] == ["one", "two"]


def test_whole_documents_once_needed_are_still_read_after_a_restore(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    tmp_path: Path,
    index_name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("NIS2TRIAGE_TEST_ES_PASSWORD", es_settings.password or "")
    mappings = {"_source": {"enabled": False}, "properties": {"@timestamp": {"type": "date"}}}
    es.indices.create(index=index_name, mappings=mappings)
    recent = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    es.index(index=index_name, id="bare", document={"@timestamp": recent}, refresh=True)
    config = load_config(write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st"))
    agent = Agent(config, es, b"k" * 32, b"p" * 32)
    agent.start()

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        agent.run_once()
        # As after an outage: every source rebuilt from its checkpoint.
        agent.restore_all()
        agent.run_once()

    assert [run.source.fields for run in agent.runs] == [None]
    said = [r for r in caplog.records if "keeps no _source" in r.getMessage()]
    assert len(said) == 1


def test_an_index_keeping_no_source_and_one_mistyped_in_one_pattern_are_both_handled(
    es: Elasticsearch, index_name: str
) -> None:
    # Each refusal has its own remedy; a poll that met both used to raise the second.
    ts = (NOW - timedelta(minutes=5)).isoformat()
    timed = {"@timestamp": {"type": "date"}}
    es.indices.create(index=f"{index_name}-full", mappings={"properties": timed})
    es.indices.create(
        index=f"{index_name}-bare", mappings={"_source": {"enabled": False}, "properties": timed}
    )
    es.indices.create(
        index=f"{index_name}-text", mappings={"properties": {"@timestamp": {"type": "keyword"}}}
    )
    for name in ("full", "bare", "text"):
        doc = {"@timestamp": ts, "message": name}
        es.index(index=f"{index_name}-{name}", id=name, document=doc, refresh=True)
    cfg = SourceConfig(name="s", indices=[f"{index_name}-*"], batch_size=10)
    source = Source(es, cfg, lambda: NOW, fields=["message"])

    events = [e for batch in source.poll(Cursor()) for e in batch]

    assert [(e.id, e.doc["message"]) for e in events] == [("full", "full")]
    assert [u.id for u in source.take_unusable()] == ["bare"]
    assert source.mistyped == [f"{index_name}-text"] and source.fields is None
