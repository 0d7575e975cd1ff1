"""At start, the inventory's assets that no recent event names are said: a misspelt host
would otherwise keep a critical system's alerts off the route its criticality sets."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch, helpers

from nis2triage import esclient
from nis2triage.agent import Agent
from nis2triage.assetcheck import Reader, unseen
from nis2triage.assets import Inventory
from nis2triage.config import load_config

from support import write_agent_config

MAPPING = {
    "properties": {
        "@timestamp": {"type": "date"},
        "host": {"properties": {"name": {"type": "keyword"}, "hostname": {"type": "keyword"},
                                "ip": {"type": "ip"}}},
        "source": {"properties": {"ip": {"type": "ip"}}},
        "related": {"properties": {"ip": {"type": "ip"}}},
        "event": {"properties": {"category": {"type": "keyword"}}},
    }
}  # fmt: skip

INVENTORY = Inventory.model_validate(
    {
        "assets": [
            {"name": "dc short", "hosts": ["dc01"], "criticality": "critical"},
            {"name": "web full", "hosts": ["web01.corp.example"], "criticality": "high"},
            {"name": "dc typo", "hosts": ["dc02.corp.exmaple"], "criticality": "critical"},
            {"name": "servers", "networks": ["10.20.0.0/16"]},
            {"name": "printer", "hosts": ["192.0.2.9"], "criticality": "low"},
            {"name": "vpn", "hosts": ["198.51.100.7"]},
            {"name": "nothing listed"},
        ]
    }
)


def index_events(es: Elasticsearch, index: str, days_ago: float = 0.1) -> None:
    at = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    docs = [
        {"host": {"name": "DC01.corp.example"}},  # the entry's short name, another case
        {"host": {"hostname": "WEB01"}},  # the entry's full name, written short
        {"source": {"ip": "10.20.3.4"}, "event": {"category": "network"}},
        {"related": {"ip": ["203.0.113.1", "198.51.100.7"]}},
        {"host": {"name": "dc02.corp.example"}},  # what the typo meant
    ]
    es.indices.create(index=index, mappings=MAPPING)
    actions = ({"_index": index, "_source": {"@timestamp": at, **d}} for d in docs)
    helpers.bulk(es, actions, refresh=True)


def test_the_assets_no_event_names_are_found_as_the_agent_matches_alerts(
    es: Elasticsearch, index_name: str
) -> None:
    index_events(es, index_name)

    missing = unseen(es, [Reader("auth", [index_name], "@timestamp")], INVENTORY)

    assert [a.name for a in missing] == ["dc typo", "printer"]


def test_a_source_with_no_recent_event_or_a_query_that_takes_none_says_nothing(
    es: Elasticsearch, index_name: str
) -> None:
    index_events(es, index_name, days_ago=10)
    quiet = Reader("auth", [index_name], "@timestamp")
    other = Reader("other", [f"{index_name}-missing"], "@timestamp")

    assert unseen(es, [quiet, other], INVENTORY) == []


def test_a_sources_own_query_bounds_what_counts_as_seen(es: Elasticsearch, index_name: str) -> None:
    index_events(es, index_name)
    network = Reader(
        "network", [index_name], "@timestamp", ({"term": {"event.category": "network"}},)
    )

    missing = unseen(es, [network], INVENTORY)

    assert [a.name for a in missing] == ["dc short", "web full", "dc typo", "printer", "vpn"]


@pytest.mark.usefixtures("agent_env")
def test_the_agent_says_them_once_at_start_most_critical_first(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    index_events(es, index_name)
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    (tmp_path / "assets.yml").write_text(
        "assets:\n"
        "  - {name: printer, hosts: [192.0.2.9], criticality: low}\n"
        "  - {name: dc typo, hosts: [dc02.corp.exmaple], criticality: critical}\n"
        "  - {name: dc, hosts: [dc01.corp.example], criticality: critical}\n"
    )
    agent = Agent(load_config(config), es, snapshot_key=b"s" * 32, pseudonym_key=b"p" * 32)

    with caplog.at_level(logging.WARNING, logger="nis2triage.assetcheck"):
        agent.start()

    [said] = [r.getMessage() for r in caplog.records if r.name == "nis2triage.assetcheck"]
    assert said.startswith(
        "2 assets of the inventory are named by no event of the last 7 days in sources auth: "
        "dc typo (critical), printer (low)."
    )
    assert "host.name, host.hostname" in said


def test_an_address_given_as_host_name_and_a_name_ending_in_a_dot_are_seen(
    es: Elasticsearch, index_name: str
) -> None:
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    docs = [
        {"host": {"name": "10.9.9.9"}},  # a syslog sender without a name
        {"host": {"name": "DC05.corp.example."}},  # fully qualified, with its root dot
        {"host": {"hostname": "dc06."}},
    ]
    es.indices.create(index=index_name, mappings=MAPPING)
    helpers.bulk(
        es, ({"_index": index_name, "_source": {"@timestamp": at, **d}} for d in docs), refresh=True
    )
    inventory = Inventory.model_validate(
        {
            "assets": [
                {"name": "syslog sender", "hosts": ["10.9.9.9"]},
                {"name": "dc05", "hosts": ["dc05.corp.example"]},
                {"name": "dc06", "hosts": ["dc06.corp.example"]},
                {"name": "dc07", "hosts": ["dc07.corp.example"]},
            ]
        }
    )

    missing = unseen(es, [Reader("auth", [index_name], "@timestamp")], inventory)

    assert [a.name for a in missing] == ["dc07"]


@pytest.mark.usefixtures("agent_env")
def test_an_inventory_check_that_outlasts_the_request_timeout_does_not_stop_the_start(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    index_events(es, index_name)
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    # 15,000 assets (900 kB, within the inventory's limit) take the node some 25 s to look
    # for, five times the timeout below; every other request of the start takes well
    # under a second.
    (tmp_path / "assets.yml").write_text(
        "assets:\n"
        + "".join(
            f"  - {{name: a{i}, hosts: [h{i}.corp.example, 10.{i // 256 % 256}.{i % 256}.1]}}\n"
            for i in range(15_000)
        )
    )
    cfg = load_config(config)
    timeout = cfg.elasticsearch.model_copy(update={"request_timeout": timedelta(seconds=5)})
    slow = cfg.model_copy(update={"elasticsearch": timeout})
    agent = Agent(
        slow, es.options(request_timeout=5), snapshot_key=b"s" * 32, pseudonym_key=b"p" * 32
    )

    with caplog.at_level(logging.INFO, logger="nis2triage.agent"):
        agent.start()

    said = [r.getMessage() for r in caplog.records if "inventory check" in r.getMessage()]
    assert said and said[0].startswith("the inventory check did not finish (ConnectionTimeout)")
    assert "15000 assets in one request, which elasticsearch.request_timeout (5 s)" in said[0]


def test_an_index_mapping_the_fields_as_text_is_not_checked_rather_than_said_unseen(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # No template: host.name becomes text (split into words), source.ip text as well.
    at = datetime.now(UTC).isoformat()
    docs = [{"host": {"name": "web-01.corp.example"}}, {"source": {"ip": "10.20.3.4"}}]
    actions = ({"_index": index_name, "_source": {"@timestamp": at, **d}} for d in docs)
    helpers.bulk(es, actions, refresh=True)

    with caplog.at_level(logging.INFO, logger="nis2triage.assetcheck"):
        missing = unseen(es, [Reader("auth", [index_name], "@timestamp")], INVENTORY)

    assert missing == []
    [said] = [r.getMessage() for r in caplog.records]
    assert said.startswith(
        "source auth: the inventory check is skipped, since host.name is mapped as text"
    )


def test_an_address_in_client_ip_is_seen(es: Elasticsearch, index_name: str) -> None:
    mapping = {
        "properties": {
            "@timestamp": {"type": "date"},
            "client": {"properties": {"ip": {"type": "ip"}}},
        }
    }
    es.indices.create(index=index_name, mappings=mapping)
    at = datetime.now(UTC).isoformat()
    es.index(
        index=index_name, document={"@timestamp": at, "client": {"ip": "192.0.2.9"}}, refresh=True
    )
    printer = Inventory.model_validate({"assets": [{"name": "printer", "hosts": ["192.0.2.9"]}]})

    assert unseen(es, [Reader("auth", [index_name], "@timestamp")], printer) == []


def test_an_internationalised_name_is_seen_in_either_spelling(
    es: Elasticsearch, index_name: str
) -> None:
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    docs = [
        {"host": {"name": "dc01.société.example"}},  # as the inventory writes it
        {"host": {"name": "mail.münchen.example"}},  # the entry is in DNS's ASCII form
        {"host": {"hostname": "files.xn--socit-esab.example"}},  # and the other way round
    ]
    es.indices.create(index=index_name, mappings=MAPPING)
    helpers.bulk(
        es, ({"_index": index_name, "_source": {"@timestamp": at, **d}} for d in docs), refresh=True
    )
    inventory = Inventory.model_validate(
        {
            "assets": [
                {"name": "dc01", "hosts": ["dc01.société.example"]},
                {"name": "mail", "hosts": ["mail.xn--mnchen-3ya.example"]},
                {"name": "files", "hosts": ["files.société.example"]},
                {"name": "web", "hosts": ["web.société.example"]},
            ]
        }
    )

    missing = unseen(es, [Reader("auth", [index_name], "@timestamp")], inventory)

    assert [a.name for a in missing] == ["web"]
