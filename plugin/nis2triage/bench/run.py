"""`make bench`: throughput, ElastAlert 2, latency, memory and accuracy, on the local node.

    python -m nis2triage.bench.run --events 2000000 --repeat 3 --out out/bench

Starts or reuses the checkout's local node (as `make demo` does), loads the
generated day unless the index already holds it, measures, and writes
`bench.json` and `bench.png` into the output folder beside the printed table.
Every timed measure is repeated and reported as its median.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from elasticsearch import Elasticsearch

from nis2triage import esclient, gc_tuning, localnode
from nis2triage.bench import indexing, latency, memory, metrics, throughput
from nis2triage.bench import versus_elastalert as elastalert
from nis2triage.bench.report import Row, draw, format_table, write_json
from nis2triage.bench.stream import StreamSpec, plan_attacks
from nis2triage.localnode import NodeInfo
from nis2triage.rules.native import FrequencyRule

log = logging.getLogger(__name__)
# A fixed past day, so that the loaded index can be reused from one run to the next.
DAY = date(2026, 11, 2)
T = TypeVar("T")
SECTIONS = ("throughput", "elastalert", "latency", "memory", "nab")
# The sections that read from Elasticsearch; without them no node is started.
NODE_SECTIONS = ("throughput", "elastalert", "latency")
READ_LABELS = {
    "windowed": "PIT + search_after in time windows, the agent's paging",
    "unbounded": "PIT + search_after over the whole range",
    "scroll": "scroll in index order, no time order",
}


def day_range() -> tuple[datetime, datetime]:
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def repeated(times: int, what: str, measure: Callable[[], T]) -> list[T]:
    results = []
    for i in range(times):
        results.append(measure())
        log.info("%s: run %d of %d done", what, i + 1, times)
    return results


def bench_throughput(
    es: Elasticsearch,
    node: NodeInfo,
    index: str,
    repeat: int,
    methods: Sequence[str] = throughput.READ_METHODS,
    processes: Sequence[str] = (),
) -> dict[str, Any]:
    """The read limit and end to end in rounds (each read method, then one pass of the
    agent), not all reads before all passes: this shared machine's speed moves by 15 to
    30% over minutes, and a ratio of figures taken far apart measured that drift too."""
    cfg = throughput.shipped_agent_config(node, index, "bench-e2e", batch_size=1000)
    cfg = cfg.model_copy(update={"detector_processes": list(processes)})
    rule = throughput.shipped_rule(index)
    reads: dict[str, list[throughput.Timed]] = {method: [] for method in methods}
    runs: list[throughput.Timed] = []
    for i in range(repeat):
        for method in methods:
            reads[method].append(throughput.read_limit(es, index, 1000, method, node.pid))
        runs.append(throughput.end_to_end(es, cfg, rule, day_range(), node.pid))
        log.info("throughput: round %d of %d done", i + 1, repeat)
    rules = repeated(repeat, "rule alone", lambda: throughput.rule_only(es, rule, day_range()))

    read_rates = {m: metrics.median([r.rate for r in timed]) for m, timed in reads.items()}
    best = max(read_rates, key=read_rates.__getitem__)
    return {
        "read_rate": read_rates[best],
        "read_method": best,
        "read_rates": [r.rate for r in reads[best]],
        "read_rate_by_method": read_rates,
        # What each reader cost: the client's decoding against the node's search and fetch.
        "read_cpu_by_method": {
            m: [metrics.median([r.cpu for r in timed]), _median_known([r.node_cpu for r in timed])]
            for m, timed in reads.items()
        },
        "e2e_rate": metrics.median([r.rate for r in runs]),
        "e2e_rates": [r.rate for r in runs],
        "e2e_seconds": metrics.median([r.seconds for r in runs]),
        # Each round's pass against the same round's read, the drift between rounds left out.
        "e2e_cpu": metrics.median([r.cpu for r in runs]),
        "e2e_node_cpu": _median_known([r.node_cpu for r in runs]),
        "e2e_processes": list(processes),
        "e2e_processes_cpu": _median_known([r.processes_cpu for r in runs]),
        "round_ratios": [e.rate / r.rate for e, r in zip(runs, reads[best], strict=True)],
        "e2e_read": runs[-1].read,
        "e2e_events": runs[-1].events,
        "rule_seconds": metrics.median([r.seconds for r in rules]),
        "rule_alerts": len(rules[-1].alerts),
        "_alerts": runs[-1].alerts,
        "_rule_alerts": rules[-1].alerts,
    }


def bench_elastalert(node: NodeInfo, rule: FrequencyRule, out: Path, repeat: int) -> dict[str, Any]:
    try:
        python = elastalert.install(out / "elastalert-venv")
        config, rule_file = elastalert.write_files(out / "elastalert", node, rule)
        unmodified = elastalert.probe_unmodified(python, config, node)
        runs = repeated(
            repeat,
            "ElastAlert 2",
            lambda: elastalert.run(python, config, rule_file, node, day_range()),
        )
    except elastalert.ElastAlertUnavailable as exc:
        return {"error": str(exc)}
    return {
        "version": elastalert.version(python),
        "unmodified_failure": unmodified,
        "seconds": metrics.median([r.seconds for r in runs]),
        "all_seconds": [r.seconds for r in runs],
        "hits": runs[-1].hits,
        "matches": runs[-1].matches,
    }


def bench_latency(es: Elasticsearch, node: NodeInfo, out: Path, bursts: int) -> dict[str, Any]:
    folder = out / "latency"
    folder.mkdir(parents=True, exist_ok=True)
    results = latency.measure(es, node, folder, bursts)
    indexed = [b.from_indexed for b in results if b.from_indexed is not None]
    closable = [b.from_closable for b in results if b.from_closable is not None]
    return {
        "bursts": len(results),
        "detected": len(indexed),
        "from_indexed": indexed,
        "from_closable": closable,
        "settings": f"bucket {latency.BUCKET_S} s, lateness {latency.LATENESS_S} s, "
        f"poll {latency.POLL_S} s",
    }


def bench_memory(entities: int) -> list[dict[str, Any]]:
    # The shipped default cap (100,000 per detector), then one the million never reaches.
    return [asdict(memory.measure(entities, cap)) for cap in (100_000, 2 * entities)]


def bench_nab(jobs: int) -> dict[str, Any]:
    """The shipped events-per-host spec on NAB, as the agent runs it; the registered
    `hw_likelihood_range` beside it for comparison."""
    from nis2triage.bench import nab_corpus, nab_detectors, nab_run

    root = nab_run.default_data_dir()
    corpus, profiles = nab_corpus.load_corpus(root), nab_corpus.load_profiles(root)
    report = nab_run.evaluate_spec(nab_detectors.SHIPPED_SPEC, corpus, profiles, jobs)
    name = "hw_likelihood_range"
    compared = nab_run.evaluate(name, nab_detectors.DETECTORS[name], corpus, profiles, jobs)
    return {
        "detector": report.detector,
        "spec": str(nab_detectors.SHIPPED_SPEC.relative_to(nab_detectors.SHIPPED_SPEC.parents[2])),
        "scores": {r.profile: r.score for r in report.results},
        "at_bar": {r.profile: r.score for r in report.at_bar},
        "bar": report.at_bar[0].threshold if report.at_bar else None,
        "compared": {"detector": name, "scores": {r.profile: r.score for r in compared.results}},
        "seconds": report.seconds,
        "rows": report.rows,
        "published": {k: v[0] for k, v in nab_run.PUBLISHED_PROFILES.items()},
        "published_profiles": nab_run.PUBLISHED_PROFILES,
    }


def accuracy(spec: StreamSpec, alerts: list[Any]) -> dict[str, Any]:
    """Detector alerts, rule alerts and both, against the generator's record of attacks."""
    attacks = plan_attacks(spec)
    groups = {
        name: [a for a in alerts if a.name == name] for name in sorted({a.name for a in alerts})
    }
    groups["detectors"] = [a for a in alerts if a.kind == "detector"]
    groups["all"] = alerts
    scored = {name: metrics.score(group, attacks) for name, group in groups.items()}
    return {
        name: {**asdict(a), "precision": a.precision, "recall": a.recall}
        for name, a in scored.items()
    }


def rows(d: dict[str, Any]) -> list[Row]:
    """The table: every figure, with the target it is read against where there is one."""
    table: list[Row] = []
    for part in (_throughput_rows, _ea_rows, _latency_rows, _memory_rows, _nab_rows, _acc_rows):
        table.extend(part(d))
    return table


def _throughput_rows(d: dict[str, Any]) -> list[Row]:
    t = d.get("throughput")
    if not t:
        return []
    ratio = t["e2e_rate"] / t["read_rate"]
    by_method = t.get("read_rate_by_method", {})
    return [
        Row(
            f"read limit ({READ_LABELS[t.get('read_method', 'unbounded')]}), events/s",
            f"{t['read_rate']:,.0f}",
        ),
        *(Row(f"  read, {READ_LABELS[m]}, events/s", f"{r:,.0f}") for m, r in by_method.items()),
        *_read_cpu_rows(t),
        Row(f"end to end (agent + frequency rule{_apart(t)}), events/s", f"{t['e2e_rate']:,.0f}"),
        Row("end to end / read limit", _percent(ratio), ">= 50%", ratio >= 0.5),
        *_round_ratios(t),
        *_paging_ratio(t, by_method),
        Row("end to end wall time, s", f"{t['e2e_seconds']:,.1f}"),
        *_cpu_rows(t),
        *_read_share(t),
        Row("nis2triage frequency rule alone, s", f"{t['rule_seconds']:.2f}"),
    ]


def _read_cpu_rows(t: dict[str, Any]) -> list[Row]:
    """Each reader's CPU, this process's and the node's (older bench.json files have none)."""
    return [
        Row(f"  CPU of the read, {READ_LABELS[m]}, client / node, s", _cpu_pair(cpu, node))
        for m, (cpu, node) in t.get("read_cpu_by_method", {}).items()
    ]


def _cpu_pair(cpu: float, node: float | None) -> str:
    return f"{cpu:.1f} / " + ("not read" if node is None else f"{node:.1f}")


def _median_known(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return metrics.median(known) if known else None


def _apart(t: dict[str, Any]) -> str:
    """Which detectors the pass ran in processes of their own (`--detector-process`)."""
    names = t.get("e2e_processes")
    if not names:
        return ""
    return f"; {', '.join(names)} {'each ' if len(names) > 1 else ''}in a process of its own"


def _cpu_rows(t: dict[str, Any]) -> list[Row]:
    """Where the pass's time went: this process's CPU, and the node's over the same time."""
    if "e2e_cpu" not in t:
        return []
    parts = [("agent process", t["e2e_cpu"])]
    if t.get("e2e_processes"):
        parts.append(("detector processes", t.get("e2e_processes_cpu")))
    parts.append(("node", t.get("e2e_node_cpu")))
    names = " / ".join(name for name, _ in parts)
    values = " / ".join("not read" if v is None else f"{v:.1f}" for _, v in parts)
    return [Row(f"  CPU during the pass, {names}, s", values)]


def _round_ratios(t: dict[str, Any]) -> list[Row]:
    """Each round's end to end against the same round's read limit (older bench.json files
    have no rounds)."""
    ratios = t.get("round_ratios")
    if not ratios:
        return []
    each = ", ".join(f"{r:.0%}" for r in ratios)
    return [Row("  the same, round by round (median)", f"{metrics.median(ratios):.0%} ({each})")]


def _read_share(t: dict[str, Any]) -> list[Row]:
    """How many of the day's events the agent read: the others no detector's filter takes."""
    if not t.get("e2e_events"):
        return []
    share = t["e2e_read"] / t["e2e_events"]
    return [Row("  events the agent read (the rest no detector takes)", f"{share:.0%}")]


def _paging_ratio(t: dict[str, Any], by_method: dict[str, float]) -> list[Row]:
    """The ratio to the agent's own paging (PIT + search_after, windowed), when it is not
    already the read limit: the time-ordered reader the agent could at best match."""
    paging = by_method.get("windowed")
    if not paging or t.get("read_method") == "windowed":
        return []
    ratio = t["e2e_rate"] / paging
    return [Row("end to end / the agent's paging alone", _percent(ratio), ">= 50%", ratio >= 0.5)]


def _percent(ratio: float) -> str:
    # One decimal: 49.75% shown as "50%" beside "NOT met" read as a contradiction.
    return f"{ratio:.1%}"


def _ea_rows(d: dict[str, Any]) -> list[Row]:
    ea, t = d.get("elastalert"), d.get("throughput")
    if not ea:
        return []
    if "error" in ea:
        return [Row("ElastAlert 2", "failed: " + ea["error"].splitlines()[-1][:80])]
    table = [Row(f"ElastAlert 2 {ea['version']} same rule, s", f"{ea['seconds']:.2f}")]
    if ea.get("unmodified_failure"):
        said = _unmodified(ea["unmodified_failure"])
        table.append(Row("ElastAlert 2 as shipped, on this node", said))
    if t:
        speedup = ea["seconds"] / t["rule_seconds"]
        table.append(
            Row("ElastAlert 2 / nis2triage, same rule", f"{speedup:.1f}x", ">= 5x", speedup >= 5)
        )
        whole = ea["seconds"] / t["e2e_seconds"]
        table.append(Row("ElastAlert 2's one rule / nis2triage's whole pass", f"{whole:.2f}x"))
    return table


def _unmodified(failure: str) -> str:
    """What ElastAlert's own create-index said on this node, short: its last line, cut at a
    word; the test build's 405 to `GET /` named, since that is what it nearly always is."""
    if "405" in failure and "Incorrect HTTP method" in failure:
        return "create-index fails: GET / answers 405 here (bench.json has its error)"
    last = failure.strip().splitlines()[-1] if failure.strip() else "failed"
    return last if len(last) <= 90 else last[:90].rsplit(" ", 1)[0] + " ..."


def _latency_rows(d: dict[str, Any]) -> list[Row]:
    lat = d.get("latency")
    if not lat or not lat["from_indexed"]:
        return [Row("latency", "no burst was detected")] if lat else []
    bound = latency.POLL_S + 2
    # The measure: from indexing the burst to its alert being searchable.
    p95 = metrics.percentile(lat["from_indexed"], 95)
    return [
        Row(
            "bursts detected",
            f"{lat['detected']}/{lat['bursts']}",
            "all",
            lat["detected"] == lat["bursts"],
        ),
        Row(
            "latency from indexing, median / p95, s",
            _pair(lat["from_indexed"]),
            f"p95 <= poll + 2 s = {bound} s",
            p95 <= bound,
        ),
        Row("latency from bucket closable, median / p95, s", _pair(lat["from_closable"])),
    ]


def _pair(values: list[float]) -> str:
    return f"{metrics.median(values):.2f} / {metrics.percentile(values, 95):.2f}"


def _memory_rows(d: dict[str, Any]) -> list[Row]:
    table = []
    for run in d.get("memory", []):
        label = f"{run['entities']:,} entities, cap {run['max_entities']:,}"
        table.append(
            Row(
                f"RSS {label}: state / peak, MB",
                f"{run['state_mb']:,.0f} / {run['peak_mb']:,.0f}",
                "< 1 GB",
                run["peak_mb"] < 1024,
            )
        )
        table.append(
            Row(
                f"snapshot {label}, MB",
                f"{run['snapshot_mb']:,.0f}",
                "< 100 MB (http.max_content_length)",
                run["snapshot_mb"] < 100,
            )
        )
    return table


def _nab_rows(d: dict[str, Any]) -> list[Row]:
    nab = d.get("nab")
    if not nab:
        return []
    table = [
        Row(
            f"NAB {nab['detector']} (shipped spec) std / low FP / low FN",
            _three(nab["scores"]),
            "standard > 51.7",
            nab["scores"]["standard"] > 51.7,
        )
    ]
    if nab.get("at_bar"):
        table.append(Row(f"  at the spec's own bar ({nab['bar']:.2f})", _three(nab["at_bar"])))
    if nab.get("compared"):
        compared = nab["compared"]
        table.append(Row(f"  registered {compared['detector']}", _three(compared["scores"])))
    for name, (std, fp, fn) in nab["published_profiles"].items():
        table.append(Row(f"  published {name}", f"{std:.1f} / {fp:.1f} / {fn:.1f}"))
    return table


def _three(s: dict[str, float]) -> str:
    return f"{s['standard']:.1f} / {s['reward_low_FP_rate']:.1f} / {s['reward_low_FN_rate']:.1f}"


def _acc_rows(d: dict[str, Any]) -> list[Row]:
    table = []
    for name, acc in d.get("accuracy", {}).items():
        table.append(
            Row(
                f"attacks, {name}: precision / recall",
                f"{acc['precision']:.2f} / {acc['recall']:.2f} "
                f"({acc['true_alerts']}/{acc['alerts']} alerts)",
            )
        )
        for kind in acc["by_kind"]:
            delays = kind["seconds_to_detect"]
            ttd = f", detect {metrics.median(delays) / 60:.1f} min" if delays else ""
            table.append(
                Row(f"  {name}: {kind['kind']}", f"{kind['detected']}/{kind['attacks']}{ttd}")
            )
    return table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nis2triage.bench.run", description=__doc__)
    parser.add_argument("--events", type=int, default=2_000_000, help="events in the day")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timed measure")
    parser.add_argument("--bursts", type=int, default=20, help="attack bursts for latency")
    parser.add_argument("--entities", type=int, default=1_000_000, help="entities for memory")
    parser.add_argument("--skip", action="append", default=[], choices=SECTIONS)
    parser.add_argument(
        "--read",
        action="append",
        choices=throughput.READ_METHODS,
        help="read-limit methods to time (default all; `unbounded` is quadratic in the events)",
    )
    parser.add_argument(
        "--detector-process",
        action="append",
        default=[],
        dest="detector_processes",
        metavar="NAME",
        help="run this shipped detector in a process of its own in the end-to-end passes "
        "(the agent's detector_processes); repeat for more",
    )
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    return parser


def measure_all(args: argparse.Namespace, es: Elasticsearch, node: NodeInfo) -> dict[str, Any]:
    spec = StreamSpec(day=DAY, events=args.events)
    index = f"logs-bench-{args.events}"
    details: dict[str, Any] = {"events": args.events, "machine": machine(), "index": index}
    details["indexing_rate"] = indexing.ensure(es, index, spec)
    if "throughput" not in args.skip:
        methods = args.read or throughput.READ_METHODS
        t = details["throughput"] = bench_throughput(
            es, node, index, args.repeat, methods, args.detector_processes
        )
        details["accuracy"] = accuracy(spec, t.pop("_alerts"))
        t.pop("_rule_alerts")
    if "elastalert" not in args.skip:
        rule = throughput.shipped_rule(index)
        assert isinstance(rule, FrequencyRule)
        details["elastalert"] = bench_elastalert(node, rule, args.out, args.repeat)
    if "latency" not in args.skip:
        details["latency"] = bench_latency(es, node, args.out, args.bursts)
    if "memory" not in args.skip:
        details["memory"] = bench_memory(args.entities)
    if "nab" not in args.skip:
        details["nab"] = bench_nab(jobs=2)
    return details


def measure_offline(args: argparse.Namespace) -> dict[str, Any]:
    """Memory and NAB only: neither reads Elasticsearch, so no node is started."""
    details: dict[str, Any] = {"events": args.events, "machine": machine()}
    if "memory" not in args.skip:
        details["memory"] = bench_memory(args.entities)
    if "nab" not in args.skip:
        details["nab"] = bench_nab(jobs=2)
    return details


def keep_skipped(previous: Path, details: dict[str, Any], skipped: list[str]) -> None:
    """Sections skipped now keep the figures of the last run at the same scale, if any."""
    if not previous.is_file():
        return
    before = json.loads(previous.read_text()).get("details", {})
    if before.get("events") != details["events"]:
        return
    carried = {"throughput": ("throughput", "accuracy")}
    for section in skipped:
        for key in carried.get(section, (section,)):
            if key in before:
                details[key] = before[key]


def machine() -> str:
    gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {gib:.0f} GB"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    if set(NODE_SECTIONS) <= set(args.skip):
        return measure_offline(args)
    node = localnode.start()
    es = esclient.connect(
        esclient.ESSettings(hosts=(node.url,), username=node.user, password=node.password)
    )
    return measure_all(args, es, node)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    started = time.monotonic()
    # The agent's collector settings (as `nis2triage run` has them) for every measure, the
    # read limit included: a reader with Python's defaults is slower by itself.
    with gc_tuning.streaming():
        details = measure(args)
    details["wall_seconds"] = time.monotonic() - started
    keep_skipped(args.out / "bench.json", details, args.skip)

    args.out.mkdir(parents=True, exist_ok=True)
    table = rows(details)
    print(format_table(table))
    write_json(args.out / "bench.json", table, details)
    draw(args.out / "bench.png", details)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
