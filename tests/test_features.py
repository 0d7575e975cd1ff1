"""Buckets, features and the per-entity cap."""

from __future__ import annotations

import math
from datetime import timedelta

from nis2triage.features import BucketTable, FeatureSpec, Match, get_field

FEATURES = [
    FeatureSpec(name="n", kind="count"),
    FeatureSpec(name="users", kind="distinct", field="user.name"),
    FeatureSpec(name="bad", kind="ratio", where=Match(all_of={"event.outcome": "failure"})),
    FeatureSpec(name="logn", kind="count", transform="log1p"),
]


def doc(user: str, outcome: str) -> dict:
    return {"user": {"name": user}, "event": {"outcome": outcome}}


def test_dotted_fields_nested_or_flat() -> None:
    assert get_field({"source": {"ip": "1.2.3.4"}}, "source.ip") == "1.2.3.4"
    assert get_field({"source.ip": "1.2.3.4"}, "source.ip") == "1.2.3.4"
    assert get_field({"source": "x"}, "source.ip") is None


def test_match_lists_and_exclusions() -> None:
    m = Match(all_of={"event.category": ["authentication", "iam"]}, none_of={"user.name": "svc"})

    assert m.matches({"event": {"category": ["network", "authentication"]}, "user": {"name": "a"}})
    assert not m.matches({"event": {"category": ["authentication"]}, "user": {"name": "svc"}})
    assert not m.matches({"event": {}})


def test_bucket_features() -> None:
    table = BucketTable(timedelta(minutes=5), max_entities=10)
    for i, (user, outcome) in enumerate([("a", "failure"), ("b", "failure"), ("a", "success")]):
        table.add("1.2.3.4", 60_000 * i, doc(user, outcome), FEATURES)

    [(entity, bucket)] = table.close_until(300_000)
    assert entity == "1.2.3.4"
    assert bucket.raw(FEATURES) == {"n": 3.0, "users": 2.0, "bad": 2 / 3, "logn": 3.0}
    assert bucket.vector(FEATURES)["logn"] == math.log1p(3)


def test_buckets_close_only_once_they_end() -> None:
    table = BucketTable(timedelta(minutes=5), max_entities=10)
    table.add("e", 299_999, doc("a", "failure"), FEATURES)
    table.add("e", 300_000, doc("a", "failure"), FEATURES)

    assert [b.start_ms for _, b in table.close_until(300_000)] == [0]
    assert table.close_until(599_999) == []
    assert [b.start_ms for _, b in table.close_until(600_000)] == [300_000]


def test_the_least_recently_active_entity_is_evicted_and_counted() -> None:
    table = BucketTable(timedelta(minutes=5), max_entities=2)
    for entity in ["a", "b", "a", "c"]:
        table.add(entity, 0, doc("u", "failure"), FEATURES)

    assert list(table.open) == ["a", "c"]
    assert (table.evicted_entities, table.evicted_events) == (1, 1)
