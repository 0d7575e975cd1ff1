"""An index block on one of the agent's own indices, or the index deleted, said as what it
is, on the real node.

A write block (`index.blocks.write`) answers 403 and the flood-stage disk watermark's
`read_only_allow_delete` answers 429: the agent said "check its role and credentials" for
the one and "overloaded" for the other, sending the operator to the wrong fix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from elasticsearch import ApiError, Elasticsearch

from nis2triage.agent import describe_outage
from nis2triage.esclient import ESSettings
from nis2triage.metrics import condition_of
from nis2triage.store import Store, first_index

from support import client_for


@pytest.fixture
def store(es: Elasticsearch, index_name: str) -> Store:
    store = Store(es, index_name)
    store.ensure_indices()
    return store


@pytest.fixture(params=["index.blocks.write", "index.blocks.read_only_allow_delete"])
def blocked(request: pytest.FixtureRequest, store: Store) -> Iterator[str]:
    """The state index under one of the two blocks, lifted afterwards."""
    index = first_index(store.index("state"))
    store.es.indices.put_settings(index=index, settings={request.param: True})
    yield request.param
    store.es.indices.put_settings(index=index, settings={request.param: None})


def refused_write(store: Store) -> ApiError:
    with pytest.raises(ApiError) as caught:
        store.put("state", "source-auth", {"kind": "checkpoint"})
    return caught.value


def test_a_blocked_state_index_is_said_as_a_block_with_its_fix(store: Store, blocked: str) -> None:
    said = describe_outage(refused_write(store))

    assert said.startswith(f"{first_index(store.index('state'))} takes no writes: ")
    assert "role" not in said and "overloaded" not in said
    assert f'"{blocked}": null' in said


def test_the_flood_stage_watermark_is_named_with_the_disk_to_free(store: Store) -> None:
    index = first_index(store.index("state"))
    store.es.indices.put_settings(
        index=index, settings={"index.blocks.read_only_allow_delete": True}
    )
    try:
        said = describe_outage(refused_write(store))
    finally:
        store.es.indices.put_settings(
            index=index, settings={"index.blocks.read_only_allow_delete": None}
        )

    assert "flood-stage disk watermark" in said and "free disk space" in said


def test_a_blocked_write_counts_as_rejected_writes(store: Store, blocked: str) -> None:
    assert condition_of(refused_write(store)) == "writes_rejected"


def test_a_deleted_state_index_is_said_as_missing_with_setup_as_the_fix(
    es: Elasticsearch, es_settings: ESSettings, store: Store
) -> None:
    # The agent's role may write its indices but not create them: a write to the deleted
    # one is a 403 on `auto_create`, which was said as "check its role and credentials".
    es.indices.delete(index=first_index(store.index("state")))
    rights = [f"{store.prefix}-*"]
    with client_for(es, es_settings, "no-create", rights, ["read", "write"]) as agent_es:
        said = describe_outage(refused_write(Store(agent_es, store.prefix)))

    assert said.startswith(f"{store.index('state')} does not exist")
    assert "nis2triage setup" in said and "role" not in said
