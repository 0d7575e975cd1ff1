"""The source's cursor: which events inside the lateness margin were already read."""

from __future__ import annotations

from datetime import timedelta

from nis2triage.source import Cursor

MARGIN = timedelta(seconds=10)


def read(times_ms: list[int]) -> Cursor:
    cursor = Cursor()
    for n, ts in enumerate(times_ms):
        cursor.mark(f"k{n}", ts)
    return cursor


def test_pruning_from_the_oldest_end_keeps_the_margin_as_a_full_prune_does() -> None:
    in_order = read([1_000, 5_000, 12_000, 18_000, 25_000])  # watermark 25 s, margin from 15 s
    full = read([1_000, 5_000, 12_000, 18_000, 25_000])

    in_order.prune_oldest(MARGIN)
    full.prune(MARGIN)

    assert in_order.seen == full.seen == {"k3": 18_000, "k4": 25_000}


def test_a_late_key_behind_a_newer_one_waits_for_the_full_prune() -> None:
    cursor = read([16_000, 2_000, 25_000])  # the 2 s event came late, after a newer one

    cursor.prune_oldest(MARGIN)
    assert cursor.seen == {"k0": 16_000, "k1": 2_000, "k2": 25_000}

    cursor.prune(MARGIN)
    assert cursor.seen == {"k0": 16_000, "k2": 25_000}


def test_nothing_is_pruned_before_anything_was_read() -> None:
    cursor = Cursor(seen={"k": 1})
    cursor.prune_oldest(MARGIN)
    assert cursor.seen == {"k": 1}


def test_an_event_set_aside_is_known_kept_to_its_time_and_saved_apart() -> None:
    cursor = read([1_000, 5_000])
    held = "ab" * 12  # an event key: 12 bytes as hex
    cursor.hold(held, 40_000)  # to the end of its poll's range, past the watermark
    cursor.mark("k9", 30_000)

    cursor.prune_oldest(MARGIN)
    assert cursor.seen == {"k9": 30_000}
    assert cursor.knows(held) and cursor.watermark_ms == 30_000

    again = Cursor.from_dict(cursor.to_dict())
    assert (again.seen, again.held) == (cursor.seen, {held: 40_000})

    cursor.mark("k10", 60_000)
    cursor.prune(MARGIN)
    assert not cursor.knows(held)
