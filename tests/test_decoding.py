"""Answers are decoded fast, and exactly as the standard library would decode them."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from elasticsearch import Elasticsearch

from nis2triage import esclient
from nis2triage.config import SourceConfig
from nis2triage.source import Cursor, Source

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
BIG = 123456789012345678901234567890


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
    # Kept in _source only (dynamic: false), as a shipper may send them: a 30-digit
    # integer, a lone surrogate and a number past the largest double.
    es.indices.create(
        index=index_name,
        mappings={"dynamic": False, "properties": {"@timestamp": {"type": "date"}}},
    )
    ts = (NOW - timedelta(minutes=10)).isoformat()
    odd = f'{{"@timestamp":"{ts}","user":{{"id":{BIG}}},"note":"\\udc00","size":1e400}}'
    plain = f'{{"@timestamp":"{ts}","user":{{"id":7}}}}'
    for doc_id, body in (("odd", odd), ("plain", plain)):
        es.perform_request(
            "PUT",
            f"/{index_name}/_doc/{doc_id}?refresh=true",
            headers={"content-type": "application/json", "accept": "application/json"},
            body=body.encode("utf-8", "surrogatepass"),
        )
    cfg = SourceConfig(name="s", indices=[index_name], batch_size=10)

    events = [e for batch in Source(es, cfg, clock=lambda: NOW).poll(Cursor()) for e in batch]

    docs = {e.id: e.doc for e in events}
    assert docs["odd"]["user"]["id"] == BIG and isinstance(docs["odd"]["user"]["id"], int)
    assert docs["odd"]["note"] == "\udc00"
    assert docs["odd"]["size"] == math.inf
    assert docs["plain"] == {"@timestamp": ts, "user": {"id": 7}}


def test_bytes_that_are_no_utf8_are_read_as_replacement_characters() -> None:
    # An overlong "/" beside a surrogate encoded alone, which json.loads keeps.
    decoded = esclient._FiniteJson().loads(b'{"x":"\xc0\xafetc","y":"\xed\xa0\x80"}')

    assert decoded == {"x": "\ufffd\ufffdetc", "y": "\ud800"}


def test_a_page_holding_an_event_stored_with_bytes_that_are_no_utf8_is_read(
    es: Elasticsearch, index_name: str
) -> None:
    # The node takes C0 AF (an overlong "/") and sends the document back as it came.
    es.indices.create(
        index=index_name,
        mappings={"dynamic": False, "properties": {"@timestamp": {"type": "date"}}},
    )
    ts = (NOW - timedelta(minutes=10)).isoformat()
    for doc_id, name in (("odd", b"\xc0\xafetc"), ("plain", b"root")):
        es.perform_request(
            "PUT",
            f"/{index_name}/_doc/{doc_id}?refresh=true",
            headers={"content-type": "application/json", "accept": "application/json"},
            body=b'{"@timestamp":"%s","user":{"name":"%s"}}' % (ts.encode(), name),
        )
    cfg = SourceConfig(name="s", indices=[index_name], batch_size=10)

    events = [e for batch in Source(es, cfg, clock=lambda: NOW).poll(Cursor()) for e in batch]

    names = {e.id: e.doc["user"]["name"] for e in events}
    assert names == {"odd": "\ufffd\ufffdetc", "plain": "root"}
