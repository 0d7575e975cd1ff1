"""The agent's indices on a cluster: index templates, indices or data streams, aliases, lifecycle.

`nis2triage setup` applies this layout; each step says whether it created,
updated or left an object unchanged, so running setup twice changes nothing the
second time. Every object carries a digest of its definition in `_meta`, which
is what "unchanged" is judged by: Elasticsearch echoes settings back in its own
normalised form, so comparing bodies field by field would report false changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from elasticsearch import ApiError, Elasticsearch

from nis2triage.errors import ConfigError
from nis2triage.logs import some
from nis2triage.reports.document import shown
from nis2triage.store import (
    INDEX_SETTINGS,
    INDICES,
    META_KEY,
    IndexSpec,
    create_index,
    digest,
    first_index,
)

Status = Literal["created", "updated", "unchanged", "skipped", "refused", "failed"]
CHANGES: frozenset[str] = frozenset({"created", "updated"})
TEMPLATE_PRIORITY = 200
MAX_NAME_BYTES = 255  # Elasticsearch's limit on an index name
# The longest name an index gets after its prefix: a data stream's backing index.
LONGEST_TAIL = max(len(f"-{what}-2026.12.31-000001") for what in INDICES) + len(".ds-")
_PREFIX = re.compile(r"[a-z0-9][a-z0-9_.-]*")


@dataclass(frozen=True)
class Capabilities:
    """What the cluster can do that changes the layout."""

    data_streams: bool
    ilm: bool


@dataclass(frozen=True)
class Change:
    """One object setup looked at, and what it did to it."""

    what: str
    name: str
    status: Status
    note: str = ""

    def line(self) -> str:
        text = f"{self.status:<10} {self.what:<17} {self.name}"
        # Names and notes carry what a server answered: printed, an escape sequence or a
        # direction override in it would act on the operator's terminal.
        return shown(f"{text}  ({self.note})" if self.note else text)


def capabilities(es: Elasticsearch) -> Capabilities:
    """Read from the modules the nodes run (the `monitor` cluster privilege suffices)."""
    nodes = es.nodes.info(metric="plugins").body["nodes"].values()
    modules = [{m["name"] for m in n.get("modules", [])} for n in nodes]
    everywhere = set.intersection(*modules) if modules else set()
    return Capabilities("data-streams" in everywhere, "x-pack-ilm" in everywhere)


def policy_name(prefix: str) -> str:
    return f"{prefix}-append-only"


def as_data_stream(spec: IndexSpec, caps: Capabilities) -> bool:
    return caps.data_streams and spec.append_only


def template_body(
    prefix: str, what: str, spec: IndexSpec, caps: Capabilities, read_alias: str | None = None
) -> dict[str, Any]:
    """A composable template; `read_alias` is put on every index it creates (not data streams)."""
    name = f"{prefix}-{what}"
    settings = dict(INDEX_SETTINGS)
    body: dict[str, Any] = {"priority": TEMPLATE_PRIORITY}
    if as_data_stream(spec, caps):
        body.update(index_patterns=[name], data_stream={})
        if caps.ilm:
            settings["index.lifecycle.name"] = policy_name(prefix)
    else:
        # The bare name too: a write to a missing alias would otherwise create an index
        # with dynamic mappings (the agent's role cannot, but an administrator's can).
        body["index_patterns"] = [name, f"{name}-*"]
    body["template"] = {"settings": settings, "mappings": spec.versioned_mapping()}
    if read_alias and "data_stream" not in body:
        # Indices created by a rollover get the alias too.
        body["template"]["aliases"] = {read_alias: {}}
    body["_meta"] = {META_KEY: {"digest": digest(body)}}
    return body


def put_template(es: Elasticsearch, name: str, body: dict[str, Any]) -> Change:
    found = es.options(ignore_status=404).indices.get_index_template(name=name)
    templates = found.body.get("index_templates", []) if found.meta.status == 200 else []
    current = templates[0]["index_template"].get("_meta", {}) if templates else None
    if current is not None and current.get(META_KEY) == body["_meta"][META_KEY]:
        return Change("index template", name, "unchanged")
    es.indices.put_index_template(name=name, **body)
    return Change("index template", name, "created" if current is None else "updated")


def ensure_target(es: Elasticsearch, name: str, spec: IndexSpec, caps: Capabilities) -> Change:
    """The alias (over `-000001`) or data stream the agent writes to, with a current mapping."""
    if not es.indices.exists(index=name):
        if as_data_stream(spec, caps):
            es.indices.create_data_stream(name=name)
            return Change("data stream", name, "created")
        create_index(es, name, spec)
        return Change("index", name, "created", f"alias over {first_index(name)}")
    return update_mapping(es, name, spec)


def update_mapping(es: Elasticsearch, name: str, spec: IndexSpec) -> Change:
    """Bring the mapping of every index behind `name` to the current definition."""
    wanted = spec.versioned_mapping()
    found = es.indices.get_mapping(index=name).body
    stale = [i for i, m in found.items() if m["mappings"].get("_meta") != wanted["_meta"]]
    if not stale:
        return Change("index", name, "unchanged")
    try:
        es.indices.put_mapping(index=name, **wanted)
    except ApiError as exc:
        # A field whose type changed cannot be updated in place: it takes a new index.
        return Change(
            "index",
            name,
            "failed",
            f"mapping cannot be updated in place ({exc.message}); reindex into "
            f"{name}-000002 and move the alias",
        )
    return Change("index", name, "updated", f"mapping of {', '.join(sorted(stale))}")


def ensure_alias(es: Elasticsearch, target: str, alias: str, existed: bool) -> Change:
    """A read-only alias over the data stream or every index behind `target`.

    `existed` says whether it was there before setup began: the template puts it on
    an index it creates, and that is a creation too.
    """
    if es.indices.exists_alias(name=alias, index=target):
        return Change("alias", alias, "unchanged" if existed else "created", f"over {target}")
    indices = sorted(behind(es, target)) or [target]
    es.indices.update_aliases(actions=[{"add": {"indices": indices, "alias": alias}}])
    return Change("alias", alias, "created", f"over {', '.join(indices)}")


def behind(es: Elasticsearch, name: str) -> set[str]:
    """What an alias, index or data stream `name` covers: indices and data streams; empty
    if there is no such name. An alias cannot point at another alias, hence the names."""
    found = es.options(ignore_status=404).indices.resolve_index(name=name, expand_wildcards="all")
    if found.meta.status == 404:
        return set()
    body = found.body
    names = {i for a in body.get("aliases", []) if a["name"] == name for i in a["indices"]}
    for stream in (d for d in body.get("data_streams", []) if d["name"] == name):
        names |= {name, *stream.get("backing_indices", [])}
    names |= {i["name"] for i in body.get("indices", []) if i["name"] == name}
    return names


def alias_problem(es: Elasticsearch, prefix: str, alias: str) -> str | None:
    """Why `alias` cannot be this agent's read alias: a name already taken by an index or
    data stream, or an alias over indices that are not this agent's alerts."""
    own_like = [what for what in INDICES if alias.endswith(f"-{what}")]
    if own_like:
        # An agent whose prefix makes this name would find its own alias there and write
        # into this agent's alerts (or this setup would rewrite another agent's index).
        return (
            f"{alias} is named like an agent's own {own_like[0]} alias (<prefix>-{own_like[0]}): "
            "give state.security_alias a name no prefix makes, such as the default "
            "logs-nis2triage.alerts-default"
        )
    resolved = es.options(ignore_status=404).indices.resolve_index(
        name=alias, expand_wildcards="all"
    )
    if resolved.meta.status == 404:
        return None
    body = resolved.body
    if any(x["name"] == alias for x in [*body.get("indices", []), *body.get("data_streams", [])]):
        return (
            f"{alias} is an index or data stream, not an alias: set state.security_alias "
            "to a name nothing on the cluster uses"
        )
    covered = {i for a in body.get("aliases", []) if a["name"] == alias for i in a["indices"]}
    foreign = sorted(covered - behind(es, f"{prefix}-alerts"))
    # Several agents may share one read alias over their alerts (Elastic Security lists
    # them all anyway). Not an agent's own alias, whose write index would then read this
    # agent's alerts as its own, nor an alias over indices that hold no agent's alerts.
    writer = _write_index(es, alias)
    if writer is not None and foreign:
        return (
            f"{alias} is the write alias of {writer} (another agent's own alias?): give this "
            "agent a state.security_alias of its own, or the shared default"
        )
    others = [i for i in foreign if not _ALERTS_INDEX.search(i)]
    if not others:
        return None
    return (
        f"{alias} already covers {some(others)}, which hold no agent's alerts: give this agent a "
        "state.security_alias of its own"
    )


# An agent's alerts index (`<prefix>-alerts-000001`) or a data stream's backing index.
_ALERTS_INDEX = re.compile(r"-alerts(-\d{4}\.\d{2}\.\d{2})?-\d{6}$")


def _write_index(es: Elasticsearch, alias: str) -> str | None:
    """The index `alias` writes to, if it is some index's write alias."""
    found = es.options(ignore_status=404).indices.get_alias(name=alias)
    if found.meta.status == 404:
        return None
    for index, entry in found.body.items():
        if entry.get("aliases", {}).get(alias, {}).get("is_write_index"):
            return str(index)
    return None


def check_prefix(prefix: str) -> None:
    """Refuse, before anything is created, a prefix Elasticsearch would refuse in an index
    name half-way through setup."""
    longest = MAX_NAME_BYTES - LONGEST_TAIL
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"state.index_prefix {prefix[:60]!r}: use lower-case letters, digits, '_', '.' "
            "and '-' only, beginning with a letter or digit (it begins index names)"
        )
    if len(prefix.encode()) > longest:
        raise ConfigError(
            f"state.index_prefix is {len(prefix.encode())} bytes; at most {longest}: the "
            f"agent's index names ({prefix[:20]}...{LONGEST_TAIL} bytes more) must fit in "
            f"Elasticsearch's {MAX_NAME_BYTES}"
        )


def es_reason(exc: ApiError) -> str:
    """Elasticsearch's own reason for refusing, in one line."""
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    if isinstance(error, dict) and error.get("reason"):
        return f"{error.get('type', exc.message)}: {error['reason']}"
    return str(exc.message)


def tried(what: str, name: str, step: Callable[[], Change]) -> Change:
    """The step's change, or a failed one that names the object and Elasticsearch's reason
    (a bare `answered 400` left the operator guessing which object collided with what)."""
    try:
        return step()
    except ApiError as exc:
        if exc.meta.status in (401, 403):
            raise  # setup says which credential it needs
        return Change(what, name, "failed", f"Elasticsearch refused it: {es_reason(exc)}")


NO_TEMPLATE = (
    "not created: its template was refused (above); made without it, the index would take "
    "the mappings and aliases of whichever template matches its name"
)
# How Elasticsearch names the templates a new one collides with.
_COLLIDES = re.compile(r"matching patterns from existing templates \[([^\]]+)\]")


def collided(change: Change) -> Change:
    """A refused template, with what to do when it collides with another agent's: a prefix
    that begins with another agent's index name (`acme-alerts` beside `acme`) matches its
    templates (`acme-alerts-*`) at the same priority."""
    found = _COLLIDES.search(change.note)
    if change.status != "failed" or found is None:
        return change
    return Change(
        change.what,
        change.name,
        change.status,
        f"{change.note}. The index template {found.group(1)} matches these names too; "
        "where it is another agent's, give state.index_prefix a prefix that does not begin "
        "with another agent's index name (<prefix>-alerts, <prefix>-state, ...), nor one "
        "whose index names another agent's prefix begins with",
    )


def lifecycle_body(prefix: str) -> dict[str, Any]:
    # Roll over only; how long alerts and the audit trail are kept is the operator's call
    # (evidence for the final report, NIS2 Art. 23(4)(d), against GDPR minimisation).
    policy: dict[str, Any] = {
        "phases": {
            "hot": {"actions": {"rollover": {"max_primary_shard_size": "10gb", "max_age": "30d"}}}
        }
    }
    return {**policy, "_meta": {META_KEY: {"digest": digest(policy)}}}


def ensure_policy(es: Elasticsearch, prefix: str, caps: Capabilities) -> Change:
    name = policy_name(prefix)
    if not (caps.ilm and caps.data_streams):
        return Change(
            "lifecycle policy",
            name,
            "skipped",
            "no ILM or data streams on this cluster: indices do not roll over by themselves; "
            "roll an append-only one over by hand with POST <alias>/_rollover when it grows",
        )
    body = lifecycle_body(prefix)
    found = es.options(ignore_status=404).ilm.get_lifecycle(name=name)
    current = found.body.get(name, {}).get("policy") if found.meta.status == 200 else None
    if current is not None and current.get("_meta") == body["_meta"]:
        return Change("lifecycle policy", name, "unchanged")
    es.ilm.put_lifecycle(name=name, policy=body)
    return Change("lifecycle policy", name, "created" if current is None else "updated")


def apply(
    es: Elasticsearch, prefix: str, security_alias: str | None, caps: Capabilities
) -> list[Change]:
    """The whole layout: lifecycle policy, then per index its template and its target."""
    check_prefix(prefix)
    policy = partial(ensure_policy, es, prefix, caps)
    changes = [tried("lifecycle policy", policy_name(prefix), policy)]
    refused = security_alias and alias_problem(es, prefix, security_alias)
    if security_alias and refused:
        changes.append(Change("alias", security_alias, "failed", refused))
        security_alias = None  # nor on the indices the templates create
    had_alias = bool(security_alias) and bool(
        es.indices.exists_alias(name=str(security_alias), index=f"{prefix}-alerts")
    )
    for what, spec in INDICES.items():
        name = f"{prefix}-{what}"
        body = template_body(prefix, what, spec, caps, security_alias if what == "alerts" else None)
        template = collided(tried("index template", name, partial(put_template, es, name, body)))
        changes.append(template)
        if template.status == "failed":
            changes.append(Change("index", name, "skipped", NO_TEMPLATE))
            continue
        changes.append(tried("index", name, partial(ensure_target, es, name, spec, caps)))
    if security_alias:
        # Elastic Security's default index setting covers `logs-*`: through this alias its
        # external-alerts views list the alerts (event.kind: alert).
        add = partial(ensure_alias, es, f"{prefix}-alerts", security_alias, had_alias)
        changes.append(tried("alias", security_alias, add))
    return changes
