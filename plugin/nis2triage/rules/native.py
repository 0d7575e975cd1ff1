"""Native rule definitions: one pydantic model per rule type, chosen by `type`.

The types and their options follow ElastAlert 2, which SOC engineers already
know; every type shares the fields of `RuleBase`. A loaded rule is frozen:
what changes from run to run lives in `RuleState`.
"""

from __future__ import annotations

import unicodedata
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_validator,
)

from nis2triage.indexnames import check_expression
from nis2triage.records import Severity
from nis2triage.rules.options import (
    AttackTag,
    Duration,
    FieldName,
    Filter,
    ListFile,
    Period,
    Regex,
    TriageHint,
)

# When a rule without a timeframe says nothing, ElastAlert's default: one minute.
DEFAULT_REALERT = timedelta(minutes=1)
# How the rule runner keys a Sigma rule's window and state (`rulerunner`).
SIGMA_KEY_PREFIX = "sigma:"


def _visible(name: str) -> str:
    """A name two rules cannot share by looks alone: no invisible or control characters
    (a zero-width space, a right-to-left override), no space other than the plain one,
    none around it. "Port scan" and "Port\u200bscan" would show alike in the alerts
    and the duplicate check would let both through."""
    hidden = [c for c in name if _hidden(c)]
    if hidden:
        shown = ", ".join(f"U+{ord(c):04X}" for c in dict.fromkeys(hidden))
        raise ValueError(f"the name holds characters that do not show ({shown}): remove them")
    if name != name.strip():
        raise ValueError(f"the name has spaces around it: write {name.strip()!r}")
    if "  " in name:
        # Kibana, as any web page, shows two spaces as one.
        raise ValueError(f"the name has two spaces in a row: write {' '.join(name.split())!r}")
    return name


# Characters that show as nothing, or as a blank, though Unicode counts them as letters,
# marks or symbols: variation selectors, the combining grapheme joiner, the Hangul and
# Mongolian fillers, the Khmer inherent vowels, the blank Braille pattern.
_BLANK = frozenset(
    [
        *(0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x2800, 0x3164, 0xFFA0),
        *range(0x180B, 0x1810),
        *range(0xFE00, 0xFE10),
        *range(0xE0100, 0xE01F0),
    ]
)


def _hidden(c: str) -> bool:
    # Cc/Cf: control and format characters; Zl/Zp: line breaks; Co: private use (shown by
    # no standard font); Cn: not assigned; Cs: a lone surrogate (a YAML "\ud800" escape).
    if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cn", "Cs"):
        return True
    return ord(c) in _BLANK or (c.isspace() and c != " ")


class RuleBase(BaseModel):
    """What every native rule has, whatever its type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    version: str = "1"
    index: Annotated[str, Field(min_length=1), AfterValidator(check_expression)]
    timestamp_field: FieldName = "@timestamp"
    filter: Filter | None = None
    realert: Period | None = None
    severity: Severity = "medium"
    tags: tuple[AttackTag, ...] = ()
    triage: TriageHint = TriageHint()

    @field_validator("name")
    @classmethod
    def _not_a_sigma_key(cls, name: str) -> str:
        # The runner keys each Sigma rule's window as `sigma:<title>`: a native rule of that
        # name would share it, run first each cycle and leave the Sigma rule no window.
        if name.startswith(SIGMA_KEY_PREFIX):
            raise ValueError(
                f"a native rule's name may not begin with {SIGMA_KEY_PREFIX!r}, which the "
                "agent keeps for Sigma rules: rename it"
            )
        return _visible(name)

    @property
    def timeframe_or_none(self) -> timedelta | None:
        return getattr(self, "timeframe", None)

    @property
    def suppression(self) -> timedelta:
        """How long an entity stays quiet after an alert: `realert`, else the timeframe."""
        if self.realert is not None:
            return self.realert
        return self.timeframe_or_none or DEFAULT_REALERT

    @property
    def entity_field(self) -> str:
        return getattr(self, "query_key", None) or "rule"


class KeyedRule(RuleBase):
    """A rule that can count per value of `query_key` (per source address, per user, ...)."""

    query_key: FieldName | None = None


class AnyRule(KeyedRule):
    """Every matching event alerts."""

    type: Literal["any"]


class FrequencyRule(KeyedRule):
    """At least `num_events` matching events within `timeframe`."""

    type: Literal["frequency"]
    num_events: PositiveInt
    timeframe: Duration


class FlatlineRule(KeyedRule):
    """Fewer than `threshold` events within `timeframe`: a source or service went silent."""

    type: Literal["flatline"]
    threshold: PositiveInt
    timeframe: Duration
    # With a query_key, the values seen this long before a window are expected in it.
    key_lookback: Duration = timedelta(days=1)


class SpikeRule(KeyedRule):
    """The count in the current timeframe against the count in the one before it."""

    type: Literal["spike"]
    timeframe: Duration
    spike_height: float = Field(ge=1.0)
    spike_type: Literal["up", "down", "both"]
    threshold_cur: NonNegativeInt = 0
    threshold_ref: NonNegativeInt = 0
    alert_on_new_data: bool = False


class NewTermRule(RuleBase):
    """A value of one of `fields` not seen within `terms_window` before it appeared."""

    type: Literal["new_term"]
    fields: tuple[FieldName, ...] = Field(min_length=1)
    terms_window: Duration = timedelta(days=30)

    @property
    def entity_field(self) -> str:
        return self.fields[0]


class CardinalityRule(KeyedRule):
    """Distinct values of `cardinality_field` above `max_cardinality` or below `min_cardinality`."""

    type: Literal["cardinality"]
    cardinality_field: FieldName
    timeframe: Duration
    max_cardinality: NonNegativeInt | None = None
    min_cardinality: NonNegativeInt | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> CardinalityRule:
        if self.max_cardinality is None and self.min_cardinality is None:
            raise ValueError("give max_cardinality, min_cardinality or both")
        return self


class ChangeRule(RuleBase):
    """The value of `compare_key` changed for a `query_key`, against its previous value."""

    type: Literal["change"]
    query_key: FieldName
    compare_key: FieldName
    ignore_null: bool = True
    # The previous value is forgotten once older than this (no limit when absent).
    timeframe: Duration | None = None


class _ListRule(KeyedRule):
    compare_key: FieldName

    def exact_values(self) -> frozenset[str]:
        raise NotImplementedError

    def patterns(self) -> tuple[Regex, ...]:
        raise NotImplementedError


class BlacklistRule(_ListRule):
    """`compare_key` is one of the listed values or matches one of the regexes."""

    type: Literal["blacklist"]
    blacklist: tuple[str, ...] = ()
    blacklist_files: tuple[ListFile, ...] = ()
    blacklist_regex: tuple[Regex, ...] = ()

    @model_validator(mode="after")
    def _not_empty(self) -> BlacklistRule:
        if not (self.blacklist or self.blacklist_files or self.blacklist_regex):
            raise ValueError("give blacklist, blacklist_files or blacklist_regex")
        return self

    def exact_values(self) -> frozenset[str]:
        return frozenset(self.blacklist).union(*(f.values for f in self.blacklist_files))

    def patterns(self) -> tuple[Regex, ...]:
        return self.blacklist_regex


class WhitelistRule(_ListRule):
    """`compare_key` is none of the listed values and matches none of the regexes."""

    type: Literal["whitelist"]
    whitelist: tuple[str, ...] = ()
    whitelist_files: tuple[ListFile, ...] = ()
    whitelist_regex: tuple[Regex, ...] = ()
    # Events without compare_key are not judged (ElastAlert's `ignore_null`).
    ignore_null: bool = True

    @model_validator(mode="after")
    def _not_empty(self) -> WhitelistRule:
        if not (self.whitelist or self.whitelist_files or self.whitelist_regex):
            raise ValueError("give whitelist, whitelist_files or whitelist_regex")
        return self

    def exact_values(self) -> frozenset[str]:
        return frozenset(self.whitelist).union(*(f.values for f in self.whitelist_files))

    def patterns(self) -> tuple[Regex, ...]:
        return self.whitelist_regex


MetricType = Literal["avg", "min", "max", "sum", "cardinality", "value_count", "percentiles"]


class MetricAggregationRule(KeyedRule):
    """A metric of `metric_agg_key` per timeframe (and query_key) outside the thresholds."""

    type: Literal["metric_aggregation"]
    metric_agg_key: FieldName
    metric_agg_type: MetricType
    percentile_range: float | None = Field(default=None, gt=0, lt=100)
    timeframe: Duration
    max_threshold: float | None = None
    min_threshold: float | None = None
    min_doc_count: PositiveInt = 1

    @model_validator(mode="after")
    def _consistent(self) -> MetricAggregationRule:
        if self.max_threshold is None and self.min_threshold is None:
            raise ValueError("give max_threshold, min_threshold or both")
        if (self.metric_agg_type == "percentiles") != (self.percentile_range is not None):
            raise ValueError("percentile_range (e.g. 95) goes with metric_agg_type: percentiles")
        return self


class PercentageMatchRule(KeyedRule):
    """The share of events matching `match_bucket_filter` outside min/max percentage."""

    type: Literal["percentage_match"]
    match_bucket_filter: Filter
    timeframe: Duration
    min_percentage: float | None = Field(default=None, ge=0, le=100)
    max_percentage: float | None = Field(default=None, ge=0, le=100)
    min_denominator: PositiveInt = 1

    @model_validator(mode="after")
    def _one_bound(self) -> PercentageMatchRule:
        if self.max_percentage is None and self.min_percentage is None:
            raise ValueError("give min_percentage, max_percentage or both")
        return self


NativeRule = Annotated[
    AnyRule
    | FrequencyRule
    | FlatlineRule
    | SpikeRule
    | NewTermRule
    | CardinalityRule
    | ChangeRule
    | BlacklistRule
    | WhitelistRule
    | MetricAggregationRule
    | PercentageMatchRule,
    Field(discriminator="type"),
]

RULE_TYPES: dict[str, type[RuleBase]] = {
    "any": AnyRule,
    "frequency": FrequencyRule,
    "flatline": FlatlineRule,
    "spike": SpikeRule,
    "new_term": NewTermRule,
    "cardinality": CardinalityRule,
    "change": ChangeRule,
    "blacklist": BlacklistRule,
    "whitelist": WhitelistRule,
    "metric_aggregation": MetricAggregationRule,
    "percentage_match": PercentageMatchRule,
}
