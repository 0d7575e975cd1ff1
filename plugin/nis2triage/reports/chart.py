"""The chart in every report: event rate and anomaly score around the incident, with
the moments rules fired.

`gather` reads the numbers once, when the report is made (a date histogram
of the source indices, and the scores of the incident's alerts), and stores
them in the payload; `draw` turns them into a PNG with matplotlib's Agg
backend, so any channel can redraw the same chart without Elasticsearch.
"""

from __future__ import annotations

import io
import logging
import math
from datetime import datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure

from nis2triage.incidents.record import Incident

log = logging.getLogger(__name__)
MARGIN = timedelta(hours=1)
# Histogram steps, finest first; the first giving at most MAX_BUCKETS buckets is used.
STEPS = (
    ("1m", timedelta(minutes=1)),
    ("5m", timedelta(minutes=5)),
    ("15m", timedelta(minutes=15)),
    ("1h", timedelta(hours=1)),
    ("6h", timedelta(hours=6)),
    ("1d", timedelta(days=1)),
)
MAX_BUCKETS = 150
# The highest score the panel draws as it is. An unbounded scorer (StandardAbsoluteDeviation,
# HoltWintersError) can give up to 1.8e308 on an attacker's value: the room above it
# overflowed to inf, which matplotlib refuses as a limit, and its ticks overflow past 5e307.
HIGHEST_DRAWN = 1e306


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def step_for(span: timedelta) -> str:
    for name, size in STEPS:
        if span / size <= MAX_BUCKETS:
            return name
    return STEPS[-1][0]


def gather(es: Elasticsearch, incident: Incident, time_fields: dict[str, str]) -> dict[str, Any]:
    """Event counts per step (all events, and those the alerts' queries match) and alert scores."""
    start = min(a.start for a in incident.alerts) - MARGIN
    end = max(a.end for a in incident.alerts) + MARGIN
    interval = step_for(end - start)
    patterns = sorted({a.index_pattern for a in incident.alerts})
    series: dict[str, dict[str, int]] = {"all": {}, "incident": {}}
    for pattern in patterns:
        field = time_fields.get(pattern, "@timestamp")
        queries = sorted({a.query for a in incident.alerts if a.index_pattern == pattern})
        for name, query in (("all", None), ("incident", " OR ".join(f"({q})" for q in queries))):
            for t, n in _histogram(es, pattern, field, query, start, end, interval).items():
                series[name][t] = series[name].get(t, 0) + n
    return {
        "interval": interval,
        "from": _iso(start),
        "to": _iso(end),
        "events": [
            {"t": t, "all": series["all"][t], "incident": series["incident"].get(t, 0)}
            for t in sorted(series["all"])
        ],
        "scores": [
            {
                "t": _iso(a.end),
                "score": round(a.score, 4),
                "threshold": round(a.threshold, 4),
                "kind": a.kind,
            }
            for a in sorted(incident.alerts, key=lambda a: a.end)
        ],
    }


def _histogram(
    es: Elasticsearch,
    pattern: str,
    field: str,
    query: str | None,
    start: datetime,
    end: datetime,
    interval: str,
) -> dict[str, int]:
    filters: list[dict[str, Any]] = [{"range": {field: {"gte": _iso(start), "lt": _iso(end)}}}]
    if query:
        filters.append({"query_string": {"query": query}})
    # 400: an alert's query the query_string parser refuses; the chart goes without that
    # series rather than the report (or the agent's cycle) failing over a picture.
    resp = es.options(ignore_status=(400, 404)).search(
        index=pattern,
        size=0,
        query={"bool": {"filter": filters}},
        aggs={
            "rate": {
                "date_histogram": {
                    "field": field,
                    "fixed_interval": interval,
                    # Empty steps too, so both series share every step of the window.
                    "min_doc_count": 0,
                    "extended_bounds": {"min": _iso(start), "max": _iso(end)},
                }
            }
        },
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    if resp.meta.status == 400:
        log.warning("chart: %s refused the query %r; that series stays empty", pattern, query)
    buckets = resp.get("aggregations", {}).get("rate", {}).get("buckets", [])
    return {str(b["key_as_string"]): int(b["doc_count"]) for b in buckets}


def draw(chart: dict[str, Any]) -> bytes:
    """The chart as PNG: events per step above, anomaly scores against their thresholds below."""
    out = io.BytesIO()
    figure(chart).savefig(out, format="png")
    return out.getvalue()


def figure(chart: dict[str, Any]) -> Figure:
    """The chart's two panels: the event rate, and what the alerts scored."""
    fig = Figure(figsize=(8, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    rate, score = fig.subplots(2, 1, sharex=True)
    events = chart.get("events", [])
    times = [_time(e["t"]) for e in events]
    rate.step(times, [e["all"] for e in events], where="post", label="all events")
    rate.step(times, [e["incident"] for e in events], where="post", label="the incident's events")
    rate.set_ylabel(f"events / {chart.get('interval', '?')}")
    rate.legend(loc="upper left", fontsize=8)
    _scores(score, chart.get("scores", []))
    score.xaxis.set_major_formatter(DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
    score.set_xlabel("time (UTC)")
    fig.tight_layout()
    return fig


def _scores(axes: Any, scores: list[dict[str, Any]]) -> None:
    """Detectors' anomaly scores against their thresholds; rules' alerts as marks of when
    they fired. A rule's score is its own count or value (20 failed logins): on the same
    axis it flattened the anomaly scores, which lie between 0 and 1, to the floor."""
    # Charts stored before alerts carried their kind held detectors' scores only. A score
    # Elasticsearch stored as null (a NaN) has no place on the axis: left out.
    scored = [s for s in scores if s.get("kind", "detector") == "detector" and _drawable(s)]
    at = [_time(s["t"]) for s in scored]
    axes.plot(
        at, [_capped(s["score"]) for s in scored], "o", color="tab:red", label="anomaly score"
    )
    axes.plot(at, [_capped(s["threshold"]) for s in scored], "_", color="black", label="threshold")
    fired = [_time(s["t"]) for s in scores if s.get("kind") == "rule"]
    for n, when in enumerate(fired):
        label = "rule alert" if n == 0 else None
        axes.axvline(when, color="tab:purple", linestyle=":", label=label)
    axes.set_ylabel("anomaly score")
    # Room above the highest mark: at the panel's edge the top dot was cut in half.
    highest = max((_capped(v) for s in scored for v in (s["score"], s["threshold"])), default=1.0)
    axes.set_ylim(0, max(highest, 0.01) * 1.15)
    axes.legend(loc="upper left", fontsize=8)


def _drawable(score: dict[str, Any]) -> bool:
    """Whether a score and its threshold are both finite numbers."""
    values = (score.get("score"), score.get("threshold"))
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def _capped(value: float) -> float:
    """`value`, at most HIGHEST_DRAWN: a mark above it is drawn at the panel's top."""
    return min(value, HIGHEST_DRAWN)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
