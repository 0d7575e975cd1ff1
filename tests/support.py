"""Helpers shared by the tests: paths, real data, agent configurations, SSH log runs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from nis2triage import esclient, sshlog
from nis2triage.agent import Agent, CycleReport
from nis2triage.config import load_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DETECTORS = REPO / "detectors"
TRIAGE = REPO / "rules" / "triage.yml"


def shared_data(*parts: str) -> Path:
    """A file under ../shared/data; a missing file fails the test loudly rather than skipping."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"real data missing: {path} (the shared/ folder must sit beside the checkout)")
    return path


def write_agent_config(
    tmp_path: Path,
    es_settings: esclient.ESSettings,
    index: str,
    prefix: str,
    notifier: dict[str, object] | None = None,
    rules: dict[str, object] | None = None,
) -> Path:
    """A complete agent configuration file for `index`, with state under `prefix`."""
    import yaml

    tmp_path.mkdir(parents=True, exist_ok=True)
    assets = tmp_path / "assets.yml"
    assets.write_text(
        "assets:\n  - {name: labsz, hosts: [LabSZ], criticality: high, service: research}\n"
    )
    config = {
        "elasticsearch": {
            "hosts": list(es_settings.hosts),
            "username": es_settings.username,
            "password_env": "NIS2TRIAGE_TEST_ES_PASSWORD",
        },
        "entity": {
            "legal_name": "Test Entity NV",
            "enterprise_number": "0403.019.261",
            "sector": "energy",
            "entity_class": "essential",
        },
        "sources": [{"name": "auth", "indices": [index], "batch_size": 250}],
        "detectors": [str(DETECTORS / "*.yml")],
        "rules": rules or {},
        "triage": str(TRIAGE),
        "assets": str(assets),
        "notifier": notifier or {"mode": "dry-run"},
        "state": {"index_prefix": prefix},
    }
    path = tmp_path / "nis2triage.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def real_log_docs() -> list[dict[str, Any]]:
    """The real OpenSSH log as ECS documents, moved to yesterday."""
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    docs = sshlog.read_log(shared_data("loghub", "OpenSSH_2k.log"), 2016)
    return list(sshlog.move_to(docs, yesterday))


def authentication_events(docs: list[dict[str, Any]]) -> int:
    """How many of `docs` have an event category: the sshd lines parsed as logins, which
    are all the shipped detectors' filters ask the node for (`pushdown`)."""
    return sum(1 for d in docs if "category" in d.get("event", {}))


def run_agent(config: Path, es: Elasticsearch) -> CycleReport:
    """One pass of a fresh agent (as after a restart) over `config`."""
    agent = Agent(
        load_config(config), es, b"test-snapshot-key-0123456789abcdef", b"pseudonym-key-0123456789"
    )
    agent.start()
    return agent.run_once()


@contextmanager
def client_for(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    name: str,
    names: list[str],
    privileges: list[str] | None = None,
) -> Iterator[Elasticsearch]:
    """A client whose API key holds `privileges` (every one by default) on `names` and
    nothing else; the key is invalidated afterwards."""
    from dataclasses import replace

    rights = [{"names": names, "privileges": privileges or ["all"]}]
    key = es.security.create_api_key(name=name, role_descriptors={"part": {"indices": rights}}).body
    try:
        yield esclient.connect(replace(es_settings, username=None, api_key=key["encoded"]))
    finally:
        es.security.invalidate_api_key(ids=[key["id"]])


@contextmanager
def own_node(name: str, **env: str) -> Iterator[Any]:
    """A second local node for tests that stop, restart or reconfigure one.

    Its home is in the checkout, not under pytest's private temporary folder, which
    the node's unprivileged user could not reach.
    """
    from nis2triage import localnode

    home = localnode.repo_root() / f".es-{name}"
    shutil.rmtree(home, ignore_errors=True)
    env = {"NIS2TRIAGE_ES_HOME": str(home), "NIS2TRIAGE_ES_HEAP": "512m", **env}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield localnode
    finally:
        localnode.stop()
        shutil.rmtree(home, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
