"""Setup keeps the agent's API key in step with its role, on the real node.

An API key holds a copy of the role it was made with: updating the role alone left
an existing key unable to read a source index added to the configuration, and the
agent then read nothing without saying why (a new user's run of the README).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from elasticsearch import AuthorizationException, Elasticsearch

from nis2triage import esclient, provision, roles
from nis2triage.config import AgentConfig, load_config
from nis2triage.store import Store

from support import write_agent_config

pytestmark = pytest.mark.es


def with_source(cfg: AgentConfig, index: str) -> AgentConfig:
    source = cfg.sources[0].model_copy(update={"indices": [index]})
    return cfg.model_copy(update={"sources": [source]})


def test_setup_brings_an_existing_key_up_to_a_changed_role(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    first, added = f"{index_name}-first", f"{index_name}-added"
    for index in (first, added):
        es.index(index=index, document={"@timestamp": "2026-12-01T00:00:00Z"}, refresh=True)
    before = load_config(write_agent_config(tmp_path, es_settings, first, f"{index_name}-k"))
    after = with_source(before, added)
    role = roles.role_name(before.state.index_prefix)
    key_id = None
    try:
        roles.ensure_role(es, before)
        made, key = roles.ensure_api_key(es, before)
        assert made.status == "created" and key is not None
        key_id = key.id
        agent = esclient.connect(replace(es_settings, username=None, api_key=key.encoded))
        with pytest.raises(AuthorizationException):
            agent.count(index=added)

        assert roles.ensure_role(es, after).status == "updated"
        updated, again = roles.ensure_api_key(es, after)
        unchanged, _ = roles.ensure_api_key(es, after)

        assert (updated.status, again) == ("updated", None)
        assert agent.count(index=added)["count"] == 1
        assert unchanged.status == "unchanged"
    finally:
        if key_id is not None:
            es.security.invalidate_api_key(ids=[key_id])
        es.options(ignore_status=404).security.delete_role(name=role)


def test_a_credential_that_may_not_manage_security_fails_setup_without_roles_yml(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # The agent's own key given to setup: the cluster could store the role, this key may not.
    cfg = load_config(write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-k"))
    rights = {"indices": [{"names": [f"{index_name}*"], "privileges": ["read"]}]}
    key = es.security.create_api_key(name=f"{index_name}-own", role_descriptors={"own": rights})
    try:
        own = esclient.connect(replace(es_settings, username=None, api_key=key["encoded"]))
        result = provision.SetupResult()
        provision._role(own, cfg, result)
    finally:
        es.security.invalidate_api_key(ids=[key["id"]])

    [role] = result.changes
    assert (role.what, role.status) == ("role", "failed")
    assert "--admin-user" in role.note
    assert result.failed == [role] and result.roles_yml is None
    assert "roles.yml" not in provision.render(result)


def test_a_prefix_whose_role_name_another_prefix_holds_is_refused_not_rewritten(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    first = load_config(write_agent_config(tmp_path / "a", es_settings, index_name, "s5-team"))
    second = load_config(write_agent_config(tmp_path / "b", es_settings, index_name, "s5_team"))
    name = roles.role_name("s5-team")
    try:
        made = roles.ensure_role(es, first)
        clash = roles.ensure_role(es, second)
        kept = es.security.get_role(name=name).body[name]
    finally:
        es.security.delete_role(name=name)

    assert name == roles.role_name("s5_team") and made.status in ("created", "updated")
    assert (clash.status, clash.name) == ("failed", name)
    assert "state prefix 's5-team'" in clash.note and "in a letter or digit" in clash.note
    assert kept["metadata"]["index_prefix"] == "s5-team"
    assert roles.own_names("s5-team") in [i["names"] for i in kept["indices"]]


def test_the_role_of_prefix_soc_reaches_none_of_agent_soc_audits_indices(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # `soc-audit` begins with `soc-` and an index name of `soc`'s own (`audit`).
    soc, other = f"{index_name}-soc", f"{index_name}-soc-audit"
    for prefix in (soc, other):
        Store(es, prefix).ensure_indices()
    cfg = load_config(write_agent_config(tmp_path, es_settings, index_name, soc))
    key = es.security.create_api_key(
        name=f"{index_name}-soc", role_descriptors={"soc": roles.role_descriptor(cfg)}
    ).body
    try:
        agent = esclient.connect(replace(es_settings, username=None, api_key=key["encoded"]))
        own = agent.count(index=f"{soc}-audit")["count"]
        with pytest.raises(AuthorizationException):
            agent.search(index=f"{other}-pseudonyms")
        with pytest.raises(AuthorizationException):
            agent.search(index=f"{other}-pseudonyms-000001")
    finally:
        es.security.invalidate_api_key(ids=[key["id"]])

    assert own == 0  # its own audit index, read through its alias


def test_a_role_made_before_roles_named_their_prefix_is_still_owned(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    older = {
        "cluster": ["monitor"],
        "indices": [{"names": ["s5-team-*"], "privileges": roles.OWN_PRIVILEGES}],
        "metadata": {"managed_by": "nis2triage setup"},
    }
    name = roles.role_name("s5_team")
    es.security.put_role(name=name, **older)
    cfg = load_config(write_agent_config(tmp_path, es_settings, index_name, "s5_team"))
    try:
        clash = roles.ensure_role(es, cfg)
    finally:
        es.security.delete_role(name=name)

    assert clash.status == "failed" and "state prefix 's5-team'" in clash.note
