"""Everything nis2triage writes to Elasticsearch: its own indices and their mappings.

Every document has a deterministic `_id`; alerts, outbox entries and
containment requests are created with `op_type=create`, so a batch replayed
after a crash finds them already there and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from elasticsearch import ApiError, Elasticsearch, helpers

from nis2triage.errors import StoreError
from nis2triage.faults import crash_point
from nis2triage.features import is_ip
from nis2triage.records import SEVERITY_RANK, Alert

log = logging.getLogger(__name__)

KEYWORD = {"type": "keyword", "ignore_above": 1024}
DATE = {"type": "date"}

ALERT_MAPPING: dict[str, Any] = {
    "dynamic": "false",
    "properties": {
        "@timestamp": DATE,
        "message": {"type": "text"},
        "tags": KEYWORD,
        "event": {
            "properties": {
                "kind": KEYWORD,
                "category": KEYWORD,
                "type": KEYWORD,
                "module": KEYWORD,
                "dataset": KEYWORD,
                "severity": {"type": "long"},
                "risk_score": {"type": "float"},
                "start": DATE,
                "end": DATE,
            }
        },
        "rule": {"properties": {"name": KEYWORD, "version": KEYWORD, "category": KEYWORD}},
        "related": {"properties": {"ip": {"type": "ip"}, "user": KEYWORD, "hosts": KEYWORD}},
        "source": {"properties": {"ip": {"type": "ip"}}},
        "user": {"properties": {"name": KEYWORD}},
        "host": {"properties": {"name": KEYWORD}},
        "nis2triage": {
            "properties": {
                "alert_id": KEYWORD,
                "kind": KEYWORD,
                "severity": KEYWORD,
                "score": {"type": "float"},
                "threshold": {"type": "float"},
                "entity": {"properties": {"field": KEYWORD, "value": KEYWORD}},
                "route": KEYWORD,
                "route_reason": {"type": "text"},
                "query": {"type": "text", "index": False},
                "index_pattern": KEYWORD,
                "hints": KEYWORD,
                "asset": KEYWORD,
                "service": KEYWORD,
                "evidence": {"type": "object", "enabled": False},
            }
        },
    },
}
STATE_MAPPING: dict[str, Any] = {
    "dynamic": "false",
    "properties": {
        "kind": KEYWORD,
        "source": KEYWORD,
        "updated": DATE,
        "cursor": {"type": "object", "enabled": False},
        "snapshot": {"type": "object", "enabled": False},
        "stats": {"type": "object", "enabled": False},
    },
}
OUTBOX_MAPPING: dict[str, Any] = {
    "dynamic": "false",
    "properties": {
        "kind": KEYWORD,
        "status": KEYWORD,
        "channel": KEYWORD,
        "entity_key": KEYWORD,
        "created": DATE,
        "window_end": DATE,
        "next_attempt": DATE,
        "attempts": {"type": "integer"},
        "alert_ids": KEYWORD,
        "last_error": {"type": "text"},
        "sent_at": DATE,
        "incident_id": KEYWORD,
        "stage": KEYWORD,
        "channels": KEYWORD,
        "deliveries": {"type": "object", "enabled": False},
        "payload": {"type": "object", "enabled": False},
    },
}
# Searchable fields for Kibana and the deadline watch; the rest is kept whole but not indexed.
# `next_due` is the earliest deadline of a report still owed: the dashboard sorts on it.
INCIDENT_MAPPING: dict[str, Any] = {
    "dynamic": "false",
    "properties": {
        "@timestamp": DATE,
        "id": KEYWORD,
        "title": {"type": "text"},
        "status": KEYWORD,
        "opened_at": DATE,
        "last_seen": DATE,
        "window_end": DATE,
        "aware_at": DATE,
        "closed_at": DATE,
        "next_due": DATE,
        "keys": KEYWORD,
        "alert_ids": KEYWORD,
        "alert_count": {"type": "integer"},
        "routes": KEYWORD,
        "assets": {"properties": {"name": KEYWORD, "service": KEYWORD, "criticality": KEYWORD}},
        "services": KEYWORD,
        "pending": KEYWORD,
        "overdue": KEYWORD,
        "open_reports": KEYWORD,
        "significance": {"properties": {"verdict": KEYWORD, "entity_kind": KEYWORD}},
        "deadlines": {"type": "object", "enabled": False},
        "reports": {"type": "object", "enabled": False},
        "alerts": {"type": "object", "enabled": False},
        "impact": {"type": "object", "enabled": False},
        "gdpr": {"type": "object", "enabled": False},
        "history": {"type": "object", "enabled": False},
    },
}
AUDIT_MAPPING: dict[str, Any] = {
    "dynamic": "false",
    "properties": {
        "@timestamp": DATE,
        "incident_id": KEYWORD,
        "seq": {"type": "integer"},
        "action": KEYWORD,
        "who": KEYWORD,
        "why": {"type": "text"},
        "from": KEYWORD,
        "to": KEYWORD,
        "details": {"type": "object", "enabled": False},
    },
}
ESCALATION_MAPPING: dict[str, Any] = {
    "dynamic": "false",
    "properties": {
        "@timestamp": DATE,
        "kind": KEYWORD,
        "incident_id": KEYWORD,
        "report": KEYWORD,
        "due": DATE,
        "message": {"type": "text"},
        "details": {"type": "object", "enabled": False},
    },
}
SIMPLE_MAPPING: dict[str, Any] = {
    "dynamic": "false",
    "properties": {
        "@timestamp": DATE,
        "kind": KEYWORD,
        "status": KEYWORD,
        "reason": {"type": "text"},
    },
}


@dataclass(frozen=True)
class IndexSpec:
    """One of the agent's indices: its mapping, and whether documents are only ever added."""

    mapping: dict[str, Any]
    # Append-only indices may be data streams where the cluster has them; the others are
    # updated in place by id, which a data stream does not allow.
    append_only: bool = False

    def versioned_mapping(self) -> dict[str, Any]:
        """The mapping with its digest in `_meta`, by which setup sees whether it is current."""
        return {**self.mapping, "_meta": {META_KEY: {"digest": digest(self.mapping)}}}


def digest(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


META_KEY = "nis2triage"
# The one list of the agent's indices: `ensure_indices` and `nis2triage setup` both read it.
# Adding an index is one line here.
INDICES: dict[str, IndexSpec] = {
    "alerts": IndexSpec(ALERT_MAPPING, append_only=True),
    "state": IndexSpec(STATE_MAPPING),
    "outbox": IndexSpec(OUTBOX_MAPPING),
    "containment": IndexSpec(SIMPLE_MAPPING),
    "pseudonyms": IndexSpec(SIMPLE_MAPPING),
    "deadletter": IndexSpec(SIMPLE_MAPPING, append_only=True),
    "incidents": IndexSpec(INCIDENT_MAPPING),
    "audit": IndexSpec(AUDIT_MAPPING, append_only=True),
    "escalations": IndexSpec(ESCALATION_MAPPING),
}
# One shard is plenty for the agent's volumes; a replica wherever a second node can hold it.
INDEX_SETTINGS: dict[str, Any] = {"number_of_shards": 1, "auto_expand_replicas": "0-1"}
FIRST_GENERATION = "000001"


def first_index(name: str) -> str:
    """The concrete index behind the alias `name`, so it can be rolled over or reindexed."""
    return f"{name}-{FIRST_GENERATION}"


def create_index(es: Elasticsearch, name: str, spec: IndexSpec) -> bool:
    """Create `name` as a write alias over its first index; False if it already existed."""
    try:
        es.indices.create(
            index=first_index(name),
            mappings=spec.versioned_mapping(),
            settings=INDEX_SETTINGS,
            aliases={name: {"is_write_index": True}},
        )
    except ApiError as exc:
        if exc.meta.status == 400 and "already_exists" in str(exc):
            return False
        raise
    return True


class Store:
    """The agent's indices, named from one prefix."""

    def __init__(self, es: Elasticsearch, prefix: str) -> None:
        self.es = es
        self.prefix = prefix

    def index(self, what: str) -> str:
        return f"{self.prefix}-{what}"

    def ensure_indices(self) -> None:
        """Create the agent's indices that are missing, as `nis2triage setup` would."""
        for what, spec in INDICES.items():
            name = self.index(what)
            if self.es.indices.exists(index=name):
                continue
            try:
                if create_index(self.es, name, spec):
                    log.info("created index %s", name)
            except ApiError as exc:
                if exc.meta.status == 403:
                    raise StoreError(
                        f"{name} does not exist and the agent may not create it; run "
                        "'nis2triage setup --config FILE' once with an administrator's credential"
                    ) from exc
                raise

    def create_many(
        self,
        what: str,
        docs: list[tuple[str, dict[str, Any]]],
        refresh: bool = False,
        existing: list[str] | None = None,
    ) -> int:
        """Create documents that do not exist yet; return how many were new, and add the
        ids of those that existed to `existing` when given.

        With `refresh`, they are searchable when this returns, not at the next refresh.

        A document the index's mapping refuses (400) is set aside in the dead-letter
        index with the reason: it would be refused again on every retry, and must not
        hold back the rest. Anything else refused raises StoreError.
        """
        if not docs:
            return 0
        bodies = dict(docs)
        actions = (
            {"_op_type": "create", "_index": self.index(what), "_id": i, "_source": d}
            for i, d in docs
        )
        created = 0
        refused: list[tuple[str, str]] = []
        for ok, result in self._bulk("create", actions, refresh):
            if ok:
                created += 1
                if what == "alerts":
                    crash_point("bulk-alerts")
            elif (
                result.get("status") == 400
                and what != "deadletter"
                and _error_type(result) not in INDEX_LEVEL
            ):
                refused.append((str(result.get("_id")), _reason(result)))
            elif result.get("status") == 409:
                if existing is not None:
                    existing.append(str(result.get("_id")))
            else:
                raise StoreError(_refusal(self.index(what), "writes", result))
        if refused:
            self._check_mapping(what, f"{len(refused)} of {len(docs)}", refused[0][1])
            self._set_aside(what, refused, bodies)
        return created

    def _check_mapping(self, what: str, how_many: str, first: str) -> None:
        """Raise StoreError when the index's mapping is not the agent's (an index deleted
        and made again by hand, or one setup has not brought up to date): it refuses
        documents for what it is, not for what they hold, and setting them aside lost every
        alert, and every early warning the outbox was to send, to the dead letters."""
        alias = self.index(what)
        wanted = INDICES[what].versioned_mapping()["_meta"]
        try:
            found = self.es.indices.get_mapping(index=alias).body
        except ApiError:
            return  # may not read mappings: the documents are judged on their own
        foreign = sorted(i for i, m in found.items() if m["mappings"].get("_meta") != wanted)
        if foreign:
            named = ", ".join(foreign) + ("" if foreign == [alias] else f" ({alias})")
            raise StoreError(
                f"{named} has a mapping nis2triage did not make (the "
                "index made again by hand, or by a write before setup), which refused "
                f"{how_many} documents (first: {first[:200]}); nothing is set aside: "
                f"run 'nis2triage setup --config FILE' with an administrator's credential "
                "to bring the mapping up to date or say how to reindex"
            )

    def _set_aside(
        self, what: str, refused: list[tuple[str, str]], bodies: dict[str, dict[str, Any]]
    ) -> None:
        log.warning(
            "%d document(s) refused by the mapping of %s, set aside in %s; first: %s",
            len(refused),
            self.index(what),
            self.index("deadletter"),
            refused[0][1],
        )
        now = datetime.now(UTC).isoformat()
        dead = [
            (
                f"{what}-{doc_id}",
                {
                    "@timestamp": now,
                    "kind": what,
                    "status": "refused",
                    "reason": reason,
                    "document": bodies.get(doc_id),
                },
            )
            for doc_id, reason in refused
        ]
        self.create_many("deadletter", dead)

    def update_many(
        self, what: str, parts: list[tuple[str, dict[str, Any]]], refresh: bool = False
    ) -> int:
        """Merge each part into its document; return how many changed (an equal part
        writes nothing). A document deleted meanwhile is skipped."""
        actions = (
            {"_op_type": "update", "_index": self.index(what), "_id": i, "doc": part}
            for i, part in parts
        )
        changed = 0
        for ok, result in self._bulk("update", actions, refresh):
            if ok:
                changed += result.get("result") == "updated"
            elif result.get("status") != 404:
                raise StoreError(_refusal(self.index(what), "updates", result))
        return changed

    def _bulk(
        self, op: str, actions: Iterable[dict[str, Any]], refresh: bool
    ) -> Iterator[tuple[bool, dict[str, Any]]]:
        """Each action's outcome, as (ok, the node's result for it): a refusal is the
        caller's to judge, an outage raises, overloads are retried by the client."""
        for ok, item in helpers.streaming_bulk(
            self.es,
            actions,
            raise_on_error=False,
            raise_on_exception=True,
            max_retries=3,
            refresh="true" if refresh else "false",
        ):
            yield ok, item.get(op, {})

    @contextmanager
    def _one_write(self, what: str) -> Iterator[None]:
        """A single document written: a mapping refusal is checked as a bulk's is, since the
        node's answer (`document_parsing_exception`) names no index."""
        try:
            yield
        except ApiError as exc:
            if exc.meta.status == 400 and _cause_type(exc) in MAPPING_REFUSALS:
                self._check_mapping(what, "1 of 1", _cause_reason(exc))
            raise

    def put(self, what: str, doc_id: str, doc: dict[str, Any], refresh: bool = False) -> None:
        with self._one_write(what):
            self.es.index(index=self.index(what), id=doc_id, document=doc, refresh=refresh)

    def get_versioned(self, what: str, doc_id: str) -> tuple[dict[str, Any], int, int] | None:
        """A document with the sequence number and primary term that guard its next update."""
        resp = self.es.options(ignore_status=404).get(index=self.index(what), id=doc_id)
        if not resp.get("found"):
            return None
        return dict(resp["_source"]), int(resp["_seq_no"]), int(resp["_primary_term"])

    def put_if(self, what: str, doc_id: str, doc: dict[str, Any], version: tuple[int, int]) -> bool:
        """Replace a document only if nobody changed it since `version`; False on a conflict."""
        return self.put_versioned(what, doc_id, doc, version) is not None

    def put_versioned(
        self, what: str, doc_id: str, doc: dict[str, Any], version: tuple[int, int] | None
    ) -> tuple[int, int] | None:
        """Write a document only if it is still as last read: `version` (its sequence number
        and primary term) when it was there, absent when it was not. The new version, or None
        when another writer came in between."""
        guard: dict[str, Any] = (
            {"if_seq_no": version[0], "if_primary_term": version[1]}
            if version is not None
            else {"op_type": "create"}
        )
        with self._one_write(what):
            resp = self.es.options(ignore_status=409).index(
                index=self.index(what), id=doc_id, document=doc, refresh=True, **guard
            )
        if resp.meta.status == 409:
            return None
        return int(resp["_seq_no"]), int(resp["_primary_term"])

    def create(self, what: str, doc_id: str, doc: dict[str, Any]) -> bool:
        """Create one document, visible to searches at once; False if it already exists."""
        with self._one_write(what):
            resp = self.es.options(ignore_status=409).create(
                index=self.index(what), id=doc_id, document=doc, refresh=True
            )
        return resp.meta.status != 409

    def delete(self, what: str, doc_id: str) -> bool:
        """Delete one document, gone from searches at once; False if there was none."""
        resp = self.es.options(ignore_status=404).delete(
            index=self.index(what), id=doc_id, refresh=True
        )
        return resp.meta.status != 404

    def get(self, what: str, doc_id: str) -> dict[str, Any] | None:
        resp = self.es.options(ignore_status=404).get(index=self.index(what), id=doc_id)
        return dict(resp["_source"]) if resp.get("found") else None

    def refresh(self, *what: str) -> None:
        self.es.indices.refresh(index=",".join(self.index(w) for w in what))

    def request_limit(self) -> int:
        """The largest request body every node accepts (`http.max_content_length`, bytes).

        A checkpoint is one document, sent in one request: a node refuses a larger one
        (413) whatever is retried. Nodes list only what their configuration sets, so a node
        that sets nothing has Elasticsearch's default.
        """
        try:
            answer = self.es.nodes.info(
                metric="settings", filter_path="nodes.*.settings.http.max_content_length"
            ).body
        except ApiError:
            return DEFAULT_REQUEST_LIMIT  # the `monitor` privilege withdrawn: the default
        nodes = (answer.get("nodes") or {}).values()
        limits = [
            byte_size(str(n["settings"]["http"]["max_content_length"]), DEFAULT_REQUEST_LIMIT)
            for n in nodes
        ]
        return min(limits, default=DEFAULT_REQUEST_LIMIT)


# Elasticsearch's own default for `http.max_content_length`.
DEFAULT_REQUEST_LIMIT = 100 * 1024 * 1024
_BYTE_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?b)?\s*$", re.IGNORECASE)
_UNITS = {"b": 0, "kb": 1, "mb": 2, "gb": 3, "tb": 4, "pb": 5}


def byte_size(text: str, default: int) -> int:
    """Bytes in an Elasticsearch byte size ("100mb", "2gb", "1048576b"); `default` if
    it is not one."""
    found = _BYTE_SIZE.match(text)
    if found is None:
        return default
    unit = (found.group(2) or "b").lower()
    return int(float(found.group(1)) * 1024 ** _UNITS[unit])


# Which setting holds each index block, by the words Elasticsearch names it with.
BLOCK_SETTINGS = (
    ("read-only-allow-delete", "index.blocks.read_only_allow_delete"),
    ("index write", "index.blocks.write"),
    ("index read-only", "index.blocks.read_only"),
    ("index read (", "index.blocks.read"),
)


def describe_block(reason: str) -> str:
    """The blocked index, the setting that blocks it and how to lift it, from the reason
    Elasticsearch gives (`index [x] blocked by: [FORBIDDEN/8/index write (api)];`)."""
    index = reason.partition("[")[2].partition("]")[0] or "an index of the agent"
    setting = next((s for words, s in BLOCK_SETTINGS if words in reason), "index.blocks.*")
    refused = "reads" if setting == "index.blocks.read" else "writes"
    lift = lift_block(index, setting, flood="flood-stage" in reason)
    return f"{index} takes no {refused}: it has the block {setting} ({reason.rstrip(';')}); {lift}"


def lift_block(index: str, setting: str, flood: bool) -> str:
    """Who sets a block like this one, and the request that lifts it."""
    why = (
        "the flood-stage disk watermark set it: free disk space on the node, after which "
        "Elasticsearch lifts it by itself, or"
        if flood
        else "someone set it (a maintenance, a snapshot restore):"
    )
    return f'{why} lift it with PUT {index}/_settings {{"{setting}": null}}'


def describe_closed(index: str) -> str:
    """A closed index of the agent: nothing can be read from it or written to it."""
    return (
        f"{index} is closed (someone ran POST {index}/_close, or a snapshot restore left "
        f"it so): the agent can neither read nor write it; open it with POST {index}/_open"
    )


# Refusals that are the index's, not the document's: every document would meet them, so
# setting the documents aside as dead letters would only lose them from their index.
INDEX_LEVEL = {"index_closed_exception", "cluster_block_exception", "index_not_found_exception"}


# What the node answers when an index's mapping refuses a document.
MAPPING_REFUSALS = {"document_parsing_exception", "mapper_parsing_exception"}


def _cause_type(exc: ApiError) -> str:
    return str(first_cause(exc).get("type") or "")


def _cause_reason(exc: ApiError) -> str:
    return str(first_cause(exc).get("reason") or exc.message)


def first_cause(exc: ApiError) -> dict[str, Any]:
    """The first root cause of an error the node gave, or {} when it gave none."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    causes = error.get("root_cause") if isinstance(error, dict) else None
    return causes[0] if causes and isinstance(causes[0], dict) else {}


def _error_type(result: dict[str, Any]) -> str:
    error = result.get("error")
    return str(error.get("type") or "") if isinstance(error, dict) else ""


def _refusal(alias: str, op: str, result: dict[str, Any]) -> str:
    """What the node refused, where, and how to fix it when the cause is the index's."""
    kind = _error_type(result)
    if kind == "cluster_block_exception":
        return describe_block(_reason(result))
    if kind == "index_closed_exception":
        error = result.get("error") or {}
        return describe_closed(str(error.get("index") or result.get("_index") or alias))
    return f"Elasticsearch refused {op} to {alias} ({result.get('status')}: {_reason(result)})"


def _reason(result: dict[str, Any]) -> str:
    error = result.get("error") or {}
    return str(error.get("reason", error) if isinstance(error, dict) else error)[:500]


def alert_document(
    alert: Alert, asset: str | None = None, service: str | None = None
) -> dict[str, Any]:
    """The ECS alert document that analysts (and Elastic Security) read."""
    doc: dict[str, Any] = {
        "@timestamp": _iso(alert.timestamp),
        "message": alert.message,
        "tags": list(alert.tags),
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection"],
            "type": ["info"],
            "module": "nis2triage",
            "dataset": "nis2triage.alerts",
            "severity": SEVERITY_RANK[alert.severity] * 25,
            "risk_score": _as_float32(alert.score),
            "start": _iso(alert.start),
            "end": _iso(alert.end),
        },
        "rule": {"name": alert.name, "version": alert.version, "category": alert.kind},
        "related": {
            "ip": [ip for ip in alert.related_ips if is_ip(ip)],
            "user": list(alert.related_users),
            "hosts": list(alert.related_hosts),
        },
        "nis2triage": {
            "alert_id": alert.id,
            "kind": alert.kind,
            "severity": alert.severity,
            "score": _as_float32(alert.score),
            "threshold": _as_float32(alert.threshold),
            "entity": {"field": alert.entity_field, "value": alert.entity},
            "route": alert.route,
            "route_reason": alert.route_reason,
            "query": alert.query,
            "index_pattern": alert.index_pattern,
            "hints": list(alert.hints),
            "asset": asset,
            "service": service,
            "evidence": alert.evidence,
        },
    }
    if alert.entity_field == "source.ip" and is_ip(alert.entity):
        doc["source"] = {"ip": alert.entity}
    elif alert.entity_field == "user.name":
        doc["user"] = {"name": alert.entity}
    return doc


# The largest magnitude the mapping's `float` fields hold; beyond it the node refuses the
# document (a metric rule's sum of doubles can reach it). The exact value stays in
# `message` and `evidence`.
FLOAT32_MAX = 3.4028234663852886e38


def _as_float32(value: float) -> float | None:
    if math.isnan(value):
        return None
    return max(-FLOAT32_MAX, min(FLOAT32_MAX, value))


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")
