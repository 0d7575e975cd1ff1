"""Sigma rule files, loaded safely and converted to Lucene query strings.

A rule that cannot be converted is kept as a `SkippedRule` naming the file, the
line where that is practical and the reason; loading never raises, so one bad
rule among thousands does not stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from sigma.exceptions import SigmaError
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule

from nis2triage.errors import ConfigError
from nis2triage.records import Severity
from nis2triage.rules.sigma_backend import BackendCache, FieldMapping
from nis2triage.yamlload import Located, load_file

log = logging.getLogger(__name__)

LEVEL_SEVERITY: dict[str, Severity] = {
    "informational": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "critical": "critical",
}

# Which part of a rule file each family of pySigma error is about, to point at its line.
_ERROR_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Condition", ("detection", "condition")),
    ("Logsource", ("logsource",)),
    ("Title", ("title",)),
    ("Identifier", ("id",)),
    ("Level", ("level",)),
    ("Status", ("status",)),
    ("Modified", ("modified",)),
    ("Date", ("date",)),
    ("Tag", ("tags",)),
    ("Related", ("related",)),
)


@dataclass(frozen=True)
class LogSource:
    product: str | None = None
    category: str | None = None
    service: str | None = None

    def __str__(self) -> str:
        return "/".join(part or "-" for part in (self.product, self.category, self.service))


@dataclass(frozen=True)
class SigmaQuery:
    """One converted rule: what an alert needs to say where it came from."""

    rule_id: str
    title: str
    level: str
    tags: tuple[str, ...]
    logsource: LogSource
    query: str
    fields: tuple[str, ...]
    path: str
    version: str
    # Unbound keywords ('keywords:' lists) search every field of the event.
    keywords: bool = False

    @property
    def name(self) -> str:
        return self.title or self.rule_id

    @property
    def severity(self) -> Severity:
        return LEVEL_SEVERITY.get(self.level, "low")


@dataclass(frozen=True)
class SkippedRule:
    """A rule file that could not be converted, and why."""

    path: str
    line: int | None
    reason: str
    logsource: LogSource | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class RuleSet:
    queries: tuple[SigmaQuery, ...]
    skipped: tuple[SkippedRule, ...]


def rule_files(root: str | Path) -> list[Path]:
    """Every Sigma rule file under `root` (or `root` itself), in a stable order."""
    path = Path(root)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())


class SigmaConverter:
    """Loads rule files and converts them with the backend for each one's log source."""

    def __init__(self, mapping: FieldMapping | None = None) -> None:
        self._backends = BackendCache(mapping)

    def load(self, paths: Iterable[str | Path]) -> RuleSet:
        results = [self.load_file(p) for p in paths]
        queries = distinct_names(r for r in results if isinstance(r, SigmaQuery))
        skipped = tuple(r for r in results if isinstance(r, SkippedRule))
        log.info("sigma: %d rules converted, %d skipped", len(queries), len(skipped))
        return RuleSet(queries, skipped)

    def load_file(self, path: str | Path) -> SigmaQuery | SkippedRule:
        try:
            located = load_file(path)
        except ConfigError as exc:
            return SkippedRule(str(path), exc.line, str(exc).split(": ", 1)[-1])
        except yaml.YAMLError as exc:
            # yamlload lets the reader's own errors (control characters) through.
            return SkippedRule(str(path), None, f"not valid YAML: {exc}")
        refusal = _refusal(located)
        if refusal:
            return refusal
        try:
            rule = SigmaRule.from_dict(located.data)
        except SigmaError as exc:
            return _skipped(located, exc, _declared_logsource(located.data))
        except Exception as exc:  # pySigma assumes text where YAML gave a number or a list
            log.warning("sigma: %s: pySigma could not read it: %r", located.path, exc)
            reason = (
                f"pySigma could not read the rule ({exc!r}); check that every key and id is text"
            )
            return SkippedRule(located.path, None, reason, _declared_logsource(located.data))
        return self._convert(located, rule)

    def _convert(self, located: Located, rule: SigmaRule) -> SigmaQuery | SkippedRule:
        source = LogSource(rule.logsource.product, rule.logsource.category, rule.logsource.service)
        try:
            converted = self._backends.for_logsource(rule.logsource).convert_rule(rule)
        except SigmaError as exc:
            return _skipped(located, exc, source)
        except Exception as exc:  # a pySigma bug on one rule must not stop the others
            log.warning("sigma: %s: pySigma failed: %r", located.path, exc)
            return SkippedRule(located.path, None, f"pySigma failed: {exc!r}", source)
        fields = referenced_fields(rule)
        return SigmaQuery(
            rule_id=str(rule.id or ""),
            title=rule.title,
            level=rule.level.name.lower() if rule.level else "",
            tags=tuple(str(t) for t in rule.tags if t.namespace == "attack"),
            logsource=source,
            query=_one_query(converted),
            fields=tuple(sorted(f for f in fields if f)),
            path=located.path,
            version=str(rule.modified or rule.date or ""),
            keywords=None in fields,
        )


def distinct_names(queries: Iterable[SigmaQuery]) -> tuple[SigmaQuery, ...]:
    """The queries, each under a name of its own.

    A rule's name keys its window, its alerts and their ids: two rules sharing a title (a
    locally tuned copy of a SigmaHQ rule kept beside the original) would share one window,
    and the second would never run. The first keeps its title, so its saved progress
    still applies; the others get their id, or their file if that name is taken too.
    """
    kept: list[SigmaQuery] = []
    first: dict[str, SigmaQuery] = {}
    for query in queries:
        if query.name in first:
            query = _renamed(query, first[query.name], first)
        first[query.name] = query
        kept.append(query)
    return tuple(kept)


def _renamed(query: SigmaQuery, holder: SigmaQuery, taken: dict[str, SigmaQuery]) -> SigmaQuery:
    name = f"{query.name} [{query.rule_id}]"
    if not query.rule_id or name in taken:
        name = f"{query.name} [{query.path}]"
    log.warning(
        "sigma: %s has the title of %s (%r); it runs as %r. Give it a title of its own",
        query.path,
        holder.path,
        query.name,
        name,
    )
    return replace(query, title=name)


def referenced_fields(rule: SigmaRule) -> set[str | None]:
    """The field names a rule's detection uses (after processing, once converted).

    None stands for the unbound keywords of a `keywords:` list.
    """
    return {f for detection in rule.detection.detections.values() for f in _fields(detection)}


def _fields(node: SigmaDetection | SigmaDetectionItem) -> Iterator[str | None]:
    if isinstance(node, SigmaDetectionItem):
        yield node.field
        return
    for item in node.detection_items:
        yield from _fields(item)


def _one_query(converted: list[Any]) -> str:
    queries = [str(q) for q in converted]
    return queries[0] if len(queries) == 1 else " OR ".join(f"({q})" for q in queries)


def _declared_logsource(data: dict[str, Any]) -> LogSource | None:
    declared = data.get("logsource")
    if not isinstance(declared, dict):
        return None
    parts = (declared.get(key) for key in ("product", "category", "service"))
    return LogSource(*(str(p) if p is not None else None for p in parts))


def _refusal(located: Located) -> SkippedRule | None:
    data = located.data
    if not isinstance(data, dict):
        return SkippedRule(located.path, 1, "not a Sigma rule: the file is not a mapping")
    if "correlation" in data:
        # Correlations need ES|QL or EQL; this node's distribution has neither module.
        line = located.line_of(("correlation",))
        return SkippedRule(located.path, line, "correlation rules are not supported")
    if "detection" not in data:
        return SkippedRule(located.path, 1, "not a Sigma rule: no 'detection' section")
    return _not_text(located)


def _not_text(located: Located) -> SkippedRule | None:
    """A title, id or detection name that YAML read as a number, a date or a list."""
    data = located.data
    for key in ("title", "id"):
        if key in data and not isinstance(data[key], str):
            return SkippedRule(
                located.path,
                located.line_of((key,)),
                f"{key} must be text, not {data[key]!r}; quote it",
            )
    for loc, key in _keys(data["detection"], ("detection",)):
        if not isinstance(key, str):
            # Lines are kept under the keys as written, which is text.
            return SkippedRule(
                located.path,
                located.line_of((*loc[:-1], str(key))),
                f"{key!r} in the detection must be text (a name or field); quote it",
            )
    return None


def _keys(node: Any, loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every mapping key under `node` with where it is: selection names and field names."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*loc, key), key
            yield from _keys(value, (*loc, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _keys(item, (*loc, i))


def _skipped(located: Located, exc: Exception, source: LogSource | None) -> SkippedRule:
    reason = str(exc).split(" in rule ")[0] or type(exc).__name__
    return SkippedRule(located.path, _error_line(located, exc), reason, source)


def _error_line(located: Located, exc: Exception) -> int | None:
    kind = type(exc).__name__
    if "field reference" in str(exc):
        return _modifier_line(located, "fieldref")
    if kind == "UnsupportedRegex":
        return _modifier_line(located, "re")
    if str(exc).startswith("numeric comparison"):
        return _modifier_line(located, "gt", "gte", "lt", "lte")
    for word, key in _ERROR_KEYS:
        if word in kind:
            return located.line_of(key)
    return located.line_of(("detection",))


def _modifier_line(located: Located, *modifiers: str) -> int | None:
    """The line of the first detection key using one of `modifiers`, e.g. `CommandLine|re`."""
    for loc, line in sorted(located.lines.items(), key=lambda item: item[1]):
        if loc[:1] != ("detection",):
            continue
        used = str(loc[-1]).lower().split("|")[1:]
        if any(m in used for m in modifiers):
            return line
    return located.line_of(("detection",))
