"""Putting a generated stream into Elasticsearch once, and reusing it while its spec is unchanged.

The index records the spec it was made from in its mapping's `_meta`, so a
second `make bench` at the same scale skips the load (minutes at 10 million
events) and every measurement reads the very same documents.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

from elasticsearch import Elasticsearch, helpers

from nis2triage.bench.stream import Doc, StreamSpec, generate

log = logging.getLogger(__name__)
CHUNK = 2_000

_KEYWORDS = ("category", "action", "outcome", "dataset", "code", "kind", "type", "module")
# Raised with every change below: an index loaded with an older mapping is loaded again.
MAPPING_VERSION = 2
STREAM_MAPPING: dict[str, Any] = {
    # Every field the generator writes is mapped, and an event with another is refused: an
    # index that keeps unmapped fields in _source only (`dynamic: false`) could hold values
    # its index never saw, so the agent would not ask the node to filter on them (see
    # `pushdown`). Version 1 had `dynamic: false`, with two fields left unmapped.
    "dynamic": "strict",
    "properties": {
        "@timestamp": {"type": "date"},
        "event": {"properties": {f: {"type": "keyword"} for f in _KEYWORDS}},
        "host": {"properties": {"name": {"type": "keyword"}}},
        "user": {"properties": {"name": {"type": "keyword"}}},
        "source": {
            "properties": {
                "ip": {"type": "ip"},
                "port": {"type": "integer"},
                "bytes": {"type": "long"},
            }
        },
        "destination": {"properties": {"ip": {"type": "ip"}, "port": {"type": "integer"}}},
        "network": {
            "properties": {"direction": {"type": "keyword"}, "transport": {"type": "keyword"}}
        },
        "cloud": {"properties": {"provider": {"type": "keyword"}, "region": {"type": "keyword"}}},
        "system": {
            "properties": {
                "auth": {
                    "properties": {
                        "ssh": {
                            "properties": {
                                "event": {"type": "keyword"},
                                "method": {"type": "keyword"},
                                "invalid_user": {"type": "boolean"},
                            }
                        }
                    }
                }
            }
        },
    },
}


def spec_meta(spec: StreamSpec) -> dict[str, Any]:
    meta = json.loads(json.dumps(asdict(spec), default=str))
    return {**meta, "mapping_version": MAPPING_VERSION}


def holds(es: Elasticsearch, index: str, spec: StreamSpec) -> bool:
    """Whether `index` already holds exactly the stream of `spec`."""
    if not es.indices.exists(index=index):
        return False
    mapping = es.indices.get_mapping(index=index)[index]["mappings"]
    if mapping.get("_meta", {}).get("stream") != spec_meta(spec):
        return False
    return int(es.count(index=index)["count"]) == spec.events


def load(es: Elasticsearch, index: str, spec: StreamSpec) -> float:
    """(Re)create `index` with the stream of `spec`; the indexing rate in events per second."""
    es.options(ignore_status=404).indices.delete(index=index)
    mappings = {**STREAM_MAPPING, "_meta": {"stream": spec_meta(spec)}}
    # No refreshes and no replica while loading: the load is set-up, not what is measured.
    settings = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"}
    es.indices.create(index=index, mappings=mappings, settings=settings)

    started = time.perf_counter()
    indexed = bulk_index(es, index, generate(spec))
    seconds = time.perf_counter() - started

    es.indices.put_settings(index=index, settings={"refresh_interval": "1s"})
    es.indices.refresh(index=index)
    log.info("indexed %d events in %.0f s (%.0f/s)", indexed, seconds, indexed / seconds)
    return indexed / seconds


def bulk_index(es: Elasticsearch, index: str, docs: Iterable[Doc]) -> int:
    """Index `docs` with two bulk threads; every rejection is an error, not a silent gap."""
    indexed = 0
    for ok, item in helpers.parallel_bulk(
        es, _actions(index, docs), thread_count=2, chunk_size=CHUNK, queue_size=4
    ):
        if not ok:
            raise RuntimeError(f"bulk indexing into {index} failed: {item}")
        indexed += 1
        if indexed % 1_000_000 == 0:
            log.info("indexed %d events", indexed)
    return indexed


def _actions(index: str, docs: Iterable[Doc]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        yield {"_index": index, "_source": doc}


def ensure(es: Elasticsearch, index: str, spec: StreamSpec) -> float | None:
    """Load the stream unless the index already holds it; the indexing rate when it loaded."""
    if holds(es, index, spec):
        log.info("%s already holds the %d-event stream; reusing it", index, spec.events)
        return None
    return load(es, index, spec)
