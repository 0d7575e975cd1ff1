"""An index block on one of the agent's own indices, or the index deleted, said as what it
is, on the real node.

A write block (`index.blocks.write`) answers 403 and the flood-stage disk watermark's
`read_only_allow_delete` answers 429: the agent said "check its role and credentials" for
the one and "overloaded" for the other, sending the operator to the wrong fix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import ApiError, Elasticsearch

from nis2triage.agent import describe_outage
from nis2triage.demo import index_docs
from nis2triage.errors import StoreError
from nis2triage.esclient import ESSettings
from nis2triage.metrics import condition_of
from nis2triage.status import index_faults
from nis2triage.store import Store, first_index

from support import client_for, real_log_docs, run_agent, write_agent_config


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


ALERT = [("a1", {"@timestamp": "2026-12-05T10:00:00Z", "message": "test alert"})]


def test_a_closed_alerts_index_fails_the_write_instead_of_dead_lettering_every_alert(
    store: Store,
) -> None:
    # A closed index answers each bulk item 400 `index_closed_exception`, which was taken
    # for the mapping refusing the document: every alert went to the dead letters, the
    # checkpoint moved past its bucket, and the alerts index never held it.
    index = first_index(store.index("alerts"))
    store.es.indices.close(index=index)
    try:
        with pytest.raises(StoreError) as caught:
            store.create_many("alerts", ALERT, refresh=True)
    finally:
        store.es.indices.open(index=index)

    assert f"{index} is closed" in str(caught.value)
    assert f"POST {index}/_open" in str(caught.value)
    store.refresh("deadletter")
    assert store.es.count(index=store.index("deadletter"))["count"] == 0
    assert store.create_many("alerts", ALERT, refresh=True) == 1


@pytest.mark.parametrize("blocked", ["index.blocks.write", "index.blocks.read_only"])
def test_a_block_refusing_a_bulk_write_is_said_with_the_request_that_lifts_it(
    store: Store, blocked: str
) -> None:
    # Alerts, outbox and dead letters are written in bulk, whose refusal said only "refused
    # writes ... (403: ...blocked by...)". (The node lifts read_only_allow_delete by itself
    # on a disk with room, during the bulk helper's retries, so it is not tried here.)
    index = first_index(store.index("alerts"))
    store.es.indices.put_settings(index=index, settings={blocked: True})
    try:
        with pytest.raises(StoreError) as caught:
            store.create_many("alerts", ALERT)
    finally:
        store.es.indices.put_settings(index=index, settings={blocked: None})

    said = str(caught.value)
    assert said.startswith(f"{index} takes no writes: ")
    assert f'"{blocked}": null' in said


def test_a_closed_state_index_is_said_with_the_request_that_opens_it(store: Store) -> None:
    index = first_index(store.index("state"))
    store.es.indices.close(index=index)
    try:
        said = describe_outage(refused_write(store))
    finally:
        store.es.indices.open(index=index)

    assert said.startswith(f"{index} is closed")
    assert f"POST {index}/_open" in said


@pytest.mark.usefixtures("agent_env")
def test_an_outbox_made_again_with_another_mapping_holds_the_early_warnings_back_not_away(
    es: Elasticsearch, es_settings: ESSettings, index_name: str, tmp_path: Path
) -> None:
    # The outbox deleted and made again by hand, mapping `payload` as a keyword: each early
    # warning was refused "by the mapping" and set aside as a dead letter, never to be sent,
    # and the pass ended well.
    index_docs(es, index_name, real_log_docs())
    reference = run_agent(
        write_agent_config(tmp_path / "ref", es_settings, index_name, f"{index_name}-r"), es
    )
    prefix = f"{index_name}-f"
    config = write_agent_config(tmp_path / "f", es_settings, index_name, prefix)
    Store(es, prefix).ensure_indices()
    es.indices.delete(index=first_index(f"{prefix}-outbox"))
    es.indices.create(
        index=f"{prefix}-outbox", mappings={"properties": {"payload": {"type": "keyword"}}}
    )

    with pytest.raises(StoreError) as caught:
        run_agent(config, es)
    assert f"{prefix}-outbox has a mapping nis2triage did not make" in str(caught.value)
    assert "nis2triage setup" in str(caught.value)
    es.indices.refresh(index=f"{prefix}-deadletter")
    assert es.count(index=f"{prefix}-deadletter")["count"] == 0

    es.indices.delete(index=f"{prefix}-outbox")
    Store(es, prefix).ensure_indices()
    run_agent(config, es)
    assert outbox_ids(es, prefix) == outbox_ids(es, f"{index_name}-r")
    assert reference.notifications_queued == len(outbox_ids(es, prefix)) > 0


def outbox_ids(es: Elasticsearch, prefix: str) -> set[str]:
    es.indices.refresh(index=f"{prefix}-outbox")
    hits = es.search(index=f"{prefix}-outbox", size=100, _source=False)["hits"]["hits"]
    return {h["_id"] for h in hits}


def test_status_names_each_closed_or_blocked_own_index_with_its_fix(store: Store) -> None:
    # `status` said only, once the checkpoint was five minutes old, that the agent was
    # "stopped, stuck or failing (its log says which)".
    alerts, deadletter = first_index(store.index("alerts")), first_index(store.index("deadletter"))
    store.es.indices.put_settings(index=alerts, settings={"index.blocks.write": True})
    store.es.indices.close(index=deadletter)
    try:
        said = index_faults(store)
    finally:
        store.es.indices.put_settings(index=alerts, settings={"index.blocks.write": None})
        store.es.indices.open(index=deadletter)

    assert len(said) == 2
    assert f'PUT {alerts}/_settings {{"index.blocks.write": null}}' in said[0]
    assert said[1].startswith(f"{deadletter} is closed") and f"POST {deadletter}/_open" in said[1]
    assert index_faults(store) == []


def test_a_state_index_made_again_with_another_mapping_is_said_with_setup_as_the_fix(
    es: Elasticsearch, index_name: str
) -> None:
    # The checkpoint's refusal was said as "Elasticsearch answered 400 (document_parsing_
    # exception: ... field [cursor] ...)", naming no index and no fix.
    store = Store(es, index_name)
    es.indices.create(
        index=store.index("state"), mappings={"properties": {"cursor": {"type": "keyword"}}}
    )

    with pytest.raises(StoreError) as caught:
        store.put_versioned("state", "source-auth", {"cursor": {"events": 1}}, None)

    said = describe_outage(caught.value)
    assert said.startswith(f"{store.index('state')} has a mapping nis2triage did not make")
    assert "field [cursor]" in said and "nis2triage setup" in said


def test_a_refusal_naming_an_index_is_said_with_it(es: Elasticsearch, index_name: str) -> None:
    es.indices.create(index=f"{index_name}-incidents")
    with pytest.raises(ApiError) as caught:
        es.search(index=f"{index_name}-incidents", sort=[{"opened_at": "asc"}])

    assert describe_outage(caught.value).startswith(
        f"Elasticsearch answered 400 on {index_name}-incidents ("
    )
