"""The bench's chart shows only what was measured."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from nis2triage.bench import report

NAB_ONLY: dict[str, Any] = {"events": 2_000_000, "machine": "2 cores, 24 GB", "nab": {}}


def test_a_run_without_the_day_does_not_title_it() -> None:
    with_day = NAB_ONLY | {"throughput": {"rule_seconds": 0.2}}

    assert report.title(NAB_ONLY) == "nis2triage benchmark (2 cores, 24 GB)"
    assert report.title(with_day) == "nis2triage benchmark, 2,000,000 events (2 cores, 24 GB)"


def test_the_rule_panel_has_a_bar_per_rule_timed_and_none_for_a_skipped_one() -> None:
    fig, (skipped, ours, both) = plt.subplots(1, 3)
    try:
        report._rule(skipped, NAB_ONLY)
        report._rule(ours, {"throughput": {"rule_seconds": 0.2}})
        report._rule(both, {"throughput": {"rule_seconds": 0.2}, "elastalert": {"seconds": 6.1}})

        assert not skipped.axison and not skipped.patches
        assert [round(p.get_height(), 2) for p in ours.patches] == [0.2]
        assert [round(p.get_height(), 2) for p in both.patches] == [0.2, 6.1]
    finally:
        plt.close(fig)
