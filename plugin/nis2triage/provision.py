"""`nis2triage setup`: prepare a cluster (and Kibana) for the agent, idempotently.

Run it once with an administrator's credential before the agent's first start,
and again after each upgrade: it creates what is missing, updates what changed
and leaves the rest alone, saying which for every object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from elasticsearch import Elasticsearch

from nis2triage import layout, roles
from nis2triage.config import AgentConfig
from nis2triage.layout import CHANGES, Change


@dataclass(frozen=True)
class SetupRequest:
    # The API key and the Kibana objects are the command's (`cli_setup`): the key must be
    # printed the moment it is made, before anything can hold the run up.
    create_role: bool = False


@dataclass
class SetupResult:
    changes: list[Change] = field(default_factory=list)
    roles_yml: str | None = None

    @property
    def changed(self) -> list[Change]:
        return [c for c in self.changes if c.status in CHANGES]

    @property
    def failed(self) -> list[Change]:
        return [c for c in self.changes if c.status == "failed"]


def setup(es: Elasticsearch, cfg: AgentConfig, request: SetupRequest) -> SetupResult:
    result = SetupResult()
    caps = layout.capabilities(es)
    result.changes += layout.apply(es, cfg.state.index_prefix, cfg.state.security_alias, caps)
    if request.create_role:
        _role(es, cfg, result)
    return result


def _role(es: Elasticsearch, cfg: AgentConfig, result: SetupResult) -> None:
    role = roles.ensure_role(es, cfg)
    result.changes.append(role)
    if role.status == "refused":
        # The same privileges as a file-realm role, which every node reads from its config dir.
        result.roles_yml = roles.roles_yml(cfg)


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
    return "\n".join(lines)
