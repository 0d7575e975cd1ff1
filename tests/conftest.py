"""Shared fixtures: the real Elasticsearch node and unique, cleaned-up index names."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from nis2triage import esclient, logs


@pytest.fixture(autouse=True)
def _agent_log_handler_removed() -> Iterator[None]:
    """`nis2triage.cli.main` routes logging to the stderr pytest captures for the test;
    left on the root logger, a server thread logging later (aiosmtpd's "EOF received")
    wrote to the closed capture and printed a logging error into the run."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if getattr(h, logs.OURS, False)]:
        root.removeHandler(handler)
    root.setLevel(level)


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


# --- the agent against the real node -------------------------------------------


@pytest.fixture
def agent_env(monkeypatch: pytest.MonkeyPatch, es_settings: esclient.ESSettings) -> None:
    """The secrets the agent reads from the environment, set for this test only."""
    monkeypatch.setenv("NIS2TRIAGE_TEST_ES_PASSWORD", es_settings.password or "")
    monkeypatch.setenv("NIS2TRIAGE_SNAPSHOT_KEY", "test-snapshot-key-0123456789abcdef")
    monkeypatch.setenv("NIS2TRIAGE_PSEUDONYM_KEY", "test-pseudonym-key-0123456789abcdef")
    monkeypatch.setenv("NIS2TRIAGE_CCB_TOKEN", "test-ccb-token-s3cr3t")
