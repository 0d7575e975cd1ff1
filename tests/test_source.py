"""Incremental polling against the real node: late events, no repeats, missing indices."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import ApiError, Elasticsearch, helpers

from nis2triage import datemath, esclient
from nis2triage.agent import Agent
from nis2triage.config import AgentConfig, SourceConfig, load_config
from nis2triage.errors import ConfigError
from nis2triage.source import LATE_CHECK_EVERY, Cursor, Source, event_key

from support import client_for, write_agent_config

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def put(es: Elasticsearch, index: str, doc_id: str, minutes_ago: float) -> None:
    ts = NOW - timedelta(minutes=minutes_ago)
    es.index(index=index, id=doc_id, document={"@timestamp": ts.isoformat()}, refresh=True)


def reading(
    tmp_path: Path, es_settings: esclient.ESSettings, prefix: str, indices: list[str]
) -> tuple[AgentConfig, SourceConfig]:
    """An agent configuration whose one source reads `indices`, state under `prefix`."""
    config = load_config(write_agent_config(tmp_path, es_settings, indices[0], prefix))
    auth = config.sources[0].model_copy(update={"indices": indices})
    return config.model_copy(update={"sources": [auth]}), auth


def read_all(source: Source, cursor: Cursor) -> list[str]:
    return [e.id for batch in source.poll(cursor) for e in batch]


def said_at_start(
    es: Elasticsearch, caplog: pytest.LogCaptureFixture, *configs: AgentConfig, about: str = ""
) -> list[str]:
    """The source's warnings as agents of `configs` start, those holding `about`."""
    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        for config in configs:
            Agent(config, es, b"k" * 32, b"p" * 32).start()
    said = [r.getMessage() for r in caplog.records if r.name == "nis2triage.source"]
    return [line for line in said if about in line]


def make(es: Elasticsearch, index: str, lateness_min: float = 5, batch: int = 2) -> Source:
    cfg = SourceConfig(
        name="s", indices=[index], batch_size=batch, max_lateness=timedelta(minutes=lateness_min)
    )
    return Source(es, cfg, clock=lambda: NOW)


def test_pages_in_time_order_and_never_twice(es: Elasticsearch, index_name: str) -> None:
    for i in range(7):
        put(es, index_name, f"e{i}", minutes_ago=30 - i)
    source, cursor = make(es, index_name), Cursor()

    assert read_all(source, cursor) == [f"e{i}" for i in range(7)]
    assert read_all(source, cursor) == []


def test_large_documents_shrink_the_pages_said_once_and_the_next_poll_starts_small(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    def put_large(first: int, count: int) -> None:
        actions = (
            {
                "_index": index_name,
                "_id": f"e{i}",
                "_source": {
                    "@timestamp": (NOW - timedelta(minutes=60 - i)).isoformat(),
                    "message": "x" * 30_000,
                },
            }
            for i in range(first, first + count)
        )
        helpers.bulk(es, actions, refresh=True)

    put_large(0, 30)
    source, cursor = make(es, index_name, batch=20), Cursor()
    source.fit.budget = 100_000  # three documents of 30 kB

    with caplog.at_level(logging.INFO, logger="nis2triage.source"):
        first = [len(batch) for batch in source.poll(cursor)]
    put_large(30, 10)
    second = [len(batch) for batch in source.poll(cursor)]

    assert sum(first) == 30 and sum(second) == 10
    assert first[0] == 20 and max(first[1:]) <= 3
    # The next poll's first page is sized from what the last one read.
    assert max(second) <= 3
    said = [r.getMessage() for r in caplog.records if "pages ask for" in r.getMessage()]
    assert said == [
        "source s: its documents are about 29 kB each, so pages ask for 3 of them rather "
        "than batch_size 20, to keep a page near 0.1 MB in memory"
    ]


def test_a_late_event_inside_the_margin_is_seen_once(es: Elasticsearch, index_name: str) -> None:
    put(es, index_name, "early", minutes_ago=10)
    put(es, index_name, "last", minutes_ago=1)
    source, cursor = make(es, index_name), Cursor()
    assert read_all(source, cursor) == ["early", "last"]

    put(es, index_name, "late-ok", minutes_ago=4)  # 3 min older than the watermark
    put(es, index_name, "too-late", minutes_ago=7)  # 6 min older: outside the margin

    assert read_all(source, cursor) == ["late-ok"]
    assert read_all(source, cursor) == []


def test_future_events_wait_for_their_time(es: Elasticsearch, index_name: str) -> None:
    put(es, index_name, "now", minutes_ago=0)
    put(es, index_name, "future", minutes_ago=-10)

    assert read_all(make(es, index_name), Cursor()) == ["now"]


def test_a_missing_index_waits_and_says_so_once(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    source, cursor = make(es, f"{index_name}-nothing-here"), Cursor()

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        assert read_all(source, cursor) == []
        assert read_all(source, cursor) == []
    assert len([r for r in caplog.records if "waiting for events" in r.message]) == 1


def test_cursor_survives_a_round_trip_through_json(es: Elasticsearch, index_name: str) -> None:
    put(es, index_name, "a", minutes_ago=2)
    cursor = Cursor()
    read_all(make(es, index_name), cursor)
    restored = Cursor.from_dict(cursor.to_dict())

    assert read_all(make(es, index_name), restored) == []
    assert restored.watermark_ms == int((NOW - timedelta(minutes=2)).timestamp() * 1000)


def put_many(es: Elasticsearch, index: str, times: list[datetime]) -> list[str]:
    """One document per time, ids in the order the source must return them."""
    actions = [
        {"_index": index, "_id": f"d{i:05d}", "_source": {"@timestamp": t.isoformat()}}
        for i, t in enumerate(times)
    ]
    helpers.bulk(es, actions, refresh=True)
    return [str(a["_id"]) for a in actions]


def test_ties_at_every_page_and_window_border_are_read_once(
    es: Elasticsearch, index_name: str
) -> None:
    # Five events in each of 40 consecutive milliseconds, pages of 3: page borders and
    # window borders fall inside and between runs of events sharing a millisecond.
    start = NOW - timedelta(minutes=3)
    times = [start + timedelta(milliseconds=ms) for ms in range(40) for _ in range(5)]
    expected = put_many(es, index_name, times)
    source, cursor = make(es, index_name, batch=3), Cursor()

    got = read_all(source, cursor)

    assert sorted(got) == expected
    assert [times[int(i[1:])] for i in got] == times
    assert read_all(source, cursor) == []


def test_a_shard_failing_the_query_fails_the_poll_and_loses_nothing(
    es: Elasticsearch, index_name: str
) -> None:
    # Two indices under one pattern map labels.code differently: the source's filter for a
    # word fails on the long index's shard, which would otherwise give a partial page.
    for suffix, kind in (("-words", "keyword"), ("-numbers", "long")):
        props = {"@timestamp": {"type": "date"}, "labels": {"properties": {"code": {"type": kind}}}}
        es.indices.create(index=index_name + suffix, mappings={"properties": props})
    for i in range(3):
        ts = (NOW - timedelta(minutes=10 - i)).isoformat()
        doc = {"@timestamp": ts, "labels": {"code": "abc"}}
        es.index(index=f"{index_name}-words", id=f"w{i}", document=doc, refresh=True)
    es.index(
        index=f"{index_name}-numbers",
        id="n",
        document={"@timestamp": NOW.isoformat(), "labels": {"code": 7}},
        refresh=True,
    )
    cfg = SourceConfig(
        name="s", indices=[f"{index_name}-*"], query={"term": {"labels.code": "abc"}}
    )
    source, cursor = Source(es, cfg, clock=lambda: NOW), Cursor()

    with pytest.raises(ApiError, match="For input string"):
        read_all(source, cursor)
    es.indices.delete(index=f"{index_name}-numbers")

    assert cursor.watermark_ms is None
    assert read_all(source, cursor) == ["w0", "w1", "w2"]


@pytest.mark.parametrize(
    ("when", "usable"),
    [
        ("2026-11-02T10:00:00.123+00:00", True),  # the usual case: no datetime is made
        ("0001-01-01T00:00:00+00:00", True),  # datetime's first instant, tried
        ("0001-01-01T12:00:00.5+00:00", True),
        ("9999-12-31T23:59:59.999+00:00", True),  # its last millisecond, tried
    ],
)
def test_event_times_near_the_edges_of_datetime_are_kept_exactly(when: str, usable: bool) -> None:
    at = datetime.fromisoformat(when)
    ts_ms = round(at.timestamp() * 1000)
    source = bare_source()
    cursor = Cursor()

    [event] = source._new_events([hit("logs", "1", ts_ms)], cursor)

    assert (event.ts_ms, event.timestamp, cursor.watermark_ms) == (ts_ms, at, ts_ms)
    assert source.unusable == []


@pytest.mark.parametrize("ts_ms", [-62135596800001, -(10**15), 253402300800000, 10**16])
def test_event_times_outside_datetime_are_set_aside_and_never_the_watermark(ts_ms: int) -> None:
    source = bare_source()
    cursor = Cursor()

    assert source._new_events([hit("logs", "1", ts_ms)], cursor) == []

    [unusable] = source.take_unusable()
    assert (unusable.id, unusable.reason.split(" ms:")[0]) == ("1", f"event time {ts_ms}")
    assert cursor.watermark_ms is None and cursor.knows(event_key("logs", "1"))


def bare_source() -> Source:
    """A source whose pages are handed to it by the test: its client never connects."""
    return Source(Elasticsearch("http://127.0.0.1:9"), SourceConfig(name="t", indices=["logs"]))


def hit(index: str, doc_id: str, ts_ms: int) -> dict[str, Any]:
    return {"_index": index, "_id": doc_id, "_source": {}, "sort": [ts_ms, 0]}


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "nis2triage.source"]


def test_a_name_that_matches_no_index_is_said_even_after_events_were_read(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A typo in sources.indices on a prefix that already holds a checkpoint: before, the
    # agent read nothing without a word.
    cursor = Cursor(watermark_ms=int(NOW.timestamp() * 1000) - 60_000)
    source = make(es, f"{index_name}-typo")

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        read_all(source, cursor)
        read_all(source, cursor)

    [said] = warnings_of(caplog)
    assert f"{index_name}-typo matches no index yet" in said and "sources.indices" in said


def test_a_quiet_source_that_read_events_before_says_nothing(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    put(es, index_name, "old", minutes_ago=60)
    source, cursor = make(es, index_name), Cursor()
    assert read_all(source, cursor) == ["old"]

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        assert read_all(source, cursor) == []

    assert warnings_of(caplog) == []


def test_an_index_the_credentials_may_not_read_is_said_with_the_fix(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    put(es, index_name, "a", minutes_ago=1)
    key = es.security.create_api_key(
        name=f"{index_name}-narrow",
        role_descriptors={"narrow": {"indices": [{"names": ["other-*"], "privileges": ["read"]}]}},
    ).body
    try:
        narrow = esclient.connect(replace(es_settings, username=None, api_key=key["encoded"]))
        with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
            assert read_all(make(narrow, index_name), Cursor()) == []
    finally:
        es.security.invalidate_api_key(ids=[key["id"]])

    [said] = warnings_of(caplog)
    assert f"may not read {index_name}" in said and "nis2triage setup" in said


@pytest.mark.usefixtures("agent_env")
def test_an_agent_whose_credentials_miss_one_of_its_indices_refuses_to_start(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # Beside a readable name, an unreadable one is skipped by searches without an error.
    put(es, index_name, "a", minutes_ago=1)
    prefix, other = f"{index_name}-st", f"{index_name}-other-*"
    rights = [{"names": [index_name, f"{prefix}-*"], "privileges": ["all"]}]
    key = es.security.create_api_key(
        name=f"{index_name}-part", role_descriptors={"part": {"indices": rights}}
    ).body
    config, auth = reading(tmp_path, es_settings, prefix, [index_name, other])
    try:
        part = esclient.connect(replace(es_settings, username=None, api_key=key["encoded"]))
        assert Source(part, auth).unreadable() == [other]
        with pytest.raises(
            ConfigError, match=rf"source auth: .* may not read {re.escape(other)}: run"
        ):
            Agent(config, part, b"k" * 32, b"p" * 32).start()
    finally:
        es.security.invalidate_api_key(ids=[key["id"]])


@pytest.mark.usefixtures("agent_env")
def test_two_names_in_one_item_of_indices_are_each_checked_for_reading(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # `a1,b*` in one item (as a rule's `index:` is written) was asked about as one name,
    # which the key's `a*` covers, while the search skipped b* without an error.
    put(es, f"{index_name}-a1", "a", minutes_ago=1)
    put(es, f"{index_name}-b1", "b", minutes_ago=1)
    prefix, unread = f"{index_name}-st", f"{index_name}-b*"
    config, auth = reading(tmp_path, es_settings, prefix, [f"{index_name}-a1,{unread}"])
    readable = [f"{index_name}-a*", f"{prefix}-*"]
    with client_for(es, es_settings, f"{index_name}-comma", readable) as part:
        assert Source(part, auth).unreadable() == [unread]
        with pytest.raises(
            ConfigError, match=rf"source auth: .* may not read {re.escape(unread)}: run"
        ):
            Agent(config, part, b"k" * 32, b"p" * 32).start()


def test_a_date_math_name_is_not_refused_under_a_role_granting_its_pattern(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str
) -> None:
    # The privileges check does not resolve date math: `<x-{now/d}>` was said unreadable
    # under a role granting `x-*`, and the agent refused to start on a valid configuration.
    dated = SourceConfig(name="s", indices=[f"<{index_name}-{{now/d}}>", f"{index_name}-z*"])
    with client_for(es, es_settings, f"{index_name}-math", [f"{index_name}-*"]) as part:
        assert Source(part, dated).unreadable() == []
    with client_for(es, es_settings, f"{index_name}-none", [f"{index_name}-a*"]) as part:
        # The other name is still checked.
        assert Source(part, dated).unreadable() == [f"{index_name}-z*"]


def test_a_date_math_name_is_read_back_over_the_span_since_the_checkpoint(
    es: Elasticsearch, index_name: str
) -> None:
    # `<x-{now/d}>` names today's index alone: after midnight UTC, the events of
    # yesterday's that the last poll had not read were never read. Per minute here, so
    # that the test crosses the boundary at once; the node resolves `now` by its clock.
    before = datetime.now(UTC) - timedelta(minutes=1)
    earlier_index = f"{index_name}-{before:%Y.%m.%d.%H.%M}"
    es.index(index=earlier_index, id="before", document={"@timestamp": before.isoformat()})
    es.indices.refresh(index=earlier_index)
    name = f"<{index_name}-{{now/m{{yyyy.MM.dd.HH.mm}}}}>"
    source = Source(es, SourceConfig(name="s", indices=[name], max_lateness=timedelta(seconds=1)))
    checkpoint = int((before - timedelta(seconds=10)).timestamp() * 1000)

    assert read_all(source, Cursor(watermark_ms=checkpoint)) == ["before"]


@pytest.mark.parametrize(
    ("span", "asked"),
    [
        pytest.param(timedelta(0), ["<x-{now/d}>"], id="first-pass"),
        pytest.param(
            timedelta(seconds=61), ["<x-{now/d}>", "<x-{now-61s/d}>"], id="across-midnight"
        ),
        pytest.param(
            timedelta(days=2, hours=1),
            ["<x-{now/d}>", "<x-{now-86400s/d}>", "<x-{now-172800s/d}>", "<x-{now-176400s/d}>"],
            id="two-days-down",
        ),
    ],
)
def test_a_date_math_name_is_asked_at_each_of_its_periods_back(
    span: timedelta, asked: list[str]
) -> None:
    assert datemath.over("<x-{now/d}>", span) == (asked, False)


@pytest.mark.usefixtures("agent_env")
def test_events_no_read_can_reach_are_said_at_start(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every read is a range on the time field: an index holding its time in another field,
    # and a document without one, were skipped without a word, a dead letter or a count.
    timed, other = f"{index_name}-a", f"{index_name}-b"
    put(es, timed, "a", minutes_ago=1)
    es.index(index=timed, id="untimed", document={"message": "x"}, refresh=True)
    es.index(index=other, id="b", document={"timestamp": NOW.isoformat()}, refresh=True)
    config, _ = reading(tmp_path, es_settings, f"{index_name}-st", [timed, other])

    said = said_at_start(es, caplog, config)

    assert said == [
        f"source auth: no date field @timestamp in {other}, so none of their events is ever "
        "read: set the source's time_field to the field that holds their time, or leave them "
        "out of its indices",
        f"source auth: 1 document without @timestamp (in {timed}), never read since every read "
        "is by time: have the shipper or an ingest pipeline set it",
    ]


@pytest.mark.usefixtures("agent_env")
def test_documents_without_a_time_sent_while_the_agent_runs_are_said_once_per_increase(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Counted at start only: a shipper that lost its time field once the agent ran had its
    # events skipped without a word until the next restart.
    now = [NOW]
    put(es, index_name, "a", minutes_ago=1)
    config, _ = reading(tmp_path, es_settings, f"{index_name}-st", [index_name])
    agent = Agent(config, es, b"k" * 32, b"p" * 32, clock=lambda: now[0])

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        agent.start()
        es.index(index=index_name, id="untimed", document={"message": "x"}, refresh=True)
        agent.run_once()  # within the hour of the start's count: not counted again
        now[0] += timedelta(hours=2)
        agent.run_once()
        now[0] += timedelta(hours=2)
        agent.run_once()  # no more of them: not said again

    said = [r.getMessage() for r in caplog.records if "without @timestamp" in r.getMessage()]
    assert said == [
        f"source auth: 1 document without @timestamp (in {index_name}), never read since every "
        "read is by time: have the shipper or an ingest pipeline set it",
    ]


@pytest.mark.usefixtures("agent_env")
def test_documents_without_a_time_are_said_once_by_a_run_once_that_takes_the_lease(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Taking the lease restores every source afresh: the count made at start was lost,
    # and the first cycle counted and said the same documents again.
    put(es, index_name, "a", minutes_ago=1)
    es.index(index=index_name, id="untimed", document={"message": "x"}, refresh=True)
    config, _ = reading(tmp_path, es_settings, f"{index_name}-st", [index_name])
    agent = Agent(config, es, b"k" * 32, b"p" * 32)

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        agent.start()
        assert agent.hold_for_one_pass() is None
        try:
            agent.run_once()
        finally:
            agent.lease.release()

    said = [r.getMessage() for r in caplog.records if "without @timestamp" in r.getMessage()]
    assert len(said) == 1, said


def test_an_index_that_maps_no_time_field_yet_is_read_as_empty_and_then_read(
    es: Elasticsearch, index_name: str
) -> None:
    # A new index (a rollover's, or one made before its first event) maps no fields: the
    # sort on the time field failed every search with 400, so the agent never read a thing.
    es.indices.create(index=index_name)
    source, cursor = make(es, index_name), Cursor()

    assert read_all(source, cursor) == []

    put(es, index_name, "first", minutes_ago=1)
    assert read_all(source, cursor) == ["first"]


@pytest.mark.usefixtures("agent_env")
def test_an_empty_index_that_maps_no_time_field_yet_is_not_said_untimed(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Its first event maps the time field: "none of their events is ever read" was false,
    # and said beside "holds no events; waiting for events".
    fresh, other = f"{index_name}-src-a", f"{index_name}-src-b"
    es.indices.create(index=fresh)
    es.index(index=other, id="b", document={"timestamp": NOW.isoformat()}, refresh=True)
    config, _ = reading(tmp_path, es_settings, f"{index_name}-st", [f"{index_name}-src-*"])

    said = said_at_start(es, caplog, config, about="no date field")

    assert said == [
        f"source auth: no date field @timestamp in {other}, so none of their events is ever "
        "read: set the source's time_field to the field that holds their time, or leave them "
        "out of its indices",
    ]


@pytest.mark.usefixtures("agent_env")
def test_indices_that_all_map_the_time_field_as_one_other_type_are_named_at_start(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # When they all map it as one other type (text, from epoch text sent before any
    # template), field_caps lists no index under that type: the warning named none.
    first, second = f"{index_name}-src-a", f"{index_name}-src-b"
    for index in (first, second):
        es.index(index=index, id="e", document={"@timestamp": "1764936000"}, refresh=True)
    config, _ = reading(tmp_path, es_settings, f"{index_name}-st", [f"{index_name}-src-*"])

    said = said_at_start(es, caplog, config, about="no date field")

    assert said == [
        f"source auth: no date field @timestamp in {first}, {second}, so none of their events "
        "is ever read: set the source's time_field to the field that holds their time, or "
        "leave them out of its indices",
    ]


@pytest.mark.usefixtures("agent_env")
def test_a_remote_cluster_the_node_does_not_know_is_said_as_such_not_as_a_role(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The node answers 403 security_exception, even to a superuser: "check its role and
    # credentials" sent the operator after privileges that were all there.
    from nis2triage import cli

    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    text = config.read_text().replace(f"- {index_name}\n", f"- nosuchremote:{index_name}\n")
    config.write_text(text)

    assert cli.main(["run", "-c", str(config), "--once"]) == 1

    said = capsys.readouterr().err
    assert "answered 'no such remote cluster: [nosuchremote]'" in said
    assert "cluster.remote.<name>.seeds" in said
    assert "check its role" not in said


@pytest.mark.usefixtures("agent_env")
def test_a_closed_index_of_a_source_is_said_at_start(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A search skips it without an error while the checkpoint moves on: reopened later, its
    # events older than max_lateness were never read, and nothing had said so.
    live, closed = f"{index_name}-src-a", f"{index_name}-src-b"
    put(es, live, "a", minutes_ago=1)
    put(es, closed, "b", minutes_ago=30)
    es.indices.close(index=closed)
    source = make(es, f"{index_name}-src-*")
    cursor = Cursor()
    assert read_all(source, cursor) == ["a"]
    es.indices.open(index=closed, wait_for_active_shards="1")
    assert read_all(source, cursor) == []  # what the warning is for
    es.indices.close(index=closed)
    config, _ = reading(tmp_path, es_settings, f"{index_name}-st", [f"{index_name}-src-*"])

    said = said_at_start(es, caplog, config, about="closed")

    assert said == [
        f"source auth: {closed} is closed, so none of their events is read; the checkpoint "
        "moves on, so events reopened later that are older than max_lateness are never read: "
        "open them (POST <index>/_open) at once, or leave them out of its indices"
    ]


def test_an_index_closed_while_the_agent_runs_is_said_at_the_next_poll_once(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Said at start only: an index closed under a running agent was skipped by every read,
    # its events left behind the checkpoint, without a word.
    live, closed = f"{index_name}-src-a", f"{index_name}-src-b"
    put(es, live, "a", minutes_ago=1)
    put(es, closed, "b", minutes_ago=30)
    config, _ = reading(tmp_path, es_settings, f"{index_name}-st", [f"{index_name}-src-*"])
    agent = Agent(config, es, b"k" * 32, b"p" * 32)
    agent.start()
    es.indices.close(index=closed)

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        agent.run_once()
        agent.run_once()

    said = [r.getMessage() for r in caplog.records if "closed, so none" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"source auth: {closed} is closed")


def test_a_closed_index_named_alone_is_not_said_to_hold_no_events(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    put(es, index_name, "a", minutes_ago=1)
    es.indices.close(index=index_name)
    source = make(es, index_name)
    source.say_closed()

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        assert read_all(source, Cursor()) == []

    said = [r.getMessage() for r in caplog.records if "holds no events" in r.getMessage()]
    assert said == [
        f"source s: {index_name} holds no events in its open indices (closed: {index_name}); "
        "waiting for events"
    ]


def test_an_index_mapping_the_time_as_text_is_left_out_said_and_the_others_still_read(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # An index made before its template, its times sent as epoch text, maps @timestamp as
    # keyword: the node refused the sort over it, and with it every read of the source, so
    # the events of every other index of the pattern went unread too.
    good, text = f"{index_name}-good", f"{index_name}-text"
    es.indices.create(index=text, mappings={"properties": {"@timestamp": {"type": "keyword"}}})
    millis = str(int((NOW - timedelta(minutes=1)).timestamp() * 1000))
    es.index(index=text, id="t", document={"@timestamp": millis}, refresh=True)
    put(es, good, "g1", minutes_ago=2)
    put(es, good, "g2", minutes_ago=1)
    source, cursor = make(es, f"{index_name}-*"), Cursor()

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        first = read_all(source, cursor)
        put(es, good, "g3", minutes_ago=0.5)
        second = read_all(source, cursor)

    assert (first, second) == (["g1", "g2"], ["g3"])
    said = [r.getMessage() for r in caplog.records if "other than a date" in r.getMessage()]
    assert said == [
        f"source s: {text} maps @timestamp as something other than a date, so the node refused "
        "every read of the source; left out from now on, so none of their events is read: map "
        "@timestamp as date in their template (and reindex them), or leave them out of the "
        "source's indices"
    ]

    # Rebuilt from its checkpoint after an outage, the source leaves the index out still,
    # rather than be refused, read again and say it again.
    rebuilt = make(es, f"{index_name}-*")
    rebuilt.keep_notices(source)
    put(es, good, "g4", minutes_ago=0.2)
    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        assert read_all(rebuilt, cursor) == ["g4"]
    assert len([r for r in caplog.records if "other than a date" in r.getMessage()]) == 1


def test_events_dated_far_ahead_are_said_with_their_count_and_index_once_per_increase(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Every read ends at the present: an event of year 2300 (a shipper parsing a date
    # wrong) waited, judged by nothing and without a word, for 274 years.
    now = [NOW]
    source = Source(es, SourceConfig(name="s", indices=[index_name]), clock=lambda: now[0])
    put(es, index_name, "now", minutes_ago=1)
    put(es, index_name, "fast-clock", minutes_ago=-120)  # two hours ahead: no news
    es.index(index=index_name, id="2300", document={"@timestamp": "2300-01-01T00:00:00Z"})
    es.indices.refresh(index=index_name)

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        assert read_all(source, Cursor()) == ["now"]
        source.say_future()
        source.say_future()  # within the hour: not looked for again
        now[0] += timedelta(hours=2)
        source.say_future()  # no more of them: not said again
        doc = {"@timestamp": "3000-06-01T00:00:00Z"}
        es.index(index=index_name, id="3000", document=doc, refresh=True)
        now[0] += timedelta(hours=2)
        source.say_future()

    said = [r.getMessage() for r in caplog.records if "ahead" in r.getMessage()]
    assert said == [
        "source s: 1 event dated more than a day ahead (the latest 2300-01-01T00:00:00.000Z, "
        f"in {index_name}): every read ends at the present, so no detector sees them before "
        "their time comes; fix the clock or the time parsing of the shipper that sends them",
        "source s: 2 events dated more than a day ahead (the latest 3000-06-01T00:00:00.000Z, "
        f"in {index_name}): every read ends at the present, so no detector sees them before "
        "their time comes; fix the clock or the time parsing of the shipper that sends them",
    ]


@pytest.mark.usefixtures("agent_env")
def test_a_name_matching_nothing_beside_names_that_match_is_said_at_start(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A typo in one of a source's names: the search skipped it without an error, and the
    # other names' events kept the source from ever reading as empty, so nothing said it.
    read, typo = f"{index_name}-système+1", f"{index_name}-sytem-*"
    put(es, read, "a", minutes_ago=1)
    names = [read, f"{index_name}-none,{typo}", f"<{index_name}-{{now/d}}>"]
    config, _ = reading(tmp_path, es_settings, f"{index_name}-st", names)

    said = said_at_start(es, caplog, config, about="spelling")

    assert said == [
        f"source auth: {index_name}-none, {typo}, <{index_name}-{{now/d}}> match no index, "
        "alias or data stream, while its other names do, so they are read as empty without an "
        "error: check the spelling in sources.indices (a name for indices yet to come is fine)"
    ]


@pytest.mark.usefixtures("agent_env")
def test_a_source_taking_in_the_agents_own_alerts_is_said_with_the_exclusions_to_add(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # `logs-*` holds the alerts' alias (logs-nis2triage.alerts-default): the agent's alerts
    # came back to its detectors as events without a word.
    prefix, alias = f"{index_name}-st", f"{index_name}-logs-alerts"
    put(es, f"{index_name}-logs-a", "a", minutes_ago=1)
    put(es, f"{prefix}-alerts-000001", "own", minutes_ago=1)
    es.indices.put_alias(index=f"{prefix}-alerts-000001", name=alias)
    config, _ = reading(tmp_path, es_settings, prefix, [f"{index_name}-logs-*"])
    config = config.model_copy(
        update={"state": config.state.model_copy(update={"security_alias": alias})}
    )
    wide, _ = reading(tmp_path / "wide", es_settings, prefix, [f"{index_name}-*"])

    said = said_at_start(es, caplog, config, wide, about="the agent's own")

    assert len(said) == 2
    assert said[0] == (
        f"source auth: its indices take in the agent's own {alias}, so its alerts come back "
        f"as events for its detectors: add '-{alias}' after its patterns in sources.indices"
    )
    assert said[1].startswith(f"source auth: its indices take in the agent's own {prefix}-")
    assert said[1].endswith(f"add '-{prefix}-*' after its patterns in sources.indices")


@pytest.mark.usefixtures("agent_env")
def test_a_source_query_the_node_refuses_stops_the_start_naming_the_source(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # It failed every poll with "Elasticsearch answered 400 (... unknown query [bogus])",
    # naming neither the source nor its query.
    put(es, index_name, "a", minutes_ago=1)
    config, auth = reading(tmp_path, es_settings, f"{index_name}-st", [index_name])
    wrong = auth.model_copy(update={"query": {"bogus": {"x": 1}}})
    config = config.model_copy(update={"sources": [wrong]})

    with pytest.raises(
        ConfigError,
        match=r"source auth: Elasticsearch refuses its query \(unknown query \[bogus\]\): "
        r"correct the source's query",
    ):
        Agent(config, es, b"k" * 32, b"p" * 32).start()


@pytest.mark.usefixtures("agent_env")
def test_a_time_field_mapped_as_a_number_is_read_as_epoch_milliseconds_and_said_so(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The warning said "none of their events is ever read", and the reads took them.
    numeric = f"{index_name}-src-n"
    es.indices.create(index=numeric, mappings={"properties": {"@timestamp": {"type": "long"}}})
    millis = int((NOW - timedelta(minutes=1)).timestamp() * 1000)
    es.index(index=numeric, id="n", document={"@timestamp": millis}, refresh=True)
    config, auth = reading(tmp_path, es_settings, f"{index_name}-st", [f"{index_name}-src-*"])

    said = said_at_start(es, caplog, config, about="@timestamp")

    assert said == [
        f"source auth: {numeric} maps @timestamp as long, not as a date: its values are read "
        "as epoch milliseconds (a time in seconds would read as January 1970); map it as date "
        "in the index template",
    ]
    source = Source(es, auth, clock=lambda: NOW)
    assert read_all(source, Cursor()) == ["n"]


def test_an_event_set_aside_early_in_a_poll_leaves_the_cursor_to_the_margin(
    es: Elasticsearch, index_name: str
) -> None:
    # An event with two times is kept in the cursor until the poll's end, out of time
    # order; the per-page pruning stopped at it, so every later key of a long catch-up
    # stayed in the cursor (and in each checkpoint saved during the poll).
    first = NOW - timedelta(hours=2)
    times = [(first + timedelta(seconds=10 * i)).isoformat() for i in range(400)]
    docs: list[dict[str, Any]] = [{"@timestamp": t} for t in times]
    docs[3] = {"@timestamp": [times[3], times[4]]}
    es.indices.create(index=index_name, mappings={"properties": {"@timestamp": {"type": "date"}}})
    actions = ({"_index": index_name, "_id": str(i), "_source": d} for i, d in enumerate(docs))
    helpers.bulk(es, actions, refresh=True)
    source, cursor = make(es, index_name, lateness_min=1, batch=20), Cursor()

    kept = [len(cursor.seen) + len(cursor.held) for _ in source.poll(cursor)]

    assert [u.id for u in source.take_unusable()] == ["3"]
    # A minute of events (6), a page (20), the event set aside, and the page's border.
    assert max(kept) <= 6 + 20 + 2, kept


def test_events_indexed_after_the_margin_passed_them_are_said(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A shipper hours behind (a Filebeat backlog) sent events older than the cursor minus
    # max_lateness: no poll read them, and nothing said so.
    now = [NOW]
    source = Source(es, SourceConfig(name="s", indices=[index_name]), clock=lambda: now[0])
    es.index(index=index_name, id="a", refresh=True, document=stamped(1, ingested=1))
    cursor = Cursor()
    read_all(source, cursor)
    source.say_too_late()  # the first look only notes where the margin stands
    es.index(index=index_name, id="late", refresh=True, document=stamped(30, ingested=-1))
    es.index(index=index_name, id="in-margin", refresh=True, document=stamped(3, ingested=-1))
    now[0] += LATE_CHECK_EVERY

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        assert read_all(source, cursor) == ["in-margin"]
        source.say_too_late()
        now[0] += LATE_CHECK_EVERY
        source.say_too_late()

    assert warnings_of(caplog) == [
        f"source s: 1 event indexed since 2026-12-04T12:00:00Z is dated before the reading "
        f"margin had passed it (the oldest 2026-12-04T11:30:00.000Z, in {index_name}), so no "
        "poll reads it: its shipper sends later than max_lateness (0:05:00) allows; raise "
        "max_lateness, and look at those events with `nis2triage replay`"
    ]


def stamped(minutes_ago: float, ingested: float) -> dict[str, str]:
    """An event `minutes_ago` before NOW, indexed `ingested` minutes before NOW."""
    return {
        "@timestamp": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        "event": {"ingested": (NOW - timedelta(minutes=ingested)).isoformat()},
    }


def test_the_advisory_counts_name_their_time_over_a_numeric_time_field(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A time field mapped as a number is read as epoch milliseconds; the node gives its
    # min and max as numbers only, and the warnings said "the latest None".
    ingested = {"properties": {"ingested": {"type": "date"}}}
    mapping = {"properties": {"@timestamp": {"type": "long"}, "event": ingested}}
    es.indices.create(index=index_name, mappings=mapping)
    now_ms, day_ms = int(NOW.timestamp() * 1000), 86_400_000
    es.index(index=index_name, id="now", document={"@timestamp": now_ms - 60_000})
    es.index(index=index_name, id="ahead", document={"@timestamp": now_ms + 10 * day_ms})
    es.indices.refresh(index=index_name)
    now = [NOW]
    source = Source(es, SourceConfig(name="s", indices=[index_name]), clock=lambda: now[0])
    cursor = Cursor()

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        assert read_all(source, cursor) == ["now"]
        source.say_future()
        source.say_too_late()
        late = {"@timestamp": now_ms - 3_600_000, "event": {"ingested": NOW.isoformat()}}
        es.index(index=index_name, id="late", refresh=True, document=late)
        now[0] += LATE_CHECK_EVERY
        assert read_all(source, cursor) == []
        source.say_too_late()

    said = warnings_of(caplog)
    assert "(the latest 2026-12-14T12:00:00.000Z, in " in said[0]
    assert "(the oldest 2026-12-04T11:00:00.000Z, in " in said[1]


def test_a_shipper_steadily_behind_has_each_event_it_lost_counted(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    # One shipper on time, one 8 minutes behind, a margin of 5 and a poll a minute: every
    # event of the late one is lost, and each look said 3 of its 10 (those dated before
    # the margin of the look before, not of the poll that came after them).
    ingested = {"properties": {"ingested": {"type": "date"}}}
    mapping = {"properties": {"@timestamp": {"type": "date"}, "event": ingested}}
    es.indices.create(index=index_name, mappings=mapping)
    now = [NOW]
    config = SourceConfig(name="s", indices=[index_name], max_lateness=timedelta(minutes=5))
    source, cursor, read = Source(es, config, clock=lambda: now[0]), Cursor(), []

    with caplog.at_level(logging.WARNING, logger="nis2triage.source"):
        for minute in range(21):
            arrived = {"ingested": now[0].isoformat()}
            on_time = {"@timestamp": now[0].isoformat(), "event": arrived}
            behind = {"@timestamp": (now[0] - timedelta(minutes=8)).isoformat(), "event": arrived}
            es.index(index=index_name, id=f"on-time-{minute}", document=on_time)
            es.index(index=index_name, id=f"behind-{minute}", document=behind, refresh=True)
            read += [e.id for batch in source.poll(cursor) for e in batch]
            source.say_too_late()
            now[0] += timedelta(minutes=1)

    assert [i for i in read if i.startswith("behind")] == ["behind-0"]  # the first poll's
    said = [
        re.match(r"source s: (\d+) events indexed since (\S+) ", m) for m in warnings_of(caplog)
    ]
    assert [(m.group(1), m.group(2)) for m in said if m] == [
        ("10", "2026-12-04T12:00:00Z"),
        ("10", "2026-12-04T12:10:00Z"),
    ]
