"""The client's response decoding: orjson where it reads exactly as the standard library."""

from __future__ import annotations

import json
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from nis2triage.esclient import ResponseJsonSerializer

# Raw JSON texts as a shipper might send them; each must read back as `json` reads it.
ODD_SOURCES = {
    "long-integer": '{"n": 123456789012345678901234567890}',
    "u64-max": '{"n": 18446744073709551615}',
    "lone-surrogate": '{"s": "\\ud800 half a pair"}',
    "deep-float": '{"x": 0.1000000000000000055511151231257827}',
    "plain": '{"user": {"name": "anna"}, "n": 42, "ok": true, "none": null}',
}


@pytest.mark.parametrize("raw", ODD_SOURCES.values(), ids=ODD_SOURCES.keys())
def test_a_response_reads_as_the_standard_library_reads_it(raw: str) -> None:
    body = f'{{"hits": {{"hits": [{{"_source": {raw}}}]}}}}'.encode()

    assert ResponseJsonSerializer().loads(body) == json.loads(body)


def test_documents_come_back_from_the_node_as_they_were_sent(
    es: Elasticsearch, index_name: str
) -> None:
    # Unmapped fields are kept in the source as sent: no long or text field refuses them.
    es.indices.create(index=index_name, mappings={"dynamic": False})
    for i, raw in enumerate(ODD_SOURCES.values()):
        es.index(index=index_name, id=str(i), document=json.loads(raw), refresh=True)

    resp = es.search(index=index_name, sort=[{"_doc": "asc"}], size=10)
    got: list[Any] = [h["_source"] for h in resp["hits"]["hits"]]

    assert sorted(got, key=repr) == sorted((json.loads(r) for r in ODD_SOURCES.values()), key=repr)


def test_an_empty_body_is_none_not_an_error() -> None:
    assert ResponseJsonSerializer().loads(b"") is None
