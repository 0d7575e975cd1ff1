"""Paging through a point in time in event-time order, at a cost linear in the documents read.

Elasticsearch 8.19 does not prune `search_after` pages sorted by a time field plus
`_shard_doc` (the tiebreaker disables the sort optimisation), so a page asked over the
whole remaining range scans every match after the cursor: a backlog of N events then
costs O(N^2 / page size) (`make bench`, 2 million events: 50 ms a page early in the day,
25 ms late, against a flat 18 to 20 ms with windows). Here each page is asked over a
time window as well, sized from the density the previous page showed, so it scans
about `WINDOW_PAGES` pages' worth of documents whatever the backlog.

Windows are half-open, [low, high) in epoch milliseconds, and laid end to end, so a
millisecond belongs to exactly one window. Inside a window, `search_after` on
(time, `_shard_doc`) moves past a page border even when many events share its
millisecond: a full page's next window starts at that page's last millisecond, and
`search_after` skips the events of it already returned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch

PIT_KEEP_ALIVE = "2m"
# A window is sized to hold about this many pages: enough that most pages come back full
# (one request each), few enough that a page's scan stays a small multiple of its size.
WINDOW_PAGES = 2
# After a window that held little or nothing (a gap in the data), the next one grows at
# most this much, so a dense stretch after a gap costs one wide scan, not a long one.
MAX_GROWTH = 16
# A page's JSON is kept near this many bytes by asking for fewer hits when documents are
# large: `batch_size` counts documents, and 10,000 documents of 50 kB (a Windows event
# with its XML, say) held 2.2 GB of resident memory, with two pages alive at once (the
# one the agent works on and the one read ahead).
PAGE_BYTES = 32 * 1024 * 1024
# A source's very first page asks for at most this many hits, its size unknown yet: a
# first page of 10,000 documents of 50 kB held 1.4 GB by itself. One more request at
# start when documents are small.
FIRST_PAGE = 100
# Hits re-encoded per page to estimate its size: enough to see a page of large documents,
# few enough to cost nothing beside decoding the page.
SIZE_SAMPLE = 8


@dataclass(frozen=True)
class Page:
    """One response: its hits in (time, shard doc) order and the window it was asked over."""

    hits: list[dict[str, Any]]
    low_ms: int | None
    high_ms: int


@dataclass(frozen=True)
class TimeRange:
    """What to read: `low_ms <= time <= high_ms` (no lower bound when `low_ms` is None),
    and of each document the `fields` only (None: all of it)."""

    time_field: str
    low_ms: int | None
    high_ms: int
    filters: tuple[dict[str, Any], ...] = ()
    fields: tuple[str, ...] | None = None


@dataclass
class PageFit:
    """How many hits to ask for: `limit` (the source's `batch_size`), fewer while the
    documents read last are so large that a full page would pass `budget` bytes. Kept by
    the source from one poll to the next, so a poll's first page is sized as well; the
    very first asks for `FIRST_PAGE` at most."""

    limit: int
    budget: int = PAGE_BYTES
    size: int = 0
    # About how many bytes of JSON a document of the last page held (0: none read yet).
    per_hit: int = 0

    def __post_init__(self) -> None:
        self.size = self.size or min(self.limit, FIRST_PAGE)

    def learn(self, hits: list[dict[str, Any]]) -> None:
        """Size the next page from the documents of this one.

        Known gap: a page is sized from the one before it, so where documents grow
        suddenly (small ones, then a run of large ones) one page can still pass the
        budget by that factor before the next is made smaller. Elasticsearch says a
        document's size only after fetching it (short of the mapper-size plugin), so the
        bound cannot come before the page."""
        if hits:
            self.per_hit = max(1, sampled_bytes(hits) // len(hits))
            self.size = max(1, min(self.limit, self.budget // self.per_hit))


def sampled_bytes(hits: list[dict[str, Any]]) -> int:
    """About how many bytes of JSON `hits` hold: a few evenly spread, re-encoded, scaled."""
    step = max(1, len(hits) // SIZE_SAMPLE)
    sample = hits[::step][:SIZE_SAMPLE]
    encoded = sum(len(json.dumps(hit, ensure_ascii=False, default=str)) for hit in sample)
    return encoded * len(hits) // len(sample)


def sort_clause(time_field: str) -> list[dict[str, Any]]:
    # `unmapped_type`: an index that has no event yet maps no time field, and sorting on a
    # field no searched index maps fails the whole search.
    return [
        {time_field: {"order": "asc", "numeric_type": "date", "unmapped_type": "date"}},
        {"_shard_doc": "asc"},
    ]


def source_includes(fields: Iterable[str]) -> list[str]:
    """`_source.includes` patterns that keep each of `fields` whole, as the agent reads it.

    The node takes a backslash before a dot for an escape, and `a\\.b` then kept nothing,
    not even the key `a\\.b` a detector named: such a name is asked by the part before
    its backslash and a wildcard, which keeps it (and whatever else starts so).
    """
    return [name.partition("\\.")[0] + "*" if "\\." in name else name for name in fields]


def window_query(span: TimeRange, low_ms: int | None, high_ms: int) -> dict[str, Any]:
    """The source's filters plus `low_ms <= time < high_ms`."""
    bounds: dict[str, Any] = {"lt": high_ms, "format": "epoch_millis"}
    if low_ms is not None:
        bounds["gte"] = low_ms
    time_filter = {"range": {span.time_field: bounds}}
    return {"bool": {"filter": [time_filter, *span.filters]}}


def pages(
    es: Elasticsearch, pit: str, span: TimeRange, size: int, fit: PageFit | None = None
) -> Iterator[Page]:
    """Every document of `span` in the point in time, page by page, each page window-bounded.

    The first request has no upper window (it reads up to `span.high_ms`): a live poll over
    a few events is then one request, and a catch-up learns the density from it. Pages
    hold at most `size` hits, fewer when the documents are large (`fit`).
    """
    fit = fit if fit is not None else PageFit(size)
    end = span.high_ms + 1
    low, width = span.low_ms, None
    after: list[Any] | None = None
    sort = sort_clause(span.time_field)
    while low is None or low < end:
        high = end if width is None or low is None else min(end, low + width)
        asked = fit.size
        resp = es.search(
            pit={"id": pit, "keep_alive": PIT_KEEP_ALIVE},
            query=window_query(span, low, high),
            sort=sort,
            size=asked,
            search_after=after,
            track_total_hits=False,
            # A shard that fails the query (an index of the pattern maps a field otherwise, a
            # shard unavailable) must fail the page: a partial page would move the watermark
            # past events never read. The agent treats the refusal as an outage and retries.
            allow_partial_search_results=False,
            # In the body: thousands of detectors' fields would pass the node's limit on
            # the length of a request line (4 kB).
            source=True if span.fields is None else {"includes": source_includes(span.fields)},
        )
        pit = resp.get("pit_id", pit)
        hits = resp["hits"]["hits"]
        fit.learn(hits)
        if hits:
            yield Page(hits, low, high)
        if len(hits) == asked:
            after = hits[-1]["sort"]
            last_ms = int(after[0])
            # The page's own span, not its window's: a gap at the window's start would
            # otherwise widen the next window past what it should hold.
            width = WINDOW_PAGES * (last_ms - int(hits[0]["sort"][0]) + 1)
            low = last_ms
        elif high >= end or low is None:
            return
        else:
            # The window is exhausted; the next one starts where it ended, so the cursor in
            # `after` (inside this window) is no longer needed.
            width = next_width(high - low, len(hits), fit.size)
            low, after = high, None


def next_width(width_ms: int, held: int, size: int) -> int:
    """The width that should hold `WINDOW_PAGES` pages, given that `width_ms` held `held`."""
    if held == 0:
        return width_ms * MAX_GROWTH
    wanted = width_ms * WINDOW_PAGES * size // held
    return max(1, min(wanted, width_ms * MAX_GROWTH))
