"""The cyclic garbage collector, tuned for a process that decodes a stream of documents.

Python runs a young-generation collection every 700 container allocations and, every
hundred of those, may sweep the whole heap. Each page of 1,000 events allocates tens of
thousands of dicts and lists, nearly all freed by reference counting as soon as the page
is processed, yet each collection also walks the agent's long-lived state (open buckets,
baselines, models). Measured with `make bench` at 200,000 events on the project's
2-core machine: the agent end to end took 12.6 s with the default thresholds and 7.4 s
with the ones below; the read limit's scroll 2.6 s and 1.9 s. Reference cycles are
still collected, only less often: at most the young threshold's worth of allocations
stays unexamined.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# (young, middle, old): see gc.set_threshold. The defaults are (700, 10, 10).
STREAMING_THRESHOLDS = (50_000, 20, 10)


@contextmanager
def streaming() -> Iterator[None]:
    """Collect cycles less often while the block runs; the thresholds before it after."""
    before = gc.get_threshold()
    gc.set_threshold(*STREAMING_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
