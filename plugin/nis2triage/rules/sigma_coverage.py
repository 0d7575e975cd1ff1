"""How much of a Sigma rule corpus converts, and runs on the real node, per log source.

    python -m nis2triage.rules.sigma_coverage RULES_DIR [--sample N]

Every converted query is executed (size 0) on a throw-away index that has the
Windows/ECS mapping plus a keyword field for every other field the queries
name: Elasticsearch only parses a regular expression or checks a field's type
when the field is mapped, so an index without them would hide errors. The
node comes from NIS2TRIAGE_ES_URL (and _USER, _PASSWORD_FILE), else the local one.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from nis2triage import esclient
from nis2triage.rules import winlog_mapping
from nis2triage.rules.sigma import SigmaConverter, SigmaQuery, SkippedRule, rule_files
from nis2triage.rules.sigma_run import error_reason, query_string

BATCH = 50
UNREADABLE = "(unreadable)"


@dataclass
class SourceCoverage:
    rules: int = 0
    converted: int = 0
    executed: int = 0


@dataclass
class Coverage:
    """Counts per log source (product/category/service), and why rules fell out."""

    sources: dict[str, SourceCoverage] = field(default_factory=dict)
    skipped: list[SkippedRule] = field(default_factory=list)
    refused: list[tuple[SigmaQuery, str]] = field(default_factory=list)

    def total(self) -> SourceCoverage:
        out = SourceCoverage()
        for counts in self.sources.values():
            out.rules += counts.rules
            out.converted += counts.converted
            out.executed += counts.executed
        return out


def sample(files: Sequence[Path], size: int) -> list[Path]:
    """A deterministic spread of `size` files: the lowest hashes of their names."""
    ranked = sorted(files, key=lambda p: hashlib.sha256(p.name.encode()).hexdigest())
    return sorted(ranked[:size])


def measure(es: Elasticsearch, files: Sequence[Path], converter: SigmaConverter) -> Coverage:
    coverage = Coverage()
    queries = _convert(files, converter, coverage)
    index = f"nis2triage-sigma-coverage-{uuid.uuid4().hex[:8]}"
    try:
        _create_index(es, index, queries)
        _execute(es, index, queries, coverage)
    finally:
        es.options(ignore_status=404).indices.delete(index=index)
    return coverage


def _convert(
    files: Sequence[Path], converter: SigmaConverter, coverage: Coverage
) -> list[SigmaQuery]:
    queries: list[SigmaQuery] = []
    for n, path in enumerate(files, 1):
        result = converter.load_file(path)
        source = str(result.logsource) if result.logsource else UNREADABLE
        counts = coverage.sources.setdefault(source, SourceCoverage())
        counts.rules += 1
        if isinstance(result, SigmaQuery):
            counts.converted += 1
            queries.append(result)
        else:
            coverage.skipped.append(result)
        _progress("converted", n, len(files))
    return queries


def _create_index(es: Elasticsearch, index: str, queries: Iterable[SigmaQuery]) -> None:
    extra = {name: winlog_mapping.KEYWORD for name in keyword_fields(q.fields for q in queries)}
    es.indices.create(index=index, **winlog_mapping.index_body(extra))
    now = datetime.now(UTC).isoformat()
    es.index(index=index, document={"@timestamp": now, "host": {"name": "coverage"}}, refresh=True)


def keyword_fields(per_query: Iterable[Iterable[str]]) -> list[str]:
    """Fields to map as keywords: named by a query, not typed already, not an object path."""
    typed = set(winlog_mapping.TYPED_FIELDS)
    subfields = {
        f"{name}.{sub}"
        for name, spec in winlog_mapping.TYPED_FIELDS.items()
        for sub in spec.get("fields", {})
    }
    wanted = {f for fields in per_query for f in fields if "*" not in f} - typed - subfields
    leaves = typed | wanted
    # A name that is also the parent of another ('process' beside 'process.pid') is an object.
    parents = {name.rsplit(".", i)[0] for name in leaves for i in range(1, name.count(".") + 1)}
    return sorted(f for f in wanted if f not in parents and not _under_leaf(f, typed))


def _under_leaf(name: str, typed: set[str]) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:i]) in typed for i in range(1, len(parts)))


def _execute(
    es: Elasticsearch, index: str, queries: Sequence[SigmaQuery], coverage: Coverage
) -> None:
    for first in range(0, len(queries), BATCH):
        batch = queries[first : first + BATCH]
        searches: list[dict[str, Any]] = []
        for query in batch:
            searches += [{"index": index}, _count_body(query)]
        responses = es.msearch(searches=searches).body["responses"]
        for query, response in zip(batch, responses, strict=True):
            _record(coverage, query, response)
        _progress("executed", first + len(batch), len(queries))


def _count_body(query: SigmaQuery) -> dict[str, Any]:
    return {"size": 0, "query": query_string(query)}


def _record(coverage: Coverage, query: SigmaQuery, response: dict[str, Any]) -> None:
    failures = response.get("_shards", {}).get("failures")
    if "error" in response:
        coverage.refused.append((query, error_reason(response)))
    elif failures:
        coverage.refused.append((query, error_reason({"error": failures[0].get("reason")})))
    else:
        coverage.sources[str(query.logsource)].executed += 1


def _progress(what: str, done: int, total: int) -> None:
    if done == total or done % 250 == 0:
        print(f"{what} {done}/{total}", file=sys.stderr, flush=True)


def report(coverage: Coverage, top: int | None = None, reasons: int = 10) -> str:
    """The per-log-source table, totals, and the commonest reasons rules fell out."""
    rows = sorted(coverage.sources.items(), key=lambda item: (-item[1].rules, item[0]))
    lines = [f"{'log source (product/category/service)':<52} {'rules':>6} {'conv':>6} {'exec':>6}"]
    lines += [_row(name, counts) for name, counts in rows[:top]]
    if top is not None and len(rows) > top:
        lines.append(f"... {len(rows) - top} more log sources")
    lines.append(_row("TOTAL", coverage.total()))
    total = coverage.total()
    lines.append(
        f"converted {_pct(total.converted, total.rules)} of rules; "
        f"executed {_pct(total.executed, total.converted)} of converted"
    )
    lines += _reasons("not converted", (s.reason for s in coverage.skipped), reasons)
    lines += _reasons("refused by Elasticsearch", (r for _, r in coverage.refused), reasons)
    return "\n".join(lines)


def _row(name: str, counts: SourceCoverage) -> str:
    return f"{name:<52} {counts.rules:>6} {counts.converted:>6} {counts.executed:>6}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _reasons(title: str, reasons: Iterable[str], limit: int) -> list[str]:
    counted = Counter(reason[:160] for reason in reasons)
    if not counted:
        return []
    return [f"{title}:"] + [f"  {n:>4}  {reason}" for reason, n in counted.most_common(limit)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nis2triage.rules.sigma_coverage")
    parser.add_argument("rules", type=Path, help="a Sigma rule file or a folder of them")
    parser.add_argument("--sample", type=int, help="only this many rules, chosen by name hash")
    parser.add_argument("--top", type=int, help="show only the N largest log sources")
    args = parser.parse_args(argv)

    files = rule_files(args.rules)
    if args.sample:
        files = sample(files, args.sample)
    es = esclient.connect(esclient.dev_settings())
    try:
        coverage = measure(es, files, SigmaConverter())
    finally:
        es.close()
    print(report(coverage, top=args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
