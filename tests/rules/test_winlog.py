"""Exported EVTX events turned into Winlogbeat documents, and the case-insensitive mapping."""

from __future__ import annotations

from typing import Any

import pytest
from elasticsearch import Elasticsearch, helpers

from nis2triage.errors import ConfigError
from nis2triage.rules import winlog, winlog_mapping

from support import shared_data

REG_QUERY = "0022869c-49f7-4ff2-ba03-85ac42ddac58"  # Sysmon 1, reg.exe
REG_SET = "25ffa65d-76d8-4da5-a832-3f2b0136e133"  # Sysmon 13
FILE_CREATE = "13c02350-4177-4e45-ac17-cf7ca628ff5e"  # Sysmon 11
IMAGE_LOAD = "2b140a5c-dc02-4bb8-b6b1-8bdb45714cde"  # Sysmon 7


def flat(case: str) -> dict[str, Any]:
    text = shared_data("sigma-regression", "cases", case, "event.json").read_text()
    return winlog.to_flat_document(winlog.read_exported(text)[0])


def test_process_creation_gets_winlog_and_ecs_fields() -> None:
    doc = flat(REG_QUERY)

    assert {k: doc[k] for k in ("event.code", "winlog.event_id", "host.name", "@timestamp")} == {
        "event.code": "1",
        "winlog.event_id": "1",
        "host.name": "ar-win-dc.attackrange.local",
        "@timestamp": "2025-10-25T13:44:33.433Z",
    }
    assert doc["process.executable"] == "C:\\Windows\\System32\\reg.exe"
    assert doc["process.name"] == "reg.exe"
    assert doc["process.parent.name"] == "cmd.exe"
    assert doc["process.pid"] == 7112
    assert (doc["user.domain"], doc["user.name"]) == ("ATTACKRANGE", "Administrator")
    assert doc["process.hash.md5"] == "eb20e119aaf500e2752dc5a588b54c12"
    assert doc["process.pe.original_file_name"] == "reg.exe"
    assert doc["winlog.event_data"]["CommandLine"] == doc["process.command_line"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (REG_SET, {"registry.hive": "HKU", "registry.value": "EulaAccepted", "event.code": "13"}),
        (
            FILE_CREATE,
            {"file.path": "C:\\tdh.dll", "file.name": "tdh.dll", "file.extension": "dll"},
        ),
        (IMAGE_LOAD, {"file.name": "bthprops.cpl", "file.code_signature.signed": False}),
    ],
    ids=["registry-set", "file-create", "image-load"],
)
def test_sysmon_event_fields(case: str, expected: dict[str, Any]) -> None:
    doc = flat(case)

    assert {k: doc.get(k) for k in expected} == expected


def test_back_to_back_objects_are_all_read() -> None:
    text = shared_data(
        "sigma-regression", "cases", "5de03871-5d46-4539-a82d-3aa992a69a83", "event.json"
    )

    events = winlog.read_exported(text.read_text())

    assert [e["Event"]["System"]["EventID"] for e in events] == [13, 13, 13, 13]


def test_user_data_lands_in_winlog_user_data() -> None:
    doc = flat("d4f1a2b3-7c8e-4d5f-b6a9-1e0c2d3f4e5b")

    assert doc["winlog.user_data"]["xml_name"] == "Operation_ClientFailure"
    assert doc["winlog.user_data"]["ClientProcessId"] == "25920"
    assert doc["winlog.event_data"] == {}


def test_broken_export_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"case\.json:3: not JSON"):
        winlog.read_exported('{"Event": {}}\n\n{"Event": ', "case.json")


def test_unresolved_address_is_left_out() -> None:
    event = {
        "Event": {
            "System": {
                "EventID": 3,
                "Channel": winlog.SYSMON_CHANNEL,
                "Computer": "h",
                "TimeCreated": {"#attributes": {"SystemTime": "2025-01-01T00:00:00Z"}},
            },
            "EventData": {"DestinationIp": "-", "SourceIp": "10.0.0.1", "Initiated": "true"},
        }
    }

    doc = winlog.to_flat_document(event)

    assert ("destination.ip" in doc, doc["source.ip"], doc["network.direction"]) == (
        False,
        "10.0.0.1",
        "egress",
    )


@pytest.mark.parametrize(
    ("mapping", "hits"),
    [(winlog_mapping.KEYWORD, 1), ({"type": "keyword"}, 0)],
    ids=["lowercase-normalizer", "plain-keyword"],
)
def test_wildcards_match_whatever_the_case_only_with_the_normalizer(
    es: Elasticsearch, index_name: str, mapping: dict[str, Any], hits: int
) -> None:
    es.indices.create(index=index_name, mappings={"properties": {"exe": mapping}})
    helpers.bulk(
        es, [{"_index": index_name, "exe": "C:\\Windows\\System32\\REG.exe"}], refresh=True
    )

    found = es.count(index=index_name, query={"query_string": {"query": "exe:*\\\\reg.EXE"}})

    assert found["count"] == hits


def test_documents_index_under_the_mapping(es: Elasticsearch, index_name: str) -> None:
    es.indices.create(index=index_name, **winlog_mapping.index_body())
    cases = (REG_QUERY, REG_SET, FILE_CREATE, IMAGE_LOAD)
    docs = [{"_index": index_name, "_source": winlog.nest(flat(c))} for c in cases]

    assert helpers.bulk(es, docs, refresh=True) == (4, [])
    query = {
        "query_string": {"query": "process.executable.caseless:*\\\\REG.EXE AND process.pid:7112"}
    }
    assert es.count(index=index_name, query=query)["count"] == 1
