"""The source's cursor: which events inside the lateness margin were already read."""

from __future__ import annotations

from datetime import timedelta

from nis2triage.source import Cursor, unpack_seen

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


def test_an_agent_of_the_version_before_reads_the_held_keys_as_seen() -> None:
    # A standby of the earlier version taking over reads `seen` alone (`unpack_seen` of
    # `seen_packed`): it must still know the events set aside, or it reads them again.
    held = "ab" * 12  # event keys: 12 bytes as hex
    keys = {f"{n:024x}": t for n, t in enumerate([1_000, 5_000])}
    cursor = Cursor(watermark_ms=5_000, seen=keys, held={held: 40_000}, events=2)

    saved = cursor.to_dict()

    assert unpack_seen(saved["seen_packed"]) == {**keys, held: 40_000}
    again = Cursor.from_dict(saved)
    assert (again.seen, again.held) == (keys, {held: 40_000})


def test_a_checkpoint_from_before_held_moves_its_held_keys_out_of_the_seen_order() -> None:
    # Saved before `held`, an event set aside sits among the seen keys at its poll's end:
    # left there, the first poll after the upgrade kept every later key behind it.
    old = {"watermark_ms": 30_000, "seen": {"k0": 1_000, "h": 40_000, "k1": 5_000, "k2": 30_000}}

    cursor = Cursor.from_dict(old)
    cursor.mark("k3", 60_000)
    cursor.prune_oldest(MARGIN)

    assert cursor.seen == {"k3": 60_000}
    assert cursor.knows("h") and cursor.held == {"h": 40_000}
