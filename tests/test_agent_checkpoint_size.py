"""A checkpoint larger than Elasticsearch takes in one request stops the agent, saying why.

A source's checkpoint (cursor and models) is one document sent in one request. Past the
node's `http.max_content_length` (100 MB by default) the node answers 413 to every
attempt; the loop used to take that for an outage, go back to the last checkpoint and
replay the source for ever, saying "Elasticsearch answered 413 (None)" once.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from test_agent_restart import index_part

from nis2triage import esclient
from nis2triage.agent import Agent
from nis2triage.config import load_config
from nis2triage.snapshots import SnapshotTooLarge
from nis2triage.store import DEFAULT_REQUEST_LIMIT, Store, byte_size

from support import real_log_docs, write_agent_config


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
    assert agent.request_limit == 100 * 1024 * 1024


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
    agent.request_limit = int(len(str(size["_source"]).encode()) * 1.1)
    with caplog.at_level(logging.WARNING, logger="nis2triage.agent"):
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
