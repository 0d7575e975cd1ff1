"""pySigma's Lucene backend and the processing pipelines chosen for each log source.

A Sigma rule names fields in Sigma's taxonomy (`Image`, `CommandLine`). The
pipelines pySigma ships rename them to what Beats and Elastic Agent index (ECS),
one pipeline per family of log source; a site adds its own renames, or a whole
extra pipeline, on top. Log sources without a shipped ECS pipeline (Linux,
cloud audit logs, proxies...) keep Sigma's names unless the site maps them.

Two kinds of rule convert to a query that matches something other than what the
author wrote, so they are refused (the rule is skipped, with its file and reason):
a `1 of foo*` / `all of foo*` naming no detection, which pySigma drops silently,
leaving the log source's condition alone; and a numeric comparison (`|gt`, `|lt`...)
on a field not mapped as a number, which Elasticsearch would compare as text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigma.backends.elasticsearch.elasticsearch_lucene import LuceneBackend
from sigma.conditions import ConditionFieldEqualsValueExpression, ConditionItem, ConditionSelector
from sigma.conversion.state import ConversionState
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaConditionError, SigmaError, SigmaFeatureNotSupportedByBackendError
from sigma.pipelines.elasticsearch.kubernetes import ecs_kubernetes
from sigma.pipelines.elasticsearch.macos import ecs_macos_esf
from sigma.pipelines.elasticsearch.windows import ecs_windows
from sigma.pipelines.elasticsearch.zeek import ecs_zeek_beats
from sigma.pipelines.sysmon.sysmon import sysmon_pipeline
from sigma.pipelines.windows.windows import windows_logsource_pipeline
from sigma.processing.conditions import LogsourceCondition, MatchStringCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation
from sigma.rule import SigmaLogSource, SigmaRule
from sigma.types import SigmaCompareExpression, SigmaRegularExpression

from nis2triage import yamlload
from nis2triage.rules import lucene_regex, winlog_mapping

# Runs after pySigma's ECS pipelines (priority 10-20), so renames see their output names.
RENAME_PRIORITY = 90
FAMILIES = ("windows", "zeek", "kubernetes", "macos")
# Sigma's Windows fields that pySigma's ECS pipeline maps onto `ip`-typed fields.
ADDRESS_FIELDS = (
    "IpAddress",
    "SourceIp",
    "SourceAddress",
    "ClientAddress",
    "DestinationIp",
    "DestAddress",
)
NUMBER_TYPES = frozenset(
    {"long", "integer", "short", "byte", "unsigned_long", "double", "float", "half_float"}
)
# Fields an index of Windows events maps as numbers (Winlogbeat's template, as the project's
# own mapping follows it); any other field, `event.code` included, is a keyword.
NUMERIC_FIELDS = frozenset(
    name for name, spec in winlog_mapping.TYPED_FIELDS.items() if spec.get("type") in NUMBER_TYPES
)


class CaselessLuceneBackend(LuceneBackend):
    """The Lucene backend, for fields whose values and patterns are lowercased alike.

    Only regular expressions change: see `lucene_regex` for why. Strings, wildcards
    and prefixes are emitted as pySigma writes them; the index normalizer makes them
    case-insensitive, as Sigma requires. Known gap: the normalizer also makes the
    case-sensitive forms (`|cased`, and `|re` without `i`) match regardless of case,
    a superset; the SigmaHQ corpus has no `|cased` rule.
    """

    def convert_value_re(self, r: SigmaRegularExpression, state: ConversionState) -> str:
        return lucene_regex.translate(str(r.regexp))

    def convert_rule(
        self,
        rule: SigmaRule,
        output_format: str | None = None,
        callback: Callable[[SigmaRule | SigmaCorrelationRule, str | None, int, Any, Any], Any]
        | None = None,
    ) -> list[Any]:
        # Checked before the pipeline runs: it may add `_filt_` detections of its own.
        empty = [s for s in _selectors(rule) if not s.resolve_referenced_detections(rule.detection)]
        if empty:
            raise SigmaConditionError(_no_detection(empty[0], rule))
        converted: list[Any] = super().convert_rule(rule, output_format, callback)
        return converted

    def convert_condition_field_compare_op_val(
        self, cond: ConditionFieldEqualsValueExpression, state: ConversionState
    ) -> Any:
        # `event.code:>5` on a keyword compares text: "10" < "5", and `|lt: 7` matches 10.
        if cond.field not in NUMERIC_FIELDS:
            raise SigmaFeatureNotSupportedByBackendError(_text_comparison(cond))
        return super().convert_condition_field_compare_op_val(cond, state)


def _selectors(rule: SigmaRule) -> Iterator[ConditionSelector]:
    """Every `1 of x*` / `all of x*` in the rule's conditions, as written."""
    for condition in rule.detection.parsed_condition:
        yield from _selectors_in(condition.parse(postprocess=False))


def _selectors_in(node: object) -> Iterator[ConditionSelector]:
    if isinstance(node, ConditionSelector):
        yield node
    elif isinstance(node, ConditionItem):
        for arg in node.args:
            yield from _selectors_in(arg)


def _no_detection(selector: ConditionSelector, rule: SigmaRule) -> str:
    quantifier = selector.args[0]
    named = ", ".join(sorted(rule.detection.detections))
    return (
        f"condition '{quantifier} of {selector.pattern}' names no detection (the rule has: "
        f"{named}): pySigma would drop it silently and the query would match more than the "
        "rule says, every event of the log source at worst; fix the name in the condition "
        "or add the detection"
    )


def _text_comparison(cond: ConditionFieldEqualsValueExpression) -> str:
    value = cond.value
    said = (
        f"{value.op.name.lower()} {value.number}"
        if isinstance(value, SigmaCompareExpression)
        else "a number"
    )
    numeric = ", ".join(sorted(NUMERIC_FIELDS))
    return (
        f"numeric comparison ({said}) on {cond.field}, which is not mapped as a number: "
        "Elasticsearch would compare it as text ('10' sorts before '5'); list the exact "
        f"values instead (fields compared as numbers: {numeric})"
    )


@dataclass(frozen=True)
class FieldMapping:
    """How this site names fields: renames applied last, and an optional extra pipeline.

    `renames` maps a field as the converted query would name it (after the ECS
    pipeline, e.g. `process.command_line`, or Sigma's own name for a log source
    without one) to the field in the site's indices.
    """

    renames: Mapping[str, str] = field(default_factory=dict)
    extra: ProcessingPipeline | None = None


def family(logsource: SigmaLogSource) -> str:
    """Which shipped pipeline serves this log source: its product, or 'generic'."""
    product = (logsource.product or "").lower()
    return product if product in FAMILIES else "generic"


def shipped_pipeline(name: str) -> ProcessingPipeline:
    """pySigma's own pipelines for one family; 'generic' gets none."""
    if name == "windows":
        # Sysmon for the generic categories (process_creation...), the Windows pipeline for
        # the PowerShell ones; ECS last. Winlogbeat's 8.x field names (ecs_windows, not _old).
        parts = [sysmon_pipeline(), _powershell_categories(), _non_addresses(), ecs_windows()]
        return _ordered(parts)
    shipped = {"zeek": ecs_zeek_beats, "kubernetes": ecs_kubernetes, "macos": ecs_macos_esf}
    return shipped[name]() if name in shipped else ProcessingPipeline()


def _non_addresses() -> ProcessingPipeline:
    """Comparisons with '-' or a wildcard stay on the event data copy of an address field.

    pySigma's ECS pipeline sends `IpAddress`, `DestinationIp`... to `source.ip` and
    `destination.ip`, which are `ip` fields: Elasticsearch refuses `source.ip:-` and
    `destination.ip:127.*` outright. The original string stays in `winlog.event_data`.
    """
    item = ProcessingItem(
        identifier="nis2triage_non_address_values",
        transformation=FieldMappingTransformation(
            {name: f"winlog.event_data.{name}" for name in ADDRESS_FIELDS}
        ),
        rule_conditions=[LogsourceCondition(product="windows")],
        detection_item_conditions=[MatchStringCondition(cond="any", pattern=r".*[*?]|-?$")],
    )
    return ProcessingPipeline(name="non-address values", priority=15, items=[item])


def _powershell_categories() -> ProcessingPipeline:
    # Only the category items: its per-service channel items duplicate those of ecs_windows.
    # Filtered in place: its items already belong to this pipeline object.
    pipeline = windows_logsource_pipeline()
    pipeline.items = [item for item in pipeline.items if _has_category_condition(item)]
    return pipeline


def _has_category_condition(item: ProcessingItem) -> bool:
    return any(
        isinstance(cond, LogsourceCondition) and cond.category is not None
        for cond in item.rule_conditions
    )


def rename_pipeline(renames: Mapping[str, str]) -> ProcessingPipeline:
    item = ProcessingItem(
        identifier="nis2triage_site_renames",
        transformation=FieldMappingTransformation({k: v for k, v in renames.items()}),
    )
    return ProcessingPipeline(name="site field renames", priority=RENAME_PRIORITY, items=[item])


def load_pipeline_file(path: str | Path) -> ProcessingPipeline:
    """A user's pySigma pipeline YAML, read safely; a wrong file names itself and the line."""
    located = yamlload.load_file(path)
    if not isinstance(located.data, dict):
        raise located.error((), "a pySigma pipeline must be a mapping with 'transformations'")
    try:
        pipeline: ProcessingPipeline = ProcessingPipeline.from_dict(located.data)
    except (SigmaError, KeyError, TypeError, ValueError) as exc:
        raise located.error(("transformations",), f"not a valid pySigma pipeline: {exc}") from exc
    return pipeline


def load_renames_file(path: str | Path) -> dict[str, str]:
    """A site's field renames: a YAML mapping from query field name to index field name."""
    located = yamlload.load_file(path)
    if not isinstance(located.data, dict):
        raise located.error((), "field renames must be a mapping such as 'process.name: proc'")
    for key, value in located.data.items():
        if not isinstance(key, str) or not isinstance(value, str) or not value:
            raise located.error((key,), "each rename maps one field name to another (text)")
    return dict(located.data)


def pipeline_for(name: str, mapping: FieldMapping) -> ProcessingPipeline:
    """The shipped pipeline for a family, then the site's extra pipeline and renames."""
    parts = [shipped_pipeline(name)]
    if mapping.extra is not None:
        parts.append(mapping.extra)
    if mapping.renames:
        parts.append(rename_pipeline(mapping.renames))
    return _ordered(parts)


def _ordered(pipelines: list[ProcessingPipeline]) -> ProcessingPipeline:
    # `+` concatenates in the given order and ignores priorities (pySigma's own note).
    ordered = sorted(pipelines, key=lambda p: p.priority)
    combined: ProcessingPipeline = sum(ordered[1:], ordered[0])
    return combined


class BackendCache:
    """One backend per family of log source, built on first use."""

    def __init__(self, mapping: FieldMapping | None = None) -> None:
        self.mapping = mapping or FieldMapping()
        self._backends: dict[str, CaselessLuceneBackend] = {}

    def for_logsource(self, logsource: SigmaLogSource) -> CaselessLuceneBackend:
        name = family(logsource)
        if name not in self._backends:
            self._backends[name] = CaselessLuceneBackend(pipeline_for(name, self.mapping))
        return self._backends[name]
