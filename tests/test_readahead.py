"""The read-ahead thread: same items, same order, errors where they happened, no leftovers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from nis2triage.readahead import read_ahead


class Pages:
    """A page iterator that records how far it was asked, and whether it was closed."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.produced = 0
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[int]:
        try:
            for n in range(self.count):
                if n == self.fail_at:
                    raise ConnectionError(f"page {n} failed")
                self.produced += 1
                yield n
        finally:
            self.closed.set()


def ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "read-ahead"]


def wait_for(condition: object, seconds: float = 5.0) -> None:
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:  # type: ignore[operator]
        time.sleep(0.01)


def test_every_item_arrives_in_order() -> None:
    assert list(read_ahead(iter(Pages(500)))) == list(range(500))


def test_error_reaches_the_consumer_after_the_items_before_it() -> None:
    taken = []
    with pytest.raises(ConnectionError, match="page 3 failed"):
        for n in read_ahead(iter(Pages(10, fail_at=3))):
            taken.append(n)
    assert taken == [0, 1, 2]


@pytest.mark.parametrize("depth", [1, 3])
def test_runs_at_most_depth_items_ahead(depth: int) -> None:
    pages = Pages(100)
    ahead = read_ahead(iter(pages), depth=depth)
    assert next(ahead) == 0

    # One taken, `depth` queued, one more produced and waiting for room in the queue.
    wait_for(lambda: pages.produced >= depth + 2)
    time.sleep(0.2)
    assert pages.produced == depth + 2
    ahead.close()


def test_nothing_is_read_before_the_first_item_is_asked_for() -> None:
    pages = Pages(10)
    ahead = read_ahead(iter(pages))
    time.sleep(0.1)
    assert pages.produced == 0
    assert not ahead_threads()
    ahead.close()


def test_closing_early_stops_the_thread_and_closes_the_pages() -> None:
    pages = Pages(10_000)
    ahead = read_ahead(iter(pages))
    assert [next(ahead), next(ahead)] == [0, 1]

    ahead.close()

    # close() waits for the thread: the pages are closed before it returns.
    assert pages.closed.is_set()
    assert not ahead_threads()
    assert pages.produced < 10


def test_a_consumer_that_raises_leaves_no_thread_behind() -> None:
    pages = Pages(10_000)
    with pytest.raises(KeyError):
        for n in read_ahead(iter(pages)):
            if n == 5:
                raise KeyError(n)
    assert pages.closed.is_set()
    assert not ahead_threads()


def test_depth_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        read_ahead(iter(Pages(1)), depth=0)


def test_closing_does_not_wait_for_a_slow_page_nobody_will_use() -> None:
    release = threading.Event()

    def slow_third() -> Iterator[int]:
        yield 0
        yield 1
        release.wait(20)  # a search that hangs on a slow node
        yield 2

    ahead = read_ahead(slow_third())
    assert [next(ahead), next(ahead)] == [0, 1]

    started = time.monotonic()
    ahead.close()
    waited = time.monotonic() - started

    release.set()
    assert waited < 10  # JOIN_S (1 s) and scheduling, not the page's 20 s
