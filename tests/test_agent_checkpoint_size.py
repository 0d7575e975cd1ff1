"""A checkpoint larger than Elasticsearch takes in one request stops the agent, saying why.

A source's checkpoint (cursor and models) is one document sent in one request. Past the
node's `http.max_content_length` (100 MB by default) the node answers 413 to every
attempt; the loop used to take that for an outage, go back to the last checkpoint and
replay the source for ever, saying "Elasticsearch answered 413 (None)" once.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch
from test_agent_restart import index_part

from nis2triage import esclient, snapshots
from nis2triage.agent import Agent
from nis2triage.config import load_config
from nis2triage.snapshots import SnapshotTooLarge
from nis2triage.source import Cursor, event_key
from nis2triage.store import DEFAULT_REQUEST_LIMIT, Store, byte_size

from ccb_server import running_ccb
from support import REPO, real_log_docs, write_agent_config


def make_agent(
    es: Elasticsearch, es_settings: esclient.ESSettings, index: str, tmp_path: Path
) -> Agent:
    index_part(es, index, real_log_docs(), 0)
    config = write_agent_config(tmp_path, es_settings, index, f"{index}-st")
    return Agent(load_config(config), es, b"k" * 32, b"p" * 32)


def test_the_limit_is_read_from_the_node(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    agent = Agent(load_config(config), es, b"k" * 32, b"p" * 32)
    agent.start()

    # The test node sets no http.max_content_length: Elasticsearch's default, 100 MiB.
    assert agent.states.request_limit == 100 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "size"),
    [("100mb", 104_857_600), ("2GB", 2 * 1024**3), ("512kb", 524_288), ("4096", 4096)],
)
def test_elasticsearch_byte_sizes(text: str, size: int) -> None:
    assert byte_size(text, 1) == size


def test_a_byte_size_that_is_not_one_gives_the_default() -> None:
    assert byte_size("a lot", DEFAULT_REQUEST_LIMIT) == DEFAULT_REQUEST_LIMIT


@pytest.mark.usefixtures("agent_env")
def test_a_checkpoint_over_the_limit_stops_the_loop_naming_what_to_change(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The real node's limit is 100 MiB; a node configured with 50 kB stands in for a
    # checkpoint grown past it (the detectors' state alone is larger here).
    monkeypatch.setattr(Store, "request_limit", lambda self: 50_000)
    agent = make_agent(es, es_settings, index_name, tmp_path)
    # Were the loop to retry, it would never end: the watchdog stops it, and fails the test.
    watchdog = threading.Timer(90, lambda: setattr(agent, "stopping", True))
    watchdog.start()
    try:
        with pytest.raises(SnapshotTooLarge) as raised:
            agent.run_forever()
    finally:
        watchdog.cancel()

    said = str(raised.value)
    assert "source auth: its checkpoint is " in said
    assert "over the 49 kB Elasticsearch takes in one request (http.max_content_length)" in said
    assert "detector ssh-brute-force" in said and "detector auth-volume-per-user" in said
    assert "Lower max_entities" in said and "max_lateness" in said
    assert not agent.stopping
    # Nothing half-saved: no checkpoint was written.
    saved = es.options(ignore_status=404).get(index=f"{index_name}-st-state", id="source-auth")
    assert saved["found"] is False


@pytest.mark.usefixtures("agent_env")
def test_the_reports_of_alerts_written_before_a_checkpoint_too_large_are_sent_before_it_stops(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The stop came before the cycle's delivery, and every restart stops there again: the
    # early warnings stayed pending, unsent and unescalated, until a cap was lowered.
    monkeypatch.setattr(Store, "request_limit", lambda self: 50_000)
    index_part(es, index_name, real_log_docs(), 0)
    with running_ccb() as ccb:
        notifier = {"mode": "send", "endpoint": ccb.url, "timeout": "2s", "deadline": "5s"}
        prefix = f"{index_name}-st"
        config = write_agent_config(tmp_path, es_settings, index_name, prefix, notifier)
        agent = Agent(load_config(config), es, b"k" * 32, b"p" * 32, token="tok")
        agent.start()
        with pytest.raises(SnapshotTooLarge):
            agent.run_once()

    es.indices.refresh(index=f"{prefix}-outbox")
    entries = es.search(index=f"{prefix}-outbox", size=100)["hits"]["hits"]
    assert entries and Counter(e["_source"]["status"] for e in entries) == {"sent": len(entries)}
    assert sorted(ccb.idempotency_keys) == sorted(e["_id"] for e in entries)


@pytest.mark.usefixtures("agent_env")
def test_a_checkpoint_near_the_limit_is_said_once(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = make_agent(es, es_settings, index_name, tmp_path)
    agent.start()
    agent.run_once()
    size = es.get(index=f"{index_name}-st-state", id="source-auth")
    assert size["found"]

    # Just above the checkpoint's size: saved, but said to be near the limit.
    agent.states.request_limit = int(len(str(size["_source"]).encode()) * 1.1)
    with caplog.at_level(logging.WARNING, logger="nis2triage.checkpoints"):
        agent.run_once()
        agent.run_once()

    near = [r.getMessage() for r in caplog.records if "of the " in r.getMessage()]
    assert len(near) == 1
    assert near[0].startswith("source auth: its checkpoint is ")
    assert "Largest: detector " in near[0]


@pytest.mark.usefixtures("agent_env")
def test_the_seen_keys_are_saved_once_in_the_signed_snapshot(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    agent = make_agent(es, es_settings, index_name, tmp_path)
    agent.start()
    agent.run_once()
    seen = dict(agent.runs[0].cursor.seen)
    assert seen  # the log's last five minutes

    plain = es.get(index=f"{index_name}-st-state", id="source-auth")["_source"]["cursor"]
    assert plain == {
        "watermark_ms": agent.runs[0].cursor.watermark_ms,
        "seen_keys": len(seen),
        "events": agent.runs[0].cursor.events,
    }
    restarted = make_agent(es, es_settings, index_name, tmp_path)
    restarted.start()
    assert restarted.runs[0].cursor.seen == seen


def burst(events: int) -> Cursor:
    """The cursor after `events` read inside the lateness margin, one a millisecond."""
    cursor = Cursor()
    for n in range(events):
        cursor.mark(event_key("logs-system.auth-default", f"doc{n}"), 1_796_400_000_000 + n)
    return cursor


def test_a_burst_inside_the_margin_takes_27_bytes_of_checkpoint_an_event() -> None:
    cursor = burst(100_000)

    # Pickled as a dict, each key took about 47 bytes: 2 million events inside the margin
    # then filled Elasticsearch's whole request limit by themselves.
    assert snapshots.sealed_size(cursor.to_dict()) / 100_000 < 28


def test_packed_seen_keys_come_back_in_their_order() -> None:
    cursor = burst(1_000)
    cursor.seen[event_key("late", "one")] = 1_796_399_000_000  # read late, out of time order

    again = Cursor.from_dict(cursor.to_dict())

    assert list(again.seen.items()) == list(cursor.seen.items())
    assert (again.watermark_ms, again.events) == (cursor.watermark_ms, cursor.events)


def test_a_snapshot_saved_before_the_keys_were_packed_still_restores() -> None:
    cursor = burst(10)
    older = {"watermark_ms": cursor.watermark_ms, "seen": dict(cursor.seen), "events": 10}

    assert Cursor.from_dict(older).seen == cursor.seen


def test_keys_that_are_not_event_keys_are_kept_as_they_are() -> None:
    cursor = Cursor(seen={"k0": 1, "ab cd": 2})

    assert Cursor.from_dict(cursor.to_dict()).seen == {"k0": 1, "ab cd": 2}


@pytest.mark.usefixtures("agent_env")
def test_rules_state_over_the_limit_stops_the_agent_naming_the_largest_rule(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Saved with a plain put, it was refused (413) at every cycle, which the loop took for
    # an outage for ever. The sources' checkpoints are let through here: they are larger.
    rule = yaml.safe_load((REPO / "rules" / "detection" / "ssh-brute-force.yml").read_text())
    rule["index"] = index_name
    (tmp_path / "rule.yml").write_text(yaml.safe_dump(rule))
    index_part(es, index_name, real_log_docs(), 0)
    rules = {"native": [str(tmp_path / "rule.yml")], "initial_lookback": "3d"}
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st", rules=rules)
    agent = Agent(load_config(config), es, b"k" * 32, b"p" * 32)
    agent.start()
    guarded = agent.states.put

    def rules_guarded(doc_id: str, doc: dict[str, Any], named: Any) -> None:
        if doc_id == "rules":
            guarded(doc_id, doc, named)
        else:
            agent.store.put("state", doc_id, doc, refresh=True)

    monkeypatch.setattr(agent.states, "put", rules_guarded)
    agent.states.request_limit = 300

    with pytest.raises(SnapshotTooLarge) as raised:
        agent.run_once()

    said = str(raised.value)
    assert said.startswith("the rules' state is ")
    assert "over the 300 B Elasticsearch takes in one request" in said
    assert "rule 'SSH brute force from one address'" in said and "query_key" in said
    saved = es.options(ignore_status=404).get(index=f"{index_name}-st-state", id="rules")
    assert saved["found"] is False
