"""Sigma's PCRE-style regular expressions rewritten for Lucene's RegExp."""

from __future__ import annotations

import re

import pytest
from elasticsearch import Elasticsearch, helpers

from nis2triage.rules import winlog_mapping
from nis2triage.rules.lucene_regex import UnsupportedRegex, translate


@pytest.mark.parametrize(
    ("sigma", "lucene"),
    [
        ("foo", ".*foo.*"),
        ("^foo", "foo.*"),
        ("foo$", ".*foo"),
        ("^a|b$", "a.*|.*b"),
        ("(?i)^c:\\\\windows", "c:\\\\windows.*"),
        ("(?:ab|cd){2,}", ".*(ab|cd){2,}.*"),
        ("(?P<x>a)", ".*(a).*"),
        ("\\S+\\W\\D", ".*[^\\s]+[^\\w][^\\d].*"),
        ("a@b#c<d>e~f&g", ".*a\\@b\\#c\\<d\\>e\\~f\\&g.*"),
        ('x"/y', '.*x\\"\\/y.*'),
        ("x+?y*?", ".*x+y*.*"),
        ("a{,3}", ".*a\\{,3}.*"),
        ("[^\\]a-z]", ".*[^\\]a-z].*"),
        ("\\x41\\t", ".*A\t.*"),
        (".{6,64}x\\d{2,10}", ".*.{6,}x\\d{2,10}.*"),
    ],
    ids=[
        "unanchored",
        "start",
        "end",
        "branches",
        "flags",
        "noncapturing",
        "named",
        "negated-classes",
        "lucene-operators",
        "quote-slash",
        "lazy",
        "literal-brace",
        "class",
        "escapes",
        "wide-repeat",
    ],
)
def test_translation(sigma: str, lucene: str) -> None:
    assert translate(sigma) == lucene


@pytest.mark.parametrize(
    ("sigma", "reason"),
    [
        ("foo(?=bar)", "lookaround"),
        ("\\bfoo", "'\\\\b'"),
        ("(\\w)\\1", "'\\\\1'"),
        ("(^|\\s)foo", "anchor"),
        ("[[:alpha:]]", "POSIX"),
        ("[abc", "not closed"),
    ],
    ids=["lookahead", "word-boundary", "backreference", "inner-anchor", "posix", "open-class"],
)
def test_constructs_lucene_lacks_are_refused(sigma: str, reason: str) -> None:
    with pytest.raises(UnsupportedRegex, match=reason):
        translate(sigma)


SAMPLES = [
    "C:\\Windows\\System32\\cmd.exe /c whoami",
    "powershell -enc SQBFAFgA",
    "user@example.org",
    "C:\\Users\\Public\\x.ps1",
    "a\tb",
]
PATTERNS = [
    "exe (\\/c|\\/r)(\\s|)whoami",
    "\\s-e(nc)?\\s+[A-Z]",
    "^c:\\\\windows\\\\",
    "@example\\.org$",
    "\\S+\\.ps1$",
    "a\\tb",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_node_matches_what_python_re_search_finds(
    es: Elasticsearch, index_name: str, pattern: str
) -> None:
    mapping = {"properties": {"v": winlog_mapping.KEYWORD}}
    es.indices.create(index=index_name, mappings=mapping)
    docs = [{"_index": index_name, "_id": str(i), "v": s} for i, s in enumerate(SAMPLES)]
    helpers.bulk(es, docs, refresh=True)
    query = {"query_string": {"query": f"v:/{translate(pattern)}/"}}

    hits = es.search(index=index_name, query=query, size=10)["hits"]["hits"]

    expected = {str(i) for i, s in enumerate(SAMPLES) if re.search(pattern, s, re.IGNORECASE)}
    assert {hit["_id"] for hit in hits} == expected
    assert expected
