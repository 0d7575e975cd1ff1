"""The report's chart: anomaly scores on their own scale, rules' alerts as the moments they
fired, read from the real node."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from elasticsearch import Elasticsearch

from nis2triage.reports import chart

from report_sample import T0, sample_chart, sample_incident

DETECTOR = {"t": T0.isoformat(), "score": 0.931, "threshold": 0.8, "kind": "detector"}
RULE = {"t": (T0 - timedelta(minutes=6)).isoformat(), "score": 20.0, "threshold": 20.0,
        "kind": "rule"}  # fmt: skip


def _drawn(scores: list[dict[str, Any]]) -> Any:
    """The panel of scores, as matplotlib drew it."""
    return chart.figure(sample_chart() | {"scores": scores}).axes[1]


def test_a_rules_count_does_not_flatten_the_anomaly_scores() -> None:
    panel = _drawn([RULE, DETECTOR])

    scored = {line.get_label(): list(line.get_ydata()) for line in panel.get_lines()}
    assert scored["anomaly score"] == [0.931]
    assert scored["threshold"] == [0.8]
    assert 0.931 * 1.1 < panel.get_ylim()[1] < 1.5


def test_a_rules_alert_is_marked_when_it_fired() -> None:
    panel = _drawn([RULE, DETECTOR])

    [mark] = [line for line in panel.get_lines() if line.get_label() == "rule alert"]
    assert set(mark.get_xdata()) == {T0 - timedelta(minutes=6)}


def test_a_chart_stored_before_alerts_had_a_kind_draws_its_scores_as_before() -> None:
    panel = _drawn([{"t": T0.isoformat(), "score": 0.97, "threshold": 0.8}])

    assert [list(line.get_ydata()) for line in panel.get_lines()] == [[0.97], [0.8]]


def test_gather_keeps_whether_each_score_came_from_a_detector_or_a_rule(
    es: Elasticsearch, index_name: str
) -> None:
    es.index(index=index_name, document={"@timestamp": T0.isoformat()}, refresh=True)
    incident = sample_incident()
    later = T0 + timedelta(minutes=7)
    rule = incident.alerts[-1].model_copy(
        update={"kind": "rule", "end": later, "score": 20.0, "threshold": 20.0}
    )
    alerts = [a.model_copy(update={"index_pattern": index_name}) for a in (*incident.alerts, rule)]

    drawn = chart.gather(es, incident.model_copy(update={"alerts": tuple(alerts)}), {})

    assert [s["kind"] for s in drawn["scores"]] == ["detector", "detector", "rule"]
    assert drawn["scores"][-1]["score"] == 20.0


def test_a_score_near_the_largest_float_is_drawn_at_the_panels_top() -> None:
    # An unbounded scorer (StandardAbsoluteDeviation, HoltWintersError) on an attacker's
    # value: the room above the highest mark overflowed to inf, and matplotlib refused it.
    huge = DETECTOR | {"score": 1.7e308, "threshold": 1.6e308}

    panel = _drawn([huge])

    scored = {line.get_label(): list(line.get_ydata()) for line in panel.get_lines()}
    assert scored["anomaly score"] == scored["threshold"] == [chart.HIGHEST_DRAWN]
    assert panel.get_ylim() == (0.0, chart.HIGHEST_DRAWN * 1.15)
    assert chart.draw(sample_chart() | {"scores": [huge]}).startswith(b"\x89PNG")


def test_scores_stored_as_null_or_nan_are_left_out_of_the_panel() -> None:
    # Elasticsearch holds NaN as null: a chart read back from the outbox may carry either.
    blank = [DETECTOR | {"score": None}, DETECTOR | {"threshold": float("nan")}, DETECTOR]

    panel = _drawn(blank)

    scored = {line.get_label(): list(line.get_ydata()) for line in panel.get_lines()}
    assert scored["anomaly score"] == [0.931]
    assert scored["threshold"] == [0.8]
