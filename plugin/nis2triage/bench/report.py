"""The benchmark's output: a printed table, the same as JSON, and a PNG chart (matplotlib, Agg)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    """One figure: what was measured, its value, the target it is read against, and the verdict."""

    measure: str
    value: str
    target: str = ""
    met: bool | None = None


def format_table(rows: Sequence[Row]) -> str:
    width = max(len(r.measure) for r in rows)
    value_width = max(len(r.value) for r in rows)
    lines = [f"{'measure':<{width}}  {'value':>{value_width}}  target"]
    for row in rows:
        verdict = {True: "met", False: "NOT met", None: ""}[row.met]
        target = f"{row.target} ({verdict})" if row.target and verdict else row.target
        lines.append(f"{row.measure:<{width}}  {row.value:>{value_width}}  {target}")
    return "\n".join(lines)


def write_json(path: Path, rows: Sequence[Row], details: dict[str, Any]) -> None:
    body = {"table": [r.__dict__ for r in rows], "details": details}
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")


def draw(path: Path, details: dict[str, Any]) -> None:
    """Four panels: throughput, rule against ElastAlert, latency, memory; NAB if measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    _throughput(axes[0][0], details)
    _rule(axes[0][1], details)
    _latency(axes[0][2], details)
    _memory(axes[1][0], details)
    _nab(axes[1][1], details)
    _accuracy(axes[1][2], details)
    fig.suptitle(title(details))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def title(details: dict[str, Any]) -> str:
    """The chart's title: the day's size only when a section read it (NAB and memory
    alone generate no day)."""
    read_day = any(key in details for key in ("throughput", "elastalert", "latency"))
    scale = f", {details.get('events', 0):,} events" if read_day else ""
    return f"nis2triage benchmark{scale} ({details['machine']})"


def _bars(ax: Any, labels: list[str], values: list[float], title: str, unit: str) -> None:
    bars = ax.bar(labels, values, color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][: len(values)])
    ax.bar_label(bars, labels=[f"{v:,.0f}" if v >= 10 else f"{v:.2f}" for v in values])
    ax.set_title(title)
    ax.set_ylabel(unit)


def _throughput(ax: Any, d: dict[str, Any]) -> None:
    t = d.get("throughput")
    if not t:
        ax.set_axis_off()
        return
    _bars(
        ax, ["read limit", "end to end"], [t["read_rate"], t["e2e_rate"]], "Throughput", "events/s"
    )


def _rule(ax: Any, d: dict[str, Any]) -> None:
    ea, ours = d.get("elastalert", {}), d.get("throughput", {})
    labels, values = [], []
    # Only what was timed: a bar of 0 for a section skipped would read as a measure.
    if "rule_seconds" in ours:
        labels.append("nis2triage rule")
        values.append(ours["rule_seconds"])
    if "seconds" in ea:
        labels.append("ElastAlert 2")
        values.append(ea["seconds"])
    if not values:
        ax.set_axis_off()
        return
    _bars(ax, labels, values, "Frequency rule over the day (wall time)", "seconds")


def _latency(ax: Any, d: dict[str, Any]) -> None:
    lat = d.get("latency")
    if not lat:
        ax.set_axis_off()
        return
    bursts = range(1, len(lat["from_indexed"]) + 1)
    ax.plot(bursts, lat["from_indexed"], "o-", label="from indexing")
    ax.plot(bursts, lat["from_closable"], "s-", label="from bucket closable")
    ax.set_ylim(bottom=0)
    ax.set_title("Detection latency per burst")
    ax.set_xlabel("burst")
    ax.xaxis.get_major_locator().set_params(integer=True)  # no "burst 2.5"
    ax.set_ylabel("seconds")
    ax.legend()


def _memory(ax: Any, d: dict[str, Any]) -> None:
    runs = d.get("memory", [])
    if not runs:
        ax.set_axis_off()
        return
    labels = [f"cap {r['max_entities']:,}" for r in runs]
    width = 0.4
    spots = range(len(runs))
    ax.bar([x - width / 2 for x in spots], [r["state_mb"] for r in runs], width, label="state")
    ax.bar([x + width / 2 for x in spots], [r["peak_mb"] for r in runs], width, label="peak")
    ax.axhline(1024, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(list(spots), labels)
    ax.set_ylabel("MB")
    ax.set_title(f"Resident memory, {runs[0]['entities']:,} entities")
    ax.legend()


def _nab(ax: Any, d: dict[str, Any]) -> None:
    nab = d.get("nab")
    if not nab:
        ax.set_axis_off()
        return
    names = [nab["detector"], *nab["published"]]
    values = [nab["scores"]["standard"], *nab["published"].values()]
    ax.barh(names[::-1], values[::-1], color=["#888"] * (len(names) - 1) + ["#4c72b0"])
    ax.set_title("NAB standard profile")


def _accuracy(ax: Any, d: dict[str, Any]) -> None:
    acc = d.get("accuracy", {}).get("all")
    if not acc:
        ax.set_axis_off()
        return
    kinds = acc["by_kind"]
    ax.bar(
        [k["kind"].replace("_", "\n") for k in kinds], [k["detected"] / k["attacks"] for k in kinds]
    )
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Recall per attack kind (precision {acc['precision']:.2f})")
