"""The agent's least-privilege role, and an API key that carries it.

What the agent does with Elasticsearch, and the privilege each needs:

- reads the configured source indices, the indices its native rules name and, with
  Sigma rules, `rules.sigma_indices` (search, point in time, counts): `read`; their
  mappings for the rules' field checks: `view_index_metadata`;
- reads and writes its own indices under `<prefix>-*`: `read`, `write`,
  `view_index_metadata`, and `maintenance` for the refreshes that make a
  write visible to the next search;
- asks for the cluster's name, version and modules: the `monitor` cluster privilege.

It creates no index, alias or template: `nis2triage setup`, run with an
administrator's credential, does that. Without `create_index` a write to a
missing alias fails loudly instead of creating an index with guessed mappings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from elasticsearch import ApiError, Elasticsearch

from nis2triage.config import AgentConfig
from nis2triage.layout import Change
from nis2triage.rulerunner import load_native
from nis2triage.source import index_names
from nis2triage.store import INDICES

ROLE_NAME = "nis2triage_agent"


def role_name(prefix: str) -> str:
    """`nis2triage_agent` for the default prefix, `<prefix>_agent` for any other.

    Roles are per cluster: two agents with their own prefixes on one cluster each need
    their own role, or setup for one would rewrite the other's privileges.
    """
    if prefix == "nis2triage":
        return ROLE_NAME
    return re.sub(r"[^a-z0-9_]", "_", prefix.lower()) + "_agent"


SOURCE_PRIVILEGES = ["read", "view_index_metadata"]
OWN_PRIVILEGES = ["read", "write", "view_index_metadata", "maintenance"]


def read_patterns(cfg: AgentConfig) -> list[str]:
    """Every index pattern the agent searches: sources, native rules, Sigma rules."""
    patterns = set(index_names(p for s in cfg.sources for p in s.indices))
    patterns |= set(index_names(rule.index for rule in load_native(cfg)))
    if cfg.rules.sigma:
        patterns |= set(index_names(cfg.rules.sigma_indices))
    return sorted(patterns)


def own_names(prefix: str) -> list[str]:
    """The agent's own indices: each alias, and its generations as a regular expression
    of their six digits. Neither `<prefix>-*` nor `<prefix>-audit-*`, which would also
    cover another agent's prefix that begins with this one (`nis2triage-demo` under
    `nis2triage`, `soc-audit` under `soc`), its pseudonym table included."""
    stem = _lucene_escaped(prefix)
    return sorted(
        name for what in INDICES for name in (f"{prefix}-{what}", f"/{stem}-{what}-[0-9]{{6}}/")
    )


def _lucene_escaped(text: str) -> str:
    # Every character Lucene's regular expressions reserve; prefixes hold few of them.
    return re.sub(r'([.?+*|{}\[\]()"\\#@&<>~])', r"\\\1", text)


def role_descriptor(cfg: AgentConfig) -> dict[str, Any]:
    sources = read_patterns(cfg)
    return {
        "cluster": ["monitor"],
        "indices": [
            {"names": sources, "privileges": SOURCE_PRIVILEGES},
            {"names": own_names(cfg.state.index_prefix), "privileges": OWN_PRIVILEGES},
        ],
        "metadata": {"managed_by": "nis2triage setup", "index_prefix": cfg.state.index_prefix},
    }


def roles_yml(cfg: AgentConfig, name: str | None = None) -> str:
    """The same role as a file-realm entry, for `config/roles.yml` on every node."""
    descriptor = {k: v for k, v in role_descriptor(cfg).items() if k != "metadata"}
    return yaml.safe_dump({name or role_name(cfg.state.index_prefix): descriptor}, sort_keys=False)


@dataclass(frozen=True)
class Refusal:
    """Why the cluster would not store a native role or key, in an operator's words."""

    reason: str
    # 403: this credential lacks the right, a failure of this run; otherwise the cluster
    # cannot store native roles or keys at all, and roles.yml is the way.
    forbidden: bool = False

    @property
    def status(self) -> Literal["failed", "refused"]:
        return "failed" if self.forbidden else "refused"

    @classmethod
    def of(cls, exc: ApiError) -> Refusal:
        said = f"{exc.meta.status}: {_reason(exc)}"
        if "pattern_capture" in said or "analysis" in said:
            # Seen on builds without analysis-common: the security index cannot be created.
            return cls(
                "the cluster cannot store native roles or API keys: its security index "
                f"cannot be created ({said})"
            )
        if exc.meta.status == 403:
            return cls(
                f"this credential may not manage security ({said}); run setup with an "
                "administrator's (--admin-user and --admin-password-env, or --admin-api-key-env)",
                forbidden=True,
            )
        return cls(said)


def _reason(exc: ApiError) -> str:
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    if isinstance(error, dict) and error.get("reason"):
        return str(error["reason"])
    return str(exc.message)


def ensure_role(es: Elasticsearch, cfg: AgentConfig) -> Change:
    wanted = role_descriptor(cfg)
    name = role_name(cfg.state.index_prefix)
    try:
        found = es.options(ignore_status=404).security.get_role(name=name)
        current = found.body.get(name) if found.meta.status == 200 else None
        owner = _owner_of(current) if current is not None else None
        if owner is not None and owner != cfg.state.index_prefix:
            return Change("role", name, "failed", _taken(name, owner))
        if current is not None and _same_role(current, wanted):
            return Change("role", name, "unchanged")
        es.security.put_role(name=name, **wanted)
    except ApiError as exc:
        refusal = Refusal.of(exc)
        return Change("role", name, refusal.status, refusal.reason)
    return Change("role", name, "created" if current is None else "updated")


def _owner_of(role: dict[str, Any]) -> str | None:
    """The state prefix a role was made for: in its metadata, or, for roles made before
    that was kept, from the `<prefix>-*` it granted the agent's own privileges on."""
    recorded = (role.get("metadata") or {}).get("index_prefix")
    if recorded is not None:
        return str(recorded)
    for entry in role.get("indices", []):
        names = entry.get("names", [])
        own = sorted(entry.get("privileges", [])) == sorted(OWN_PRIVILEGES)
        if own and len(names) == 1 and names[0].endswith("-*"):
            return str(names[0][:-2])
    return None


def _taken(name: str, owner: str) -> str:
    # Role names keep letters, digits and `_` only: `a-b`, `a.b` and `a_b` share one.
    return (
        f"{name} is the role of the agents with state prefix {owner!r}, which this "
        "prefix cannot share: make state.index_prefix differ from it in a letter or digit"
    )


def _same_role(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    def indices(role: dict[str, Any]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
        return sorted(
            (tuple(sorted(i["names"])), tuple(sorted(i["privileges"]))) for i in role["indices"]
        )

    same_cluster = sorted(current.get("cluster", [])) == sorted(wanted["cluster"])
    return same_cluster and indices(current) == indices(wanted)


@dataclass(frozen=True)
class NewKey:
    """An API key just created: shown once, never logged."""

    id: str
    encoded: str

    def __repr__(self) -> str:
        return f"NewKey(id={self.id!r})"


def ensure_api_key(
    es: Elasticsearch, cfg: AgentConfig, shown_later: bool = False
) -> tuple[Change, NewKey | None]:
    """An API key limited to the agent's role, unless an active one already exists; an
    existing key is brought up to the role as configured (it holds a copy of the role,
    which updating the role does not change).

    With `shown_later` the new key is marked as not yet shown until `mark_shown`: found
    so by a later run, it is one nobody has, and that run says how to replace it."""
    name = f"{cfg.state.index_prefix}-agent"
    descriptors = {role_name(cfg.state.index_prefix): role_descriptor(cfg)}
    try:
        found = es.security.get_api_key(name=name, active_only=True).body.get("api_keys", [])
        if found and (found[0].get("metadata") or {}).get("shown") is False:
            return _never_shown(found[0]), None
        if found:
            return _bring_up_to_date(es, found[0], descriptors), None
        made = es.security.create_api_key(
            name=name,
            role_descriptors=descriptors,
            metadata=_metadata(shown=False) if shown_later else _metadata(),
        ).body
    except ApiError as exc:
        refusal = Refusal.of(exc)
        return Change("API key", name, refusal.status, refusal.reason), None
    return Change("API key", name, "created", f"id {made['id']}"), NewKey(
        made["id"], made["encoded"]
    )


def refresh_api_key(es: Elasticsearch, cfg: AgentConfig) -> Change | None:
    """The agent's existing key brought up to the role (None if it has none): after
    `setup --create-role`, which updates the role, the key kept its old copy of it."""
    name = f"{cfg.state.index_prefix}-agent"
    descriptors = {role_name(cfg.state.index_prefix): role_descriptor(cfg)}
    try:
        found = es.security.get_api_key(name=name, active_only=True).body.get("api_keys", [])
    except ApiError as exc:
        refusal = Refusal.of(exc)
        return Change("API key", name, refusal.status, refusal.reason)
    return _bring_up_to_date(es, found[0], descriptors) if found else None


def _metadata(shown: bool | None = None) -> dict[str, Any]:
    # `shown` is false until setup has printed the key: a key made by a setup stopped
    # before that is of no use to anyone, and is said so instead of "unchanged".
    return {"managed_by": "nis2triage setup"} | ({} if shown is None else {"shown": shown})


def mark_shown(es: Elasticsearch, key: NewKey) -> None:
    """Record on the key that setup printed it (its role descriptors stay as they are)."""
    es.security.update_api_key(id=key.id, metadata=_metadata(shown=True))


def _never_shown(key: dict[str, Any]) -> Change:
    name, key_id = str(key["name"]), str(key["id"])
    return Change(
        "API key",
        name,
        "failed",
        f"id {key_id} was made by a setup stopped before it printed the key, which cannot "
        "be shown again: invalidate it (DELETE _security/api_key with "
        f'{{"name": "{name}"}}, see the README) and run setup with --create-api-key again',
    )


def _bring_up_to_date(
    es: Elasticsearch, key: dict[str, Any], descriptors: dict[str, dict[str, Any]]
) -> Change:
    """The existing key, its copy of the role replaced if the role changed since."""
    name, key_id = str(key["name"]), str(key["id"])
    held = key.get("role_descriptors") or {}
    if held.keys() == descriptors.keys() and all(
        _same_role(held[role], wanted) for role, wanted in descriptors.items()
    ):
        return Change("API key", name, "unchanged", f"id {key_id}")
    try:
        es.security.update_api_key(id=key_id, role_descriptors=descriptors)
    except ApiError as exc:
        # Only the key's owner may update it: setup run by another administrator.
        reason = Refusal.of(exc).reason
        # Failed, not refused: the agent is left unable to read what was added.
        return Change(
            "API key",
            name,
            "failed",
            f"id {key_id} still carries the old role, so the agent cannot read what the "
            f"configuration added ({reason}); invalidate it and run setup again with "
            "--create-api-key for a new one",
        )
    return Change("API key", name, "updated", f"id {key_id}; now carries the role as configured")
