"""Answers are decoded fast, and exactly as the standard library would decode them."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from nis2triage import esclient
from nis2triage.config import SourceConfig
from nis2triage.source import Cursor, Source

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
TS = (NOW - timedelta(minutes=10)).isoformat()
BIG = 123456789012345678901234567890


def read_back(es: Elasticsearch, index: str, bodies: dict[str, bytes]) -> dict[str, Any]:
    """Each raw JSON body stored as it is (dynamic: false: kept in _source only), then
    read back by a source: the documents by id."""
    es.indices.create(
        index=index, mappings={"dynamic": False, "properties": {"@timestamp": {"type": "date"}}}
    )
    for doc_id, body in bodies.items():
        es.perform_request(
            "PUT",
            f"/{index}/_doc/{doc_id}?refresh=true",
            headers={"content-type": "application/json", "accept": "application/json"},
            body=body,
        )
    cfg = SourceConfig(name="s", indices=[index], batch_size=10)
    read = Source(es, cfg, clock=lambda: NOW).poll(Cursor())
    return {e.id: e.doc for batch in read for e in batch}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Past 64 bits: a float with the last digits lost, would orjson have it.
        (b'{"x":123456789012345678901234567890}', {"x": BIG}),
        (b'{"x":-9223372036854775809}', {"x": -9223372036854775809}),
        (b'{"x":"\\ud800 alone"}', {"x": "\ud800 alone"}),
        (b'{"a":1,"a":2,"b":[0.1,-0.0,"\\u00e9"]}', {"a": 2, "b": [0.1, -0.0, "é"]}),
    ],
)
def test_answers_decode_as_the_standard_library_decodes_them(
    raw: bytes, expected: dict[str, object]
) -> None:
    decoded = esclient._FiniteJson().loads(raw)

    assert decoded == expected == json.loads(raw)
    assert [type(v) for v in decoded.values()] == [type(v) for v in expected.values()]


def test_numbers_past_the_largest_double_and_nan_decode_as_before() -> None:
    decoded = esclient._FiniteJson().loads(b'{"big":1e400,"small":-1e400,"nan":NaN}')

    assert decoded["big"] == math.inf and decoded["small"] == -math.inf
    assert math.isnan(decoded["nan"])


def test_an_event_holding_what_the_fast_decoder_refuses_is_read_whole(
    es: Elasticsearch, index_name: str
) -> None:
    # Kept in _source only, as a shipper may send them: a 30-digit integer, a lone
    # surrogate and a number past the largest double.
    odd = f'{{"@timestamp":"{TS}","user":{{"id":{BIG}}},"note":"\\udc00","size":1e400}}'
    plain = f'{{"@timestamp":"{TS}","user":{{"id":7}}}}'
    bodies = {"odd": odd.encode("utf-8", "surrogatepass"), "plain": plain.encode()}

    docs = read_back(es, index_name, bodies)

    assert docs["odd"]["user"]["id"] == BIG and isinstance(docs["odd"]["user"]["id"], int)
    assert docs["odd"]["note"] == "\udc00"
    assert docs["odd"]["size"] == math.inf
    assert docs["plain"] == {"@timestamp": TS, "user": {"id": 7}}


def test_bytes_that_are_no_utf8_are_read_as_replacement_characters() -> None:
    # An overlong "/" beside a surrogate encoded alone, which json.loads keeps.
    decoded = esclient._FiniteJson().loads(b'{"x":"\xc0\xafetc","y":"\xed\xa0\x80"}')

    assert decoded == {"x": "\ufffd\ufffdetc", "y": "\ud800"}


def test_a_page_holding_an_event_stored_with_bytes_that_are_no_utf8_is_read(
    es: Elasticsearch, index_name: str
) -> None:
    # The node takes C0 AF (an overlong "/") and sends the document back as it came.
    bodies = {
        doc_id: b'{"@timestamp":"%s","user":{"name":"%s"}}' % (TS.encode(), name)
        for doc_id, name in (("odd", b"\xc0\xafetc"), ("plain", b"root"))
    }

    docs = read_back(es, index_name, bodies)

    names = {doc_id: doc["user"]["name"] for doc_id, doc in docs.items()}
    assert names == {"odd": "\ufffd\ufffdetc", "plain": "root"}
