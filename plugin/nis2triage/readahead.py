"""Reading ahead: the next page is fetched while the agent works on the current one.

The source's pages come one request after another, each needing the last one's
`search_after` key, so they cannot be asked in parallel. What can overlap is the
node's work on page n + 1 (searching, fetching and serialising sources, on its own
cores) with the agent's work on page n (features, models, alerts). A thread runs
the page iterator and hands each page over a bounded queue; the consumer still sees
the pages in order, and an error raised while fetching reaches it at the page where
it happened, as if nothing ran ahead.

Nothing that the cursor or a checkpoint depends on runs in the thread: it only
requests and decodes pages. A page read ahead and never taken (the agent stopped)
is simply dropped, and is read again from the checkpoint next time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
# How often a blocked hand-over looks whether the consumer has gone (seconds).
POLL_S = 0.05
# How long closing waits for the thread's request in flight. Its page will not be used, so
# stopping does not wait it out: the thread is left to end with its request (a daemon;
# closing the point in time makes that request fail fast, and its error is dropped).
JOIN_S = 1.0


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_END = object()


class _Filler(Generic[T]):
    """The thread that runs `items` and queues them: `depth` wait in the queue while the
    thread fetches one more."""

    def __init__(self, items: Iterator[T], depth: int, name: str) -> None:
        self._items = items
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name=name, daemon=True)
        self._thread.start()

    def taken(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]

    def close(self) -> None:
        """Stop reading ahead and wait for the request in flight, if any."""
        self._stop.set()
        self._thread.join(JOIN_S)

    def _fill(self) -> None:
        try:
            for item in self._items:
                if not self._hand_over(item):
                    return
        except BaseException as exc:  # handed to the consumer and raised there
            self._hand_over(_Failed(exc))
        else:
            self._hand_over(_END)
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def _hand_over(self, item: object) -> bool:
        """Queue `item` unless the consumer has gone; False when it has."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False


def read_ahead(
    items: Iterator[T], depth: int = 1, name: str = "read-ahead"
) -> Generator[T, None, None]:
    """`items` in order, fetched in a thread: up to `depth` wait, and one more is fetched.

    The thread starts at the first `next()` and is stopped (and waited for) when the
    consumer finishes, raises or closes the iterator.
    """
    if depth < 1:
        raise ValueError(f"read-ahead depth must be at least 1, not {depth}")
    return _run(items, depth, name)


def _run(items: Iterator[T], depth: int, name: str) -> Generator[T, None, None]:
    filler = _Filler(items, depth, name)
    try:
        yield from filler.taken()
    finally:
        filler.close()
