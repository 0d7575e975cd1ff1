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
