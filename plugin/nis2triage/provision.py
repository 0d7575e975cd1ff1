"""`nis2triage setup`: prepare a cluster (and Kibana) for the agent, idempotently.

Run it once with an administrator's credential before the agent's first start,
and again after each upgrade: it creates what is missing, updates what changed
and leaves the rest alone, saying which for every object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from elasticsearch import Elasticsearch

from nis2triage import kibana, layout, roles
from nis2triage.config import AgentConfig
from nis2triage.esclient import ESSettings
from nis2triage.layout import CHANGES, Change


@dataclass(frozen=True)
class SetupRequest:
    create_role: bool = False
    create_api_key: bool = False
    kibana_url: str | None = None
    kibana_objects: Path = kibana.DEFAULT_OBJECTS


@dataclass
class SetupResult:
    changes: list[Change] = field(default_factory=list)
    api_key: roles.NewKey | None = None
    roles_yml: str | None = None

    @property
    def changed(self) -> list[Change]:
        return [c for c in self.changes if c.status in CHANGES]

    @property
    def failed(self) -> list[Change]:
        return [c for c in self.changes if c.status == "failed"]


def setup(
    es: Elasticsearch, cfg: AgentConfig, settings: ESSettings, request: SetupRequest
) -> SetupResult:
    result = SetupResult()
    caps = layout.capabilities(es)
    result.changes += layout.apply(es, cfg.state.index_prefix, cfg.state.security_alias, caps)
    if request.create_role or request.create_api_key:
        _role_and_key(es, cfg, result, request.create_api_key)
    if request.kibana_url:
        objects = kibana.checked(request.kibana_objects, cfg.state.index_prefix)
        result.changes.append(kibana.import_objects(request.kibana_url, objects, settings))
    return result


def _role_and_key(es: Elasticsearch, cfg: AgentConfig, result: SetupResult, with_key: bool) -> None:
    role = roles.ensure_role(es, cfg)
    result.changes.append(role)
    if role.status == "refused":
        # The same privileges as a file-realm role, which every node reads from its config dir.
        result.roles_yml = roles.roles_yml(cfg)
        return
    if role.status == "failed":
        return  # this credential may not manage security: no key either
    if not with_key:
        return
    key_change, result.api_key = roles.ensure_api_key(es, cfg)
    result.changes.append(key_change)


def render(result: SetupResult) -> str:
    """What setup prints: one line per object, then what the operator must do by hand."""
    lines = [c.line() for c in result.changes]
    # Each object once: failed ones are not also counted among those left as they were.
    unchanged = len(result.changes) - len(result.changed) - len(result.failed)
    summary = f"{len(result.changed)} changed, {unchanged} not"
    lines.append(summary + (f", {len(result.failed)} failed" if result.failed else ""))
    if result.roles_yml:
        role = result.roles_yml.split(":", 1)[0]
        lines += [
            "",
            f"Add this role to config/roles.yml on every node (read again within 5 s), then a "
            f"user for the agent: bin/elasticsearch-users useradd nis2triage -r {role}",
            "",
            result.roles_yml.rstrip(),
        ]
    if result.api_key:
        lines += [
            "",
            "The agent's API key, shown once: store it where api_key_env or api_key_file points",
            result.api_key.encoded,
        ]
    return "\n".join(lines)
