"""The bench table's NAB rows: the shipped spec first, its own bar, then the comparisons."""

from __future__ import annotations

from nis2triage.bench.run import NODE_SECTIONS, SECTIONS, _nab_rows


def three(std: float, fp: float, fn: float) -> dict[str, float]:
    return {"standard": std, "reward_low_FP_rate": fp, "reward_low_FN_rate": fn}


def test_the_nab_rows_name_the_spec_its_bar_and_the_comparison() -> None:
    nab = {
        "detector": "events-per-host",
        "scores": three(57.94, 52.0, 61.6),
        "at_bar": three(57.3, 50.2, 61.5),
        "bar": 0.5,
        "compared": {"detector": "hw_likelihood_range", "scores": three(58.0, 52.1, 62.0)},
        "published_profiles": {"Random Cut Forest": (51.72, 38.36, 59.75)},
    }

    rows = [(r.measure, r.value) for r in _nab_rows({"nab": nab})]

    assert rows == [
        ("NAB events-per-host (shipped spec) std / low FP / low FN", "57.9 / 52.0 / 61.6"),
        ("  at the spec's own bar (0.50)", "57.3 / 50.2 / 61.5"),
        ("  registered hw_likelihood_range", "58.0 / 52.1 / 62.0"),
        ("  published Random Cut Forest", "51.7 / 38.4 / 59.8"),
    ]


def test_nab_and_memory_are_the_sections_that_need_no_node() -> None:
    assert set(SECTIONS) - set(NODE_SECTIONS) == {"nab", "memory"}
