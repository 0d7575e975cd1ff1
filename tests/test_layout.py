"""The index layout's definitions, for clusters with and without data streams and ILM."""

from __future__ import annotations

import copy

import pytest
import yaml
from pydantic import ValidationError

from nis2triage import layout
from nis2triage.config import AgentConfig, RulesConfig
from nis2triage.layout import Capabilities, lifecycle_body, policy_name, template_body
from nis2triage.roles import (
    OWN_PRIVILEGES,
    ROLE_NAME,
    own_names,
    read_patterns,
    role_descriptor,
    role_name,
    roles_yml,
)
from nis2triage.store import INDICES, IndexSpec

from support import REPO

FULL = Capabilities(data_streams=True, ilm=True)
BARE = Capabilities(data_streams=False, ilm=False)


@pytest.mark.parametrize("what", sorted(INDICES))
def test_without_data_streams_every_index_is_an_alias_over_numbered_indices(what: str) -> None:
    body = template_body("acme", what, INDICES[what], BARE)

    assert body["index_patterns"] == [f"acme-{what}", f"acme-{what}-*"]
    assert "data_stream" not in body
    assert "index.lifecycle.name" not in body["template"]["settings"]


@pytest.mark.parametrize(
    ("what", "stream"),
    [(w, s.append_only) for w, s in sorted(INDICES.items())],
    ids=sorted(INDICES),
)
def test_with_data_streams_only_append_only_indices_become_streams(what: str, stream: bool) -> None:
    body = template_body("acme", what, INDICES[what], FULL)

    assert ("data_stream" in body) is stream
    assert ("index.lifecycle.name" in body["template"]["settings"]) is stream


def test_the_alerts_template_puts_the_security_alias_on_new_indices_only_without_streams() -> None:
    spec = INDICES["alerts"]

    bare = template_body("acme", "alerts", spec, BARE, "logs-acme.alerts-default")
    full = template_body("acme", "alerts", spec, FULL, "logs-acme.alerts-default")

    assert bare["template"]["aliases"] == {"logs-acme.alerts-default": {}}
    assert "aliases" not in full["template"]


def test_the_digest_follows_the_mapping() -> None:
    spec = INDICES["state"]
    changed = IndexSpec(copy.deepcopy(spec.mapping))
    changed.mapping["properties"]["extra"] = {"type": "keyword"}

    before = template_body("acme", "state", spec, BARE)["_meta"]
    after = template_body("acme", "state", changed, BARE)["_meta"]

    assert before != after
    assert before == template_body("acme", "state", spec, BARE)["_meta"]


def test_the_lifecycle_policy_rolls_over_and_deletes_nothing() -> None:
    phases = lifecycle_body("acme")["phases"]

    assert list(phases) == ["hot"]
    assert "rollover" in phases["hot"]["actions"]
    assert policy_name("acme") == "acme-append-only"


def agent_config(prefix: str) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "elasticsearch": {"hosts": ["http://127.0.0.1:9200"]},
            "entity": {
                "legal_name": "Test NV",
                "enterprise_number": "0403.019.261",
                "sector": "energy",
                "entity_class": "essential",
            },
            "sources": [
                {"name": "auth", "indices": ["logs-system.auth-*", "filebeat-*"]},
                {"name": "win", "indices": ["logs-windows.*", "filebeat-*"]},
            ],
            "state": {"index_prefix": prefix},
        }
    )


def test_the_role_reads_the_sources_and_writes_only_under_the_prefix() -> None:
    role = role_descriptor(agent_config("acme"))

    assert role["cluster"] == ["monitor"]
    assert role["indices"] == [
        {
            "names": ["filebeat-*", "logs-system.auth-*", "logs-windows.*"],
            "privileges": ["read", "view_index_metadata"],
        },
        {"names": own_names("acme"), "privileges": OWN_PRIVILEGES},
    ]
    assert len(own_names("acme")) == 18 and "acme-*" not in own_names("acme")
    assert {"acme-pseudonyms", "/acme-pseudonyms-[0-9]{6}/"} <= set(own_names("acme"))
    assert not {"manage", "create_index", "delete_index", "all"} & set(OWN_PRIVILEGES)


def test_the_role_also_reads_what_the_rules_search() -> None:
    cfg = agent_config("acme").model_copy(
        update={
            "rules": RulesConfig(
                native=[str(REPO / "rules" / "detection" / "port-scan.yml")],
                sigma=["sigma/"],
                sigma_indices=["winlogbeat-*"],
            )
        }
    )

    assert read_patterns(cfg) == [
        "filebeat-*",
        "logs-*",
        "logs-system.auth-*",
        "logs-windows.*",
        "packetbeat-*",
        "winlogbeat-*",
    ]


def test_the_role_reads_each_name_of_an_item_that_lists_several() -> None:
    # Granted as one name, `a, b-*` covered neither a nor b-*: the agent, which asks about
    # each, refused to start and sent the operator back to a setup that could not help.
    cfg = agent_config("acme")
    auth = cfg.sources[0].model_copy(update={"indices": ["logs-a, logs-b-*"]})
    cfg = cfg.model_copy(
        update={
            "sources": [auth],
            "rules": RulesConfig(sigma=["sigma/"], sigma_indices=["winlogbeat-*,logs-windows.*"]),
        }
    )

    assert read_patterns(cfg) == ["logs-a", "logs-b-*", "logs-windows.*", "winlogbeat-*"]


def test_the_roles_yml_entry_is_the_same_role() -> None:
    cfg = agent_config("acme")

    entry = yaml.safe_load(roles_yml(cfg))

    assert entry["acme_agent"]["indices"] == role_descriptor(cfg)["indices"]
    assert "metadata" not in entry["acme_agent"]


@pytest.mark.parametrize(
    ("prefix", "role"),
    [("nis2triage", ROLE_NAME), ("acme", "acme_agent"), ("soc-Prod.2", "soc_prod_2_agent")],
)
def test_each_prefix_has_a_role_of_its_own(prefix: str, role: str) -> None:
    assert role_name(prefix) == role


def test_the_configuration_refuses_the_prefixes_setup_would_refuse() -> None:
    from nis2triage import config as configuration

    assert configuration.MAX_PREFIX == layout.MAX_NAME_BYTES - layout.LONGEST_TAIL
    with pytest.raises(ValidationError, match="at most 221 characters"):
        configuration.StateConfig(index_prefix="a" * 222)
    assert configuration.StateConfig(index_prefix="a" * 221).index_prefix == "a" * 221
