"""Buckets, features and the per-entity cap."""

from __future__ import annotations

import math
import pickle
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from nis2triage.features import (
    Baselines,
    BucketTable,
    FeatureSpec,
    Filler,
    Match,
    Rising,
    get_field,
)

FEATURES = [
    FeatureSpec(name="n", kind="count"),
    FeatureSpec(name="users", kind="distinct", field="user.name"),
    FeatureSpec(name="bad", kind="ratio", where=Match(all_of={"event.outcome": "failure"})),
    FeatureSpec(name="logn", kind="count", transform="log1p"),
]
FILL = Filler(FEATURES)


def doc(user: str, outcome: str) -> dict:
    return {"user": {"name": user}, "event": {"outcome": outcome}}


def test_dotted_fields_nested_or_flat() -> None:
    assert get_field({"source": {"ip": "1.2.3.4"}}, "source.ip") == "1.2.3.4"
    assert get_field({"source.ip": "1.2.3.4"}, "source.ip") == "1.2.3.4"
    assert get_field({"source": "x"}, "source.ip") is None


def reference_lookup(doc: Any, path: str) -> Any:
    """The lookup rule as the docs state it, written plainly: the rest of the path as one
    flat key first, then its first segment as a nested object."""
    if not isinstance(doc, dict):
        return None
    if path in doc:
        return doc[path]
    head, _, tail = path.partition(".")
    return reference_lookup(doc.get(head), tail) if tail else None


SEGMENTS = st.sampled_from(["a", "b", "a.b", "b.c", "c"])
TREES = st.recursive(
    st.none() | st.integers() | st.text(max_size=2),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(SEGMENTS, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=500)
@given(
    doc=st.dictionaries(SEGMENTS, TREES, max_size=4),
    path=st.sampled_from(["a", "a.b", "a.b.c", "b.c.a.b", "a.b.c.d.e"]),
)
def test_the_getters_follow_the_lookup_rule(doc: dict, path: str) -> None:
    # One, two and more segments each have their own code in `getter`.
    assert get_field(doc, path) == reference_lookup(doc, path)


@pytest.mark.parametrize(
    ("doc", "found"),
    [
        ({"a": {"b": {"c": 1}}}, 1),
        ({"a": {"b.c": 2, "b": {"c": 1}}}, 2),
        ({"a.b.c": 3, "a": {"b.c": 2}}, 3),
        ({"a.b": {"c": 4}}, None),  # only the first segment is split off a flat key
        ({"a": {"b": [{"c": 1}]}}, None),  # lists of objects are not walked into
    ],
)
def test_a_three_segment_path_tries_the_flat_rest_at_each_level(doc: dict, found: Any) -> None:
    assert get_field(doc, "a.b.c") == found


def test_evidence_keeps_distinct_texts_up_to_the_cap_and_skips_objects() -> None:
    table = BucketTable(timedelta(minutes=5), max_entities=10)
    ips = [f"10.0.0.{i}" for i in range(30)]
    event = {
        "source": {"ip": ips[0]},
        "related": {"ip": [ips[0], {"nested": "x"}, ["y"], *ips[1:]]},
        "user": {"name": {"an": "object"}},
        "host": {"name": 7, "hostname": "h1"},
    }
    table.add("e", 0, event, FILL)

    [(_, bucket)] = table.close_until(300_000)
    assert bucket.ips == ips[:20]
    assert bucket.users == []
    assert bucket.hosts == ["7", "h1"]


def test_a_field_holding_only_nulls_does_not_exist() -> None:
    # As for the node's `exists` query: `[null]` holds no value; an object holds fields.
    m = Match(exists=["user.name"])

    assert [m.matches({"user": {"name": v}}) for v in ([None], [None, "a"], {"x": 1})] == [
        False,
        True,
        True,
    ]


def test_a_whole_number_sent_as_a_float_meets_a_filter_on_the_number() -> None:
    # A shipper sending event.code 4625.0: the node's numeric term query takes it as 4625.
    m = Match(all_of={"event.code": 4625}, none_of={"event.code": [4624]})

    assert [m.matches({"event": {"code": v}}) for v in (4625.0, 4625, "4625", 4624.0)] == [
        True,
        True,
        True,
        False,
    ]
    assert not m.matches({"event": {"code": 4625.5}})


def test_match_lists_and_exclusions() -> None:
    m = Match(all_of={"event.category": ["authentication", "iam"]}, none_of={"user.name": "svc"})

    assert m.matches({"event": {"category": ["network", "authentication"]}, "user": {"name": "a"}})
    assert not m.matches({"event": {"category": ["authentication"]}, "user": {"name": "svc"}})
    assert not m.matches({"event": {}})


def test_bucket_features() -> None:
    table = BucketTable(timedelta(minutes=5), max_entities=10)
    for i, (user, outcome) in enumerate([("a", "failure"), ("b", "failure"), ("a", "success")]):
        table.add("1.2.3.4", 60_000 * i, doc(user, outcome), FILL)

    [(entity, bucket)] = table.close_until(300_000)
    assert entity == "1.2.3.4"
    assert bucket.raw(FEATURES) == {"n": 3.0, "users": 2.0, "bad": 2 / 3, "logn": 3.0}
    assert bucket.vector(FEATURES)["logn"] == math.log1p(3)


def test_buckets_close_only_once_they_end() -> None:
    table = BucketTable(timedelta(minutes=5), max_entities=10)
    table.add("e", 299_999, doc("a", "failure"), FILL)
    table.add("e", 300_000, doc("a", "failure"), FILL)

    assert [b.start_ms for _, b in table.close_until(300_000)] == [0]
    assert table.close_until(599_999) == []
    assert [b.start_ms for _, b in table.close_until(600_000)] == [300_000]


def test_an_older_bucket_opened_late_still_closes_on_time() -> None:
    # The table skips its scan while its earliest bucket cannot end; a late event that
    # opens an earlier bucket (one not yet judged) must move that mark back.
    table = BucketTable(timedelta(minutes=5), max_entities=10)
    table.add("e", 1_500_000, doc("a", "failure"), FILL)
    assert table.close_until(1_000_000) == []
    table.add("f", 1_050_000, doc("b", "failure"), FILL)
    table.add("g", 10_000, doc("c", "failure"), FILL)  # no bucket of g was judged yet

    assert [(e, b.start_ms) for e, b in table.close_until(1_200_000)] == [("g", 0), ("f", 900_000)]
    table.add("f", 1_100_000, doc("b", "failure"), FILL)  # f's bucket was judged: too late
    assert [(e, b.start_ms) for e, b in table.close_until(1_800_000)] == [("e", 1_500_000)]
    assert (table.late_events, "f" in table.open) == (1, False)


def test_a_table_from_an_older_snapshot_finds_its_earliest_bucket() -> None:
    table = BucketTable(timedelta(minutes=5), max_entities=10)
    table.add("e", 10_000, doc("a", "failure"), FILL)
    table.add("f", 900_000, doc("b", "failure"), FILL)
    state = {k: v for k, v in table.__dict__.items() if k != "earliest_ms"}

    restored = BucketTable.__new__(BucketTable)
    restored.__setstate__(pickle.loads(pickle.dumps(state)))

    assert restored.earliest_ms == 0
    assert [e for e, _ in restored.close_until(300_000)] == ["e"]


def test_a_table_from_a_snapshot_without_its_start_index_still_closes_every_bucket() -> None:
    table = BucketTable(timedelta(minutes=5), max_entities=10)
    for entity, ts_ms in [("b", 10_000), ("a", 20_000), ("a", 400_000)]:
        table.add(entity, ts_ms, doc("u", "failure"), FILL)
    state = {k: v for k, v in table.__getstate__().items() if k != "starts"}

    restored = BucketTable.__new__(BucketTable)
    restored.__setstate__(pickle.loads(pickle.dumps(state)))

    assert [(e, b.start_ms) for e, b in restored.close_until(10**9)] == [
        ("a", 0),
        ("b", 0),
        ("a", 300_000),
    ]
    assert restored.open == {}


def test_an_evicted_entity_that_comes_back_closes_once_with_its_new_bucket() -> None:
    table = BucketTable(timedelta(minutes=5), max_entities=1)
    table.add("a", 1_000, doc("u", "failure"), FILL)
    table.add("b", 2_000, doc("u", "failure"), FILL)  # evicts a
    table.add("a", 3_000, doc("v", "failure"), FILL)  # evicts b; a again, a new bucket

    [(entity, bucket)] = table.close_until(300_000)
    assert (entity, bucket.events, bucket.users) == ("a", 1, ["v"])
    assert (table.open, table.starts, table.earliest_ms) == ({}, {}, None)


def test_a_spray_of_new_entities_in_one_bucket_is_bounded_by_the_cap() -> None:
    # Each new entity evicts the oldest: nothing of the evicted ones may stay behind.
    table = BucketTable(timedelta(hours=1), max_entities=10)
    for i in range(5_000):
        table.add(f"user{i}-" + "x" * 1000, i, doc("u", "failure"), FILL)

    assert sum(len(names) for names in table.starts.values()) == 10
    assert len(pickle.dumps(table)) < 100_000
    assert table.evicted_entities == 4_990


def test_the_earliest_bucket_follows_an_eviction() -> None:
    table = BucketTable(timedelta(minutes=5), max_entities=1)
    table.add("a", 0, doc("u", "failure"), FILL)
    table.add("b", 400_000, doc("u", "failure"), FILL)  # evicts a and its bucket at 0

    assert table.earliest_ms == 300_000


def test_the_least_recently_active_entity_is_evicted_and_counted() -> None:
    table = BucketTable(timedelta(minutes=5), max_entities=2)
    for entity in ["a", "b", "a", "c"]:
        table.add(entity, 0, doc("u", "failure"), FILL)

    assert list(table.open) == ["a", "c"]
    assert (table.evicted_entities, table.evicted_events) == (1, 1)


RISE = [
    FeatureSpec(name="logn", kind="count", transform="log1p"),
    FeatureSpec(name="up", kind="rise", of="logn", half_life=timedelta(minutes=15)),
]
QUARTER = 15 * 60_000
RISING = Rising.of(RISE, timedelta(minutes=15))


def judge(baselines: Baselines, entity: str, start_ms: int, value: float) -> float:
    """The rise of one bucket, then the bucket folded in, as the detector does."""
    rise = baselines.rises(entity, start_ms, {"logn": value}, RISING)["up"]
    baselines.update(entity, start_ms, {"logn": value}, RISING)
    return rise


def test_a_rise_is_the_excess_over_the_entitys_own_weighted_mean() -> None:
    baselines = Baselines(timedelta(minutes=15), max_entities=10)

    # Bucket = half-life, so the newest bucket weighs 1/2: means 0 -> 4 -> 5.
    assert judge(baselines, "a", 0, 8.0) == 8.0  # never seen: the whole value
    assert judge(baselines, "a", QUARTER, 6.0) == 2.0
    assert judge(baselines, "a", 2 * QUARTER, 3.0) == 0.0  # below the mean: no rise
    assert baselines.means["a"][1]["up"] == 4.0


def test_buckets_without_events_count_as_zeros() -> None:
    baselines = Baselines(timedelta(minutes=15), max_entities=10)
    judge(baselines, "a", 0, 8.0)  # mean 4

    # Two empty buckets halve it twice: 1 expected, so 3 rises by 2.
    assert judge(baselines, "a", 3 * QUARTER, 3.0) == 2.0


def test_an_entity_evicted_by_another_of_its_slot_is_folded_in_from_zero() -> None:
    # The detector works out every entity's expected level of a slot before any update;
    # an update that evicts a later entity of the slot must not bring its old level back.
    baselines = Baselines(timedelta(minutes=15), max_entities=2)
    judge(baselines, "bob", 0, 8.0)  # mean 4
    judge(baselines, "carol", QUARTER, 8.0)
    slot = {e: baselines.expected(e, 2 * QUARTER, RISING) for e in ("alice", "bob")}
    assert slot["bob"]["up"] == 2.0  # 4, halved by one empty bucket

    for entity, expected in slot.items():
        baselines.update(entity, 2 * QUARTER, {"logn": 8.0}, RISING, expected)

    assert list(baselines.means) == ["alice", "bob"]
    assert baselines.means["bob"][1]["up"] == 4.0  # from zero, not 5.0 from the evicted 2


def test_entities_have_their_own_baselines_and_the_least_recent_is_evicted() -> None:
    baselines = Baselines(timedelta(minutes=15), max_entities=2)
    for entity in ["a", "b", "c"]:
        judge(baselines, entity, 0, 8.0)

    assert list(baselines.means) == ["b", "c"]
    assert baselines.evicted == 1
    assert judge(baselines, "a", QUARTER, 8.0) == 8.0  # evicted: starts again from zero


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        pytest.param({"kind": "rise", "half_life": "1h"}, "needs `of`", id="no-of"),
        pytest.param({"kind": "rise", "of": "n"}, "`half_life`", id="no-half-life"),
        pytest.param(
            {"kind": "rise", "of": "n", "half_life": "1h", "field": "x"}, "no field", id="field"
        ),
        pytest.param({"kind": "count", "of": "n"}, "belong to kind rise", id="of-on-count"),
    ],
)
def test_bad_rise_features_are_refused(spec: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        FeatureSpec.model_validate({"name": "r", **spec})
