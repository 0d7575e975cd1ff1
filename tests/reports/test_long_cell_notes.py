"""Cells too long for a table are written as numbered notes below it: each cell names the
note that holds its text (from the third break run)."""

from __future__ import annotations

import re

from nis2triage.reports.render import render

from report_sample import sample_payload


def test_each_long_cell_points_at_the_note_that_holds_its_text() -> None:
    p = sample_payload("final_report", pseudonymise=False)
    p["root_cause"] = "ROOT " + "cause " * 100
    p["mitigation_applied"] = "APPLIED " + "blocked " * 100
    p["mitigation_ongoing"] = "ONGOING " + "patching " * 100

    done = render(p)

    notes = dict(re.findall(r"^Note (\d+), value of [^:]+:\n\n(\w+)", done.markdown, re.M))
    cells = dict(
        re.findall(r"^\| ([^|]+?) \| see note (\d+) below the table \|$", done.markdown, re.M)
    )
    assert notes == {"1": "ROOT", "2": "APPLIED", "3": "ONGOING"}
    assert cells == {
        "Likely underlying cause": "1",
        "Mitigation measures applied": "2",
        "Mitigation measures ongoing": "3",
    }
