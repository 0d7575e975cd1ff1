"""Window-bounded paging on the real node: every document once, in order, pages kept small."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from elasticsearch import Elasticsearch, helpers

from nis2triage.paging import (
    PIT_KEEP_ALIVE,
    WINDOW_PAGES,
    Page,
    PageFit,
    TimeRange,
    next_width,
    pages,
    sampled_bytes,
)

START = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
EVENTS = 3000
TIED = 120
SIZE = 50


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@pytest.fixture
def backlog(es: Elasticsearch, index_name: str) -> list[datetime]:
    """An hour of randomly spread events, with a burst of `TIED` in one millisecond."""
    rng = random.Random(7)
    times = [START + timedelta(milliseconds=rng.randrange(3_600_000)) for _ in range(EVENTS)]
    times += [START + timedelta(minutes=30)] * TIED
    actions = (
        {"_index": index_name, "_id": f"d{i}", "_source": {"@timestamp": t.isoformat()}}
        for i, t in enumerate(times)
    )
    helpers.bulk(es, actions, refresh=True)
    return times


def read(
    es: Elasticsearch, index: str, span: TimeRange, fit: PageFit | None = None
) -> Iterator[Page]:
    pit = es.open_point_in_time(index=index, keep_alive=PIT_KEEP_ALIVE)["id"]
    try:
        yield from pages(es, pit, span, SIZE, fit)
    finally:
        es.close_point_in_time(id=pit)


def held(es: Elasticsearch, index: str, page: Page) -> int:
    """How many documents the page's window holds: what Elasticsearch had to scan."""
    bounds: dict[str, int] = {"lt": page.high_ms}
    if page.low_ms is not None:
        bounds["gte"] = page.low_ms
    return int(es.count(index=index, query={"range": {"@timestamp": bounds}})["count"])


def test_a_backlog_of_many_windows_is_read_once_in_time_order(
    es: Elasticsearch, index_name: str, backlog: list[datetime]
) -> None:
    span = TimeRange("@timestamp", None, ms(START + timedelta(hours=1)))

    got = [h for page in read(es, index_name, span) for h in page.hits]

    assert sorted(h["_id"] for h in got) == sorted(f"d{i}" for i in range(len(backlog)))
    assert [h["sort"][0] for h in got] == sorted(ms(t) for t in backlog)


def test_after_the_first_page_no_window_holds_more_than_a_few_pages(
    es: Elasticsearch, index_name: str, backlog: list[datetime]
) -> None:
    span = TimeRange("@timestamp", None, ms(START + timedelta(hours=1)))

    read_pages = list(read(es, index_name, span))
    windows = {(p.low_ms, p.high_ms) for p in read_pages[1:]}

    assert len(windows) > EVENTS // (WINDOW_PAGES * SIZE) // 2
    # Paging over the whole remaining range, the second page would scan all but 50 of them.
    assert max(held(es, index_name, p) for p in read_pages[1:]) <= 4 * WINDOW_PAGES * SIZE


def test_bounds_are_kept_inclusive_at_both_ends(
    es: Elasticsearch, index_name: str, backlog: list[datetime]
) -> None:
    low, high = sorted(backlog)[100], sorted(backlog)[-100]
    span = TimeRange("@timestamp", ms(low), ms(high))

    got = [h["sort"][0] for page in read(es, index_name, span) for h in page.hits]

    assert got == sorted(ms(t) for t in backlog if low <= t <= high)


@pytest.mark.parametrize(
    ("width", "held_docs", "wanted"),
    [(1000, 100, 1000), (1000, 50, 2000), (1000, 0, 16_000), (1000, 1, 16_000), (1, 5000, 1)],
    ids=["as-planned", "half-full", "empty-grows", "growth-capped", "never-below-1-ms"],
)
def test_next_width_aims_at_two_pages(width: int, held_docs: int, wanted: int) -> None:
    assert next_width(width, held_docs, SIZE) == wanted


def test_large_documents_are_read_in_smaller_pages_all_of_them_once_in_order(
    es: Elasticsearch, index_name: str
) -> None:
    # 40 small documents, 60 of about 20 kB, 40 small again: a page budget of 100 kB fits
    # about five of the large ones.
    sizes = [10] * 40 + [20_000] * 60 + [10] * 40
    actions = (
        {
            "_index": index_name,
            "_id": f"d{i}",
            "_source": {"@timestamp": (START + timedelta(seconds=i)).isoformat(), "x": "a" * n},
        }
        for i, n in enumerate(sizes)
    )
    helpers.bulk(es, actions, refresh=True)
    span = TimeRange("@timestamp", None, ms(START + timedelta(hours=1)))
    fit = PageFit(SIZE, budget=100_000)

    read_pages = list(read(es, index_name, span, fit))

    got = [h["_id"] for page in read_pages for h in page.hits]
    assert got == [f"d{i}" for i in range(len(sizes))]
    large = [p for p in read_pages if any(len(h["_source"]["x"]) > 10 for h in p.hits)]
    # The first page (small documents, ten large at its end) is full. A page is sized from
    # the one before it, so the next still holds 40; from then on no page passes the budget.
    assert len(read_pages[0].hits) == SIZE
    assert len(large[1].hits) < SIZE
    assert max(sampled_bytes(p.hits) for p in large[2:]) <= 100_000
    assert len(large) >= 4
    # Back to small documents, pages grow back to `batch_size`.
    assert fit.size == SIZE


def test_a_page_fit_never_asks_for_more_than_the_limit_nor_for_none() -> None:
    small = [{"_source": {"m": "x"}}] * 10
    huge = [{"_source": {"m": "x" * 50_000}}] * 10
    fit = PageFit(1000, budget=1_000_000)

    fit.learn(small)
    assert fit.size == 1000
    fit.learn(huge)
    assert 15 <= fit.size <= 20  # 1 MB of 50 kB documents
    fit.learn([{"_source": {"m": "x" * 5_000_000}}])
    assert fit.size == 1
    fit.learn([])
    assert fit.size == 1  # an empty page says nothing about size
