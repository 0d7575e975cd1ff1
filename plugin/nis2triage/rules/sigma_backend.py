"""pySigma's Lucene backend and the processing pipelines chosen for each log source.

A Sigma rule names fields in Sigma's taxonomy (`Image`, `CommandLine`). The
pipelines pySigma ships rename them to what Beats and Elastic Agent index (ECS),
one pipeline per family of log source; a site adds its own renames, or a whole
extra pipeline, on top. Log sources without a shipped ECS pipeline (Linux,
cloud audit logs, proxies...) keep Sigma's names unless the site maps them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sigma.backends.elasticsearch.elasticsearch_lucene import LuceneBackend
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaError
from sigma.pipelines.elasticsearch.kubernetes import ecs_kubernetes
from sigma.pipelines.elasticsearch.macos import ecs_macos_esf
from sigma.pipelines.elasticsearch.windows import ecs_windows
from sigma.pipelines.elasticsearch.zeek import ecs_zeek_beats
from sigma.pipelines.sysmon.sysmon import sysmon_pipeline
from sigma.pipelines.windows.windows import windows_logsource_pipeline
from sigma.processing.conditions import LogsourceCondition, MatchStringCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation
from sigma.rule import SigmaLogSource
from sigma.types import SigmaRegularExpression

from nis2triage import yamlload
from nis2triage.rules import lucene_regex

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
