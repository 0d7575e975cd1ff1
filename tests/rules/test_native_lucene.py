"""Lucene query strings: filters checked at load time, and the alert query an analyst pastes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from nis2triage.records import Alert
from nis2triage.rules import lucene

from native_support import CaseIndex, case_index, ev, run


@pytest.mark.parametrize(
    "text",
    [
        'user.name:"a (b" AND x:[1 TO 5}',
        r"path:\/etc\/passwd OR url:a\(b",
        "user.name:/adm(in)?[0-9]+/",
        "date:2024/01/01",
    ],
    ids=["quoted-brackets", "escaped", "regex", "slash-inside-term"],
)
def test_valid_query_strings_pass(text: str) -> None:
    lucene.check_query_string(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a:(b OR c", r"'\(' at character 3 is never closed"),
        ("a:b)", r"'\)' at character 4 closes nothing"),
        ('a:"b', "quote at character 3 is never closed"),
        ("a:/b", r"/regular expression/ at character 3 is never closed"),
        ("a:/*b/", "nothing to repeat"),
        ("a:[1 TO 5)", r"'\)' at character 10 closes nothing"),
    ],
    ids=["paren", "extra-paren", "quote", "regex-open", "regex-bad", "range"],
)
def test_invalid_query_strings_say_where(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lucene.check_query_string(text)


@pytest.mark.parametrize(
    ("dsl", "text"),
    [
        ({"term": {"user.name": "a b"}}, 'user.name:"a b"'),
        ({"terms": {"host.name": ["x", "y"]}}, 'host.name:("x" OR "y")'),
        ({"range": {"bytes": {"gte": 5, "lt": 9}}}, 'bytes:["5" TO "9"}'),
        ({"exists": {"field": "source.ip"}}, "_exists_:source.ip"),
        (
            {"bool": {"filter": [{"term": {"a": 1}}], "must_not": [{"term": {"b": 2}}]}},
            'a:"1" AND NOT b:"2"',
        ),
        ({"bool": {"should": [{"term": {"a": 1}}, {"term": {"a": 2}}]}}, '(a:"1" OR a:"2")'),
        ({"geo_distance": {"distance": "1km", "loc": [0, 0]}}, None),
    ],
    ids=["term", "terms", "range", "exists", "bool", "should", "no-lucene-form"],
)
def test_dsl_to_lucene(dsl: dict[str, Any], text: str | None) -> None:
    assert lucene.from_dsl(dsl) == text


@pytest.fixture(scope="module")
def cases(es: Elasticsearch) -> Iterator[CaseIndex]:
    yield from case_index(es, "lucene")


Expected = Callable[[Alert], float]

PASTED = [
    pytest.param(
        "frequency",
        {"num_events": 3, "timeframe": "5m", "query_key": "source.ip"},
        lambda a: a.score,
        id="frequency",
    ),
    pytest.param("any", {"query_key": "user.name"}, lambda a: a.score, id="any"),
    pytest.param(
        "spike",
        {"timeframe": "5m", "spike_height": 2, "spike_type": "up", "query_key": "host.name"},
        lambda a: a.evidence["current"] + a.evidence["reference"],
        id="spike",
    ),
    pytest.param(
        "cardinality",
        {"cardinality_field": "user.name", "max_cardinality": 1, "timeframe": "5m"},
        lambda a: a.evidence["event_count"],
        id="cardinality",
    ),
    pytest.param("new_term", {"fields": ["user.name"]}, lambda a: a.score, id="new-term"),
    pytest.param(
        "change", {"query_key": "host.name", "compare_key": "user.name"}, lambda a: 2, id="change"
    ),
    pytest.param(
        "frequency",
        {
            "num_events": 3,
            "timeframe": "5m",
            "filter": {"bool": {"must_not": [{"term": {"user.name": "zed"}}]}},
        },
        lambda a: a.score,
        id="dsl-filter",
    ),
]


@pytest.mark.parametrize(("kind", "options", "expected"), PASTED)
def test_alert_query_finds_the_events_it_counted(
    es: Elasticsearch, cases: CaseIndex, kind: str, options: dict[str, Any], expected: Expected
) -> None:
    events = [ev(5 + m * 0.5, ip="192.0.2.1", user=f"u{m}", host="db1") for m in range(4)]
    case = cases.add([ev(1, ip="192.0.2.1", user="u0", host="db1"), *events])
    rule = case.rule(kind, realert="0s", **options)

    alerts = run(es, rule, 5, 10)

    assert alerts
    for alert in alerts:
        found = es.count(index=case.index, query={"query_string": {"query": alert.query}})
        assert found["count"] == expected(alert), alert.query
        assert json.loads(json.dumps(alert.evidence))["start"] == lucene.iso(alert.start)


def test_dsl_filter_without_lucene_form_goes_into_evidence(
    es: Elasticsearch, cases: CaseIndex
) -> None:
    odd = {"bool": {"must_not": [{"ids": {"values": ["no-such-id"]}}]}}
    case = cases.add([ev(6, user="u1")])
    rule = case.rule("any", filter=odd, triage={"early_warning_candidate": True})

    (alert,) = run(es, rule, 5, 10)

    assert alert.evidence["filter_dsl"]["bool"]["filter"][1] == odd
    assert alert.evidence["triage_hint"] == {"early_warning_candidate": True}
    assert es.count(index=case.index, q=alert.query)["count"] == 1
