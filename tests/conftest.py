"""Shared fixtures: the real Elasticsearch node and unique, cleaned-up index names."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from nis2triage import esclient

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def es_settings() -> esclient.ESSettings:
    """The node `make test` started, or the cluster at NIS2TRIAGE_ES_URL."""
    return esclient.dev_settings()


@pytest.fixture(scope="session")
def es(es_settings: esclient.ESSettings) -> Iterator[Elasticsearch]:
    client = esclient.connect(es_settings)
    yield client
    client.close()


@pytest.fixture
def index_name(es: Elasticsearch, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh index name for this test; every index starting with it is deleted afterwards."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40]
    name = f"t-{stem}-{uuid.uuid4().hex[:8]}"
    yield name
    es.options(ignore_status=404).indices.delete(index=f"{name}*", expand_wildcards="all")


def shared_data(*parts: str) -> Path:
    """A file under ../shared/data; a missing file fails the test loudly rather than skipping."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"real data missing: {path} (the shared/ folder must sit beside the checkout)")
    return path


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


# --- the agent against the real node -------------------------------------------

DETECTORS = REPO / "detectors"
TRIAGE = REPO / "rules" / "triage.yml"


@pytest.fixture
def agent_env(monkeypatch: pytest.MonkeyPatch, es_settings: esclient.ESSettings) -> None:
    """The secrets the agent reads from the environment, set for this test only."""
    monkeypatch.setenv("NIS2TRIAGE_TEST_ES_PASSWORD", es_settings.password or "")
    monkeypatch.setenv("NIS2TRIAGE_SNAPSHOT_KEY", "test-snapshot-key-0123456789abcdef")
    monkeypatch.setenv("NIS2TRIAGE_PSEUDONYM_KEY", "test-pseudonym-key-0123456789abcdef")
    monkeypatch.setenv("NIS2TRIAGE_CCB_TOKEN", "test-ccb-token-s3cr3t")


def write_agent_config(
    tmp_path: Path,
    es_settings: esclient.ESSettings,
    index: str,
    prefix: str,
    notifier: dict[str, object] | None = None,
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
        "triage": str(TRIAGE),
        "assets": str(assets),
        "notifier": notifier or {"mode": "dry-run"},
        "state": {"index_prefix": prefix},
    }
    path = tmp_path / "nis2triage.yml"
    path.write_text(yaml.safe_dump(config))
    return path
