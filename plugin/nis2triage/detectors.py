"""Anomaly detectors: a YAML spec, and the online loop that runs it.

For each closed bucket of each entity the detector computes the feature
vector, scores it with its River model, compares the score with its adaptive
threshold and only then learns from it (score first, learn second), so a
bucket is never judged by a model that has already seen it.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from river import anomaly

from nis2triage import slots, yamlload
from nis2triage.config import Duration, validation_error
from nis2triage.errors import ConfigError
from nis2triage.features import (
    EVIDENCE_FIELDS,
    Baselines,
    Bucket,
    BucketTable,
    FeatureSpec,
    Filler,
    Match,
    Rising,
    clean,
    getter,
    is_ip,
    named_values,
)
from nis2triage.incidents.assess import HINT_FACTS
from nis2triage.models.hst import HalfSpaceTrees
from nis2triage.models.likelihood import LikelihoodSettings
from nis2triage.models.pipeline import MultivariateScorer, Scorer, Tail, build, finite
from nis2triage.models.postprocess import EntityScorers, PostProcessed, PostSettings
from nis2triage.models.range_rule import RangeSettings
from nis2triage.models.threshold import AdaptiveThreshold
from nis2triage.records import Alert, Event, Severity, ms_to_datetime
from nis2triage.rules.options import FieldName

log = logging.getLogger(__name__)
# Told of an event that raised while ingested, and of the error.
Failed = Callable[[Event, Exception], None]
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


# The most rows a post-processing window, period or warm-up may hold: the detector's own
# `warmup` bound, a million buckets (nine years of 5-minute buckets).
MAX_ROWS = 1_000_000
# The widest range rule margin: 100 times the seen range beyond its edge.
MAX_MARGIN = 100.0


def _finite_from(
    allowed: str, low: float, high: float | None, strict: bool = False
) -> Callable[[float], float]:
    """A check that a number is finite and within [low, high] (above `low` when `strict`),
    its error saying the allowed range (`allowed`)."""

    def check(value: float) -> float:
        below = value <= low if strict else value < low
        if not math.isfinite(value) or below or (high is not None and value > high):
            raise ValueError(f"{value!r} is outside the allowed range: write a number {allowed}")
        return value

    return check


class ThresholdSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    quantile: float = Field(default=0.99, gt=0.0, lt=1.0)
    # A NaN or infinite floor is a bar no score passes: a detector that can never alert.
    floor: float = Field(default=0.0, allow_inf_nan=False)


class LikelihoodSpec(BaseModel):
    """The anomaly likelihood's windows (models/likelihood; defaults are Numenta's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Rows, bounded as `warmup` is: a window of 10^20 rows failed to allocate at load with
    # a bare OverflowError, and a learning period that long never ends.
    short_window: int = Field(default=10, ge=1, le=MAX_ROWS)
    long_window: int = Field(default=8640, ge=1, le=MAX_ROWS)
    refit_every: int = Field(default=100, ge=1, le=MAX_ROWS)
    learning_period: int = Field(default=288, ge=0, le=MAX_ROWS)
    estimation_samples: int = Field(default=100, ge=2, le=MAX_ROWS)
    # An infinite floor is a variance no series reaches: every likelihood is then "no
    # evidence" and the detector never alerts.
    min_variance: Annotated[
        float, AfterValidator(_finite_from("above 0", 0.0, None, strict=True))
    ] = 3e-4
    red_tail: float = Field(default=1e-5, gt=0.0, lt=1.0)
    yellow_tail: float = Field(default=1e-3, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _tails(self) -> LikelihoodSpec:
        if self.red_tail >= self.yellow_tail:
            raise ValueError(
                f"red_tail ({self.red_tail}) must be below yellow_tail ({self.yellow_tail}): "
                "a red run is reported at the milder yellow tail"
            )
        return self

    def settings(self) -> LikelihoodSettings:
        return LikelihoodSettings(**self.model_dump())


class RangeRuleSpec(BaseModel):
    """The range rule (models/range_rule): how far outside the seen range, after how many."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # A margin of .inf (or 1e30) is a range no value leaves: a rule that never fires.
    margin: Annotated[float, AfterValidator(_finite_from("from 0 to 100", 0.0, MAX_MARGIN))] = 0.05
    warmup: int = Field(default=100, ge=1, le=MAX_ROWS)

    def settings(self) -> RangeSettings:
        return RangeSettings(**self.model_dump())


class PostprocessSpec(BaseModel):
    """Steps after the model, in this order: the likelihood, then the range rule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    likelihood: LikelihoodSpec | None = None
    range_rule: RangeRuleSpec | None = None

    def settings(self) -> PostSettings:
        return PostSettings(
            self.likelihood.settings() if self.likelihood else None,
            self.range_rule.settings() if self.range_rule else None,
        )


class DetectorSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: str = "1"
    description: str = ""
    severity: Severity = "medium"
    source: str
    filter: Match = Match()
    entity: FieldName
    # At most 31 days: a bucket stays open (and unjudged) its whole length.
    bucket: Duration = Field(
        default=timedelta(minutes=5), ge=timedelta(seconds=1), le=timedelta(days=31)
    )
    features: list[FeatureSpec] = Field(min_length=1)
    model: list[dict[str, dict[str, Any] | None]] = Field(min_length=1)
    target: str | None = None
    tail: Tail = "both"
    per_entity: bool = False
    postprocess: PostprocessSpec | None = None
    threshold: ThresholdSpec = ThresholdSpec()
    # Bounded so that a typo cannot silence a detector for good (a warm-up of 10^20
    # buckets never ends) or fill the memory (a million entities hold gigabytes of open
    # buckets, and their checkpoint passes what Elasticsearch takes in one request);
    # strict, so that `warmup: true` is refused rather than read as 1.
    warmup: StrictInt = Field(default=20, ge=0, le=1_000_000)
    max_entities: StrictInt = Field(default=100_000, ge=1, le=1_000_000)
    learn_from_alerts: bool = False
    message: str = "{entity} behaved unusually"
    tags: list[str] = Field(default_factory=list)
    hints: dict[str, bool] = Field(default_factory=dict)

    @field_validator("hints")
    @classmethod
    def _known_hints(cls, value: dict[str, bool]) -> dict[str, bool]:
        """A hint the incident assessment does not know would be carried and never read,
        and triage refuses routes on it."""
        unknown = sorted(set(value) - set(HINT_FACTS))
        if unknown:
            known = ", ".join(sorted(HINT_FACTS))
            raise ValueError(f"unknown hint {', '.join(unknown)}; the hints are: {known}")
        return value

    @field_validator("postprocess")
    @classmethod
    def _one_series(cls, value: PostprocessSpec | None, info: ValidationInfo) -> Any:
        """Post-processing follows one series: one entity's model, one target value."""
        if value is not None and not info.data.get("per_entity"):
            raise ValueError(
                "it keeps the history of one series: set `per_entity: true` so that "
                "each entity has its own model, likelihood and range"
            )
        if value is not None and info.data.get("target") is None:
            raise ValueError("it needs `target`: the feature whose value it follows")
        return value

    @model_serializer(mode="wrap")
    def _without_unused_keys(self, handler: SerializerFunctionWrapHandler) -> Any:
        # The agent fingerprints a spec by its dump (agent.spec_fingerprint) to reuse its
        # saved model: keys added later are left out at their defaults, so that upgrading
        # does not make every existing detector start learning afresh.
        data = handler(self)
        for key, default in (("per_entity", False), ("postprocess", None)):
            if isinstance(data, dict) and data.get(key, default) == default:
                data.pop(key, None)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> DetectorSpec:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"feature names must differ; features: {names}")
        scored = [f.name for f in self.features if f.in_model]
        if not scored:
            raise ValueError("no feature goes to the model: leave `in_model` on for at least one")
        if self.target is not None and self.target not in scored:
            raise ValueError(f"target {self.target!r} is not a model feature; they are: {scored}")
        for i, spec in enumerate(self.features):
            if spec.kind == "rise":
                _check_followed(spec, self.features[:i])
        return self

    @field_validator("message")
    @classmethod
    def _known_placeholders(cls, message: str, info: ValidationInfo) -> str:
        """Checked on the field, so that the error points at the `message:` line."""
        features = info.data.get("features")
        if features is None:
            return message  # the features are wrong themselves, and said so
        names = [f.name for f in features]
        unknown = set(_PLACEHOLDER.findall(message)) - {*names, "entity", "events"}
        if unknown:
            raise ValueError(
                f"names unknown fields {sorted(unknown)}; it may name {names}, entity and events"
            )
        return message


def fields_read(specs: Iterable[DetectorSpec]) -> list[str]:
    """Every field of an event that `specs` look at (filters, entities, features, the
    evidence kept with buckets), each once: all of an event that a detector reads."""
    names: list[str] = list(EVIDENCE_FIELDS)
    for spec in specs:
        names += [*spec.filter.fields(), spec.entity]
        names += [name for _, name in feature_fields(spec)]
    return list(dict.fromkeys(names))


def feature_fields(spec: DetectorSpec) -> list[tuple[str, str]]:
    """(feature, field) for each field a feature reads: its own (distinct, sum, max) and
    those of its `where`."""
    found = []
    for feature in spec.features:
        names = [feature.field] if feature.field else []
        names += feature.where.fields() if feature.where else []
        found += [(feature.name, name) for name in names]
    return found


def _check_followed(rise: FeatureSpec, earlier: list[FeatureSpec]) -> None:
    """A rise follows a measured feature listed before it."""
    measured = [f.name for f in earlier if f.kind != "rise"]
    if rise.of not in measured:
        raise ValueError(
            f"feature {rise.name}: `of: {rise.of}` must name a feature listed before it "
            f"that is not a rise; candidates: {measured}"
        )


def load_spec(path: str | Path) -> DetectorSpec:
    """Read one detector file; errors name the file and line."""
    located = yamlload.load_file(path)
    if not isinstance(located.data, dict):
        raise ConfigError(
            "a detector file is a mapping (name, source, entity, ...)", path=str(path)
        )
    try:
        spec = DetectorSpec.model_validate(located.data)
    except ValidationError as exc:
        raise validation_error(located, exc, DetectorSpec) from exc
    try:
        trial(spec)
    except ConfigError as exc:
        raise located.error(("model",), str(exc).removeprefix("model: ")) from exc
    return spec


def load_specs(paths: Iterable[str | Path]) -> list[DetectorSpec]:
    """Every detector file, in order; a name given twice is refused, naming both files:
    each detector keeps its models and alerts under its name, so two of one name would
    take each other's snapshot at every start and never get past their warm-up."""
    specs: list[DetectorSpec] = []
    seen: dict[str, str] = {}
    for path in paths:
        spec = load_spec(path)
        if spec.name in seen:
            raise yamlload.load_file(path).error(
                ("name",),
                f"{spec.name!r} is also the name of the detector in {seen[spec.name]}; "
                "detector names must be unique (give a copied detector a name of its own)",
            )
        seen[spec.name] = str(path)
        specs.append(spec)
    return specs


def trial(spec: DetectorSpec) -> None:
    """Build the model and run it once on a zero vector, so a parameter of the wrong
    type fails here, naming the file, not at the first bucket in production."""
    scorer = scorer_for(spec, where="model")
    zeros = {f.name: 0.0 for f in spec.features if f.in_model}
    _check_limits(spec.model, list(zeros))
    try:
        scorer.learn_one(zeros)
        scorer.score_one(zeros)
    except Exception as exc:  # whatever River raises for a bad parameter
        raise ConfigError(
            f"the model fails on its first input: {type(exc).__name__}: {exc}"
        ) from exc


def _check_limits(model: list[dict[str, dict[str, Any] | None]], scored: list[str]) -> None:
    """Half-Space Trees' `limits` name model features: a typo there left the feature
    unbounded and changed every score without a word."""
    for step in model:
        for name, params in step.items():
            limits = (params or {}).get("limits")
            unknown = sorted(set(limits) - set(scored)) if isinstance(limits, dict) else []
            if unknown:
                raise ConfigError(
                    f"{name}: limits name {unknown}, which the model is not given; "
                    f"its features: {scored}"
                )
            for feature, bounds in (limits or {}).items() if isinstance(limits, dict) else ():
                _check_bounds(name, feature, bounds)


def _check_bounds(name: str, feature: str, bounds: Any) -> None:
    """A feature's limits are two finite numbers, the lower first."""
    numbers = (
        isinstance(bounds, list | tuple)
        and len(bounds) == 2
        and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
    )
    if not numbers:
        raise ConfigError(
            f"{name}: limits of {feature} must be two numbers [low, high], not {bounds!r} "
            "(YAML reads 1.0e308 as text: write 1.0e+308)"
        )
    low, high = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(
            f"{name}: limits of {feature} must be finite with low < high, not {bounds}"
        )


class _Judged(NamedTuple):
    """A closed bucket ready for the model: its features, rises and model vector, and the
    entity's expected levels they were measured against."""

    entity: str
    bucket: Bucket
    values: dict[str, float]
    rises: dict[str, float]
    expected: dict[str, float]
    x: dict[str, float]


class Verdict(NamedTuple):
    """One bucket judged: its score, the bar it had to pass, and whether it passed.

    Named tuples: one of each is made per closed bucket, and frozen dataclasses cost
    several times more to build (`make bench`).
    """

    score: float
    bar: float
    alerting: bool


def scorer_for(spec: DetectorSpec, where: str | None = None) -> Scorer:
    """The spec's model and post-processing, as the agent scores one series (or all
    entities, without `per_entity`) with it; the NAB bench builds it the same way."""
    scorer = build(spec.model, spec.target, where or spec.name, spec.tail)
    if spec.postprocess is None or spec.target is None:
        return scorer
    return PostProcessed(scorer, spec.target, spec.postprocess.settings())


# Events in a row without the entity field before the detector says so (once).
NO_ENTITY_RUN = 100
# Entities one event counts for at most: an event listing thousands of addresses must not
# open thousands of buckets. Those beyond are counted (`cut_entities`) and said once.
MAX_ENTITIES_PER_EVENT = 8


class Detector:
    """The run-time state of one detector: open buckets, model, threshold, counters."""

    # Class defaults, so a detector unpickled from an older snapshot has them too.
    unscorable = 0
    said_no_entity = False
    said_late = False
    said_evicting = False
    # The source's time field, for the query an alert carries (set by the agent).
    time_field = "@timestamp"
    # Events the filter took in a row without the entity field (see `_say_if_no_entity`).
    missing_run = 0
    # Entity values past MAX_ENTITIES_PER_EVENT of one event, which no bucket counted.
    cut_entities = 0
    said_cut = False
    # Events whose negative values a log1p sum or max left out, and those whose values of
    # a sum or max feature's field were no number, with the fields (`features._adder`).
    negative_values = 0
    negative_fields: list[str] = []  # noqa: RUF012 (a class default, replaced, never changed)
    said_negative = False
    not_numbers = 0
    not_number_fields: list[str] = []  # noqa: RUF012 (a class default, replaced, never changed)
    said_not_numbers = False

    def __init__(self, spec: DetectorSpec) -> None:
        self.spec = spec
        self.scorer: Scorer = scorer_for(spec)
        # With `per_entity` each entity has its own chain, capped like the open buckets.
        self.entity_scorers = (
            EntityScorers.empty(partial(scorer_for, spec), spec.max_entities)
            if spec.per_entity
            else None
        )
        self.threshold = AdaptiveThreshold(spec.threshold.quantile, spec.threshold.floor)
        self.table = BucketTable(spec.bucket, spec.max_entities)
        # What is counted per event, and what is derived per bucket from the entity's past.
        self.measured = [f for f in spec.features if f.kind != "rise"]
        self.rising = [f for f in spec.features if f.kind == "rise"]
        self.baselines = Baselines(spec.bucket, spec.max_entities)
        self.scored = 0
        self.learned = 0
        self.held_out = 0
        self.missing_entity = 0
        self.events = 0

    def ingest(self, event: Event) -> None:
        """One event; a loop over many should call `ingest_many`, which binds the
        getters once for all of them."""
        self.ingest_many((event,))

    def ingest_many(self, events: Iterable[Event], failed: Failed | None = None) -> None:
        """Each event into its entity's bucket, if the filter takes it.

        An event that raises is handed to `failed` (with the error) and the next one goes
        on; without `failed` the error is raised. Getters and conditions are bound once
        for the whole batch (`features.Filler`).
        """
        matches = self.spec.filter.matcher()
        entity_of = getter(self.spec.entity)
        filler = Filler(self.measured)
        add = self.table.add
        missing_run = self.missing_run
        for event in events:
            try:
                doc = event.doc
                if not matches(doc):
                    continue
                self.events += 1
                entity = entity_of(doc)
                if isinstance(entity, str):  # the usual case, without a list
                    missing_run = 0
                    add(clean(entity), event.ts_ms, doc, filler)
                    continue
                # Each entity once: `[a, a]` (an ECS related.* list built without dropping
                # repeats, two long values cut to one) counted the event twice for it.
                entities = list(dict.fromkeys(map(clean, named_values(entity))))
                if not entities:
                    self.missing_entity += 1
                    missing_run += 1
                    continue
                missing_run = 0
                for one in entities[:MAX_ENTITIES_PER_EVENT]:
                    add(one, event.ts_ms, doc, filler)
                self.cut_entities += max(0, len(entities) - MAX_ENTITIES_PER_EVENT)
            except Exception as exc:
                if failed is None:
                    raise
                failed(event, exc)
        self.missing_run = missing_run
        self.negative_values, self.negative_fields = _tallied(
            self.negative_values, self.negative_fields, filler.negatives.counts
        )
        self.not_numbers, self.not_number_fields = _tallied(
            self.not_numbers, self.not_number_fields, filler.not_numbers.counts
        )
        self._say_if_no_entity()
        self._say_if_cut()
        self._say_if_negative()
        self._say_if_not_numbers()
        self._say_if_late()
        self._say_if_evicting()

    def _say_if_no_entity(self) -> None:
        """Warn once when the last NO_ENTITY_RUN events the filter took all lacked the entity
        field: most likely a typo in `entity` (or a field renamed upstream), which would
        otherwise judge nothing, silently. A run, not a batch: a live poll of one stray
        event without the field is no reason to warn."""
        if self.said_no_entity or self.missing_run < NO_ENTITY_RUN:
            return
        self.said_no_entity = True
        log.warning(
            "detector %s: the last %d events its filter took have no field %s, so none was "
            "judged; check `entity:` in the detector file against the events' fields",
            self.spec.name,
            self.missing_run,
            self.spec.entity,
        )

    def _say_if_cut(self) -> None:
        """Warn once when an event listed more entities than one event counts for: the
        ones past the cap go into no bucket, which nothing else would say."""
        if self.said_cut or not self.cut_entities:
            return
        self.said_cut = True
        log.warning(
            "detector %s: an event listed more than %d values of %s; the %d beyond were "
            "counted for no entity (the detector's stats count them as cut_entities). If "
            "the field often holds long lists, choose a single-valued entity field",
            self.spec.name,
            MAX_ENTITIES_PER_EVENT,
            self.spec.entity,
            self.cut_entities,
        )

    def _say_if_negative(self) -> None:
        """Warn once when a log-scale sum or max was given negative values: a magnitude has
        none, so they come from a broken shipper, or from someone hiding a volume."""
        if self.said_negative or not self.negative_values:
            return
        self.said_negative = True
        log.warning(
            "detector %s: %d negative values of %s were left out of its log-scale features "
            "(a volume has none: a broken shipper, or an event written to cancel one); the "
            "detector's stats count them as negative_values",
            self.spec.name,
            self.negative_values,
            ", ".join(self.negative_fields),
        )

    def _say_if_not_numbers(self) -> None:
        """Warn once when a sum or max feature's field held values that are no number: they
        count as nothing, so a volume written as text ("50 GB") would go unmeasured."""
        if self.said_not_numbers or not self.not_numbers:
            return
        self.said_not_numbers = True
        log.warning(
            "detector %s: %d events held values of %s that are no number (text, true/false, "
            "NaN) and counted as nothing in its features; check the shipper's mapping of "
            "the field (the detector's stats count them as not_numbers)",
            self.spec.name,
            self.not_numbers,
            ", ".join(self.not_number_fields),
        )

    def _say_if_late(self) -> None:
        """Warn once when events came after their bucket was judged: the shipper lags more
        than the source's `max_lateness`, and those events count nowhere."""
        if self.said_late or not self.table.late_events:
            return
        self.said_late = True
        log.warning(
            "detector %s: %d events came after their %s bucket was judged and were not "
            "counted; the shipper lags more than the source's max_lateness: raise it (the "
            "detector's stats count them as late_events)",
            self.spec.name,
            self.table.late_events,
            _span_text(self.table.span_ms),
        )

    def evictions(self) -> dict[str, int]:
        """Entities dropped at the `max_entities` cap so far, per kind of state."""
        return {
            "open_buckets": self.table.evicted_entities,
            "models": self.entity_scorers.evicted if self.entity_scorers else 0,
            "baselines": self.baselines.evicted,
        }

    def _say_if_evicting(self) -> None:
        """Warn once when the cap starts evicting: an entity whose open buckets are dropped
        loses their events, and one whose model or baseline is dropped starts learning
        afresh when it comes back. With more active entities than the cap, that happens to
        nearly every bucket and the detector learns nothing, which nothing else would say."""
        evicted = self.evictions()
        if self.said_evicting or not any(evicted.values()):
            return
        self.said_evicting = True
        dropped = [
            f"{count} {what}"
            for count, what in (
                (
                    evicted["open_buckets"],
                    f"open buckets ({self.table.evicted_events} events not counted)",
                ),
                (evicted["models"], "per-entity models"),
                (evicted["baselines"], "baselines"),
            )
            if count
        ]
        log.warning(
            "detector %s: more entities than its max_entities (%d); dropped so far: %s. An "
            "entity dropped starts learning afresh when it comes back: raise max_entities if "
            "memory allows, or narrow the detector's filter (nis2triage_evictions counts them)",
            self.spec.name,
            self.spec.max_entities,
            ", ".join(dropped),
        )

    def next_bucket_end_ms(self) -> int | None:
        """When the earliest open bucket ends (epoch ms), or None with no bucket open."""
        earliest = self.table.earliest_ms
        return None if earliest is None else earliest + self.table.span_ms

    def close(self, cutoff_ms: int, index_pattern: str) -> list[Alert]:
        """Score, then learn, every bucket ending by `cutoff_ms`; return the alerts."""
        alerts = []
        closed = self.table.close_until(cutoff_ms)
        # Buckets come in time order; those of one start belong to distinct entities, so
        # they are judged together (`_judge_slot`) without one seeing another's outcome.
        for _, slot in groupby(closed, key=lambda item: item[1].start_ms):
            alerts.extend(self._judge_slot(list(slot), index_pattern))
        self._say_if_evicting()
        return alerts

    def _judge_slot(self, slot: list[tuple[str, Bucket]], index_pattern: str) -> list[Alert]:
        in_model = [f.name for f in self.spec.features if f.in_model]
        rising = Rising.of(self.rising, self.spec.bucket)
        trees = self._batch_model()
        if trees is not None and sorted(in_model) == trees.names:
            return self._judge_columns(slot, trees, rising, index_pattern)
        judged = [j for j in (self._prepare(e, b, in_model, rising) for e, b in slot) if j]
        verdicts = self._judge_all([(j.entity, j.x) for j in judged])
        alerts = []
        for j, verdict in zip(judged, verdicts, strict=True):
            # The entity's own level follows even an alerting bucket: a rise is news once,
            # then a lasting change becomes this entity's level while the model still holds
            # the bucket out (an account scanned all day alerts when the scanning starts).
            if rising.terms:
                start = j.bucket.start_ms
                self.baselines.update(j.entity, start, j.values, rising, j.expected)
            if verdict.alerting:
                judged_as = (verdict.score, verdict.bar)
                alerts.append(self._alert(j.entity, j.bucket, judged_as, j.rises, index_pattern))
            if self.watching:
                self._judged(j.entity, j.bucket, verdict)
        return alerts

    # Whether every judged bucket is handed to `_judged` (`replay --closest`); the agent's
    # detectors spend nothing on it.
    watching = False

    def _judged(self, entity: str, bucket: Bucket, verdict: Verdict) -> None:
        """One bucket judged, alerting or not; for a subclass that watches the scores."""

    def _judge_columns(
        self,
        slot: list[tuple[str, Bucket]],
        trees: HalfSpaceTrees,
        rising: Rising,
        index_pattern: str,
    ) -> list[Alert]:
        """`_judge_slot` for a model shared by all entities, the slot's buckets as columns
        (`slots`): the same scores, verdicts, baselines and alerts, at a fraction of the
        per-bucket cost."""
        slot, columns = self._columns(slot, rising)
        verdicts: list[Verdict] = []

        def learns(score: float) -> bool:
            verdicts.append(self._verdict(finite(score)))
            return self._learns(verdicts[-1])

        trees.judge_rows(columns.rows(trees.names), learns)
        if rising.terms and slot:
            entities = [e for e, _ in slot]
            slots.fold_in(self.baselines, entities, slot[0][1].start_ms, rising, columns)
        if self.watching:
            for (entity, bucket), verdict in zip(slot, verdicts, strict=True):
                self._judged(entity, bucket, verdict)
        return [
            self._alert(entity, bucket, (v.score, v.bar), self._rises(columns, i), index_pattern)
            for i, ((entity, bucket), v) in enumerate(zip(slot, verdicts, strict=True))
            if v.alerting
        ]

    def _columns(
        self, slot: list[tuple[str, Bucket]], rising: Rising
    ) -> tuple[list[tuple[str, Bucket]], slots.Columns]:
        """The slot's scorable buckets (one with a non-finite feature said and dropped, as
        `_prepare` does) and their features and rises as columns."""
        values = slots.measured([b for _, b in slot], self.measured)
        scorable = np.isfinite(values).all(axis=1)
        if not scorable.all():
            for (entity, _), ok in zip(slot, scorable.tolist(), strict=True):
                if not ok:
                    self._say_unscorable(entity)
            slot = [item for item, ok in zip(slot, scorable.tolist(), strict=True) if ok]
            values = values[scorable]
        if not rising.terms:
            names = [f.name for f in self.measured]
            return slot, slots.Columns(names, values, np.empty((len(slot), 0)))
        entities = [e for e, _ in slot]
        start = slot[0][1].start_ms if slot else 0
        return slot, slots.with_rises(
            values, self.measured, rising, self.baselines, entities, start
        )

    def _rises(self, columns: slots.Columns, row: int) -> dict[str, float]:
        return {f.name: float(columns.column(f.name)[row]) for f in self.rising}

    def _say_unscorable(self, entity: str) -> None:
        # Finite values can still sum past the largest float (a double field holding
        # 1e308s): an infinite feature would poison the model and every later score.
        self.unscorable += 1
        log.warning(
            "detector %s: bucket of %s has a non-finite feature, not scored or learned",
            self.spec.name,
            entity,
        )

    def _prepare(
        self, entity: str, bucket: Bucket, in_model: list[str], rising: Rising
    ) -> _Judged | None:
        """The bucket's model vector, or None (counted) when it cannot be scored."""
        values = bucket.vector(self.measured)
        if not all(map(math.isfinite, values.values())):
            self._say_unscorable(entity)
            return None
        expected: dict[str, float] = {}
        rises: dict[str, float] = {}
        if rising.terms:
            expected = self.baselines.expected(entity, bucket.start_ms, rising)
            rises = rising.over(expected, values)
            values.update(rises)
        x = {name: values[name] for name in in_model}
        return _Judged(entity, bucket, values, rises, expected, x)

    def _judge_all(self, vectors: list[tuple[str, dict[str, float]]]) -> list[Verdict]:
        """Each vector judged in order, as `judge_vector` would, in batches where the
        model allows it (`models.hst`: same scores, a fraction of the cost)."""
        trees = self._batch_model()
        # Every vector of a detector has the same features: one holds the model's, or none.
        if trees is None or not vectors or not trees.complete(vectors[0][1]):
            return [self.judge_vector(entity, x) for entity, x in vectors]
        verdicts: list[Verdict] = []

        def learns(score: float) -> bool:
            verdicts.append(self._verdict(finite(score)))
            return self._learns(verdicts[-1])

        trees.judge([x for _, x in vectors], learns)
        return verdicts

    def _batch_model(self) -> HalfSpaceTrees | None:
        """The model as one batch-capable HalfSpaceTrees shared by all entities, if it is."""
        if self.entity_scorers is not None or not isinstance(self.scorer, MultivariateScorer):
            return None
        model = self.scorer.pipeline
        # By type, not isinstance: River counts a Pipeline as an instance of its last step,
        # and a scaler before the trees must go one bucket at a time.
        if type(model) is anomaly.HalfSpaceTrees:
            # Restored from a snapshot saved before models.hst: same state, as arrays.
            model = self.scorer.pipeline = HalfSpaceTrees.from_river(model)
        return model if type(model) is HalfSpaceTrees and model.built else None

    def judge_vector(self, entity: str, x: dict[str, float]) -> Verdict:
        """Score one entity's model features, compare with the bar, then learn (or hold out).

        The NAB bench drives the shipped spec through this, one series as one entity.
        """
        scorer = self.entity_scorers.of(entity) if self.entity_scorers else self.scorer
        verdict = self._verdict(scorer.score_one(x))
        if self._learns(verdict):
            scorer.learn_one(x)
        return verdict

    def _verdict(self, score: float) -> Verdict:
        bar = self.threshold.value()
        alerting = self.scored >= self.spec.warmup and score > bar
        self.threshold.update(score)
        self.scored += 1
        return Verdict(score, bar, alerting)

    def _learns(self, verdict: Verdict) -> bool:
        """Whether the judged vector is learnt; counted either way."""
        # An attack learnt as normal stops being an anomaly (docs/anomaly-notes):
        # by default a bucket that alerted is kept out of the model.
        if verdict.alerting and not self.spec.learn_from_alerts:
            self.held_out += 1
            return False
        self.learned += 1
        return True

    def _alert(
        self,
        entity: str,
        bucket: Bucket,
        judged: tuple[float, float],
        rises: dict[str, float],
        pattern: str,
    ) -> Alert:
        score, bar = judged
        raw = bucket.raw(self.measured) | {k: round(v, 6) for k, v in rises.items()}
        start = ms_to_datetime(bucket.start_ms)
        end = ms_to_datetime(bucket.start_ms + self.table.span_ms)
        # related.ip is an ip field: a value that is not an address would make the alert
        # unwritable, so such values stay in the evidence only.
        ips = sorted(ip for ip in {*bucket.ips, entity} if is_ip(ip))
        return Alert(
            kind="detector",
            name=self.spec.name,
            version=self.spec.version,
            severity=self.spec.severity,
            timestamp=end,
            start=start,
            end=end,
            score=round(score, 6),
            threshold=round(bar, 6),
            entity_field=self.spec.entity,
            entity=entity,
            message=self._message(entity, bucket, raw),
            index_pattern=pattern,
            query=self._query(entity, start, end),
            related_ips=tuple(ips),
            related_users=tuple(sorted(bucket.users)),
            related_hosts=tuple(sorted(bucket.hosts)),
            evidence=self._evidence(bucket, raw),
            tags=tuple(self.spec.tags),
            hints=tuple(sorted(k for k, v in self.spec.hints.items() if v)),
        )

    def _message(self, entity: str, bucket: Bucket, raw: dict[str, float]) -> str:
        values: dict[str, str] = {k: f"{v:g}" for k, v in raw.items()}
        values.update(entity=entity, events=str(bucket.events))
        minutes = self.table.span_ms // 60_000
        text = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), self.spec.message)
        return f"{text} ({minutes} min bucket)"

    def _evidence(self, bucket: Bucket, raw: dict[str, float]) -> dict[str, Any]:
        return {
            "events": bucket.events,
            "features": raw,
            "first_event": ms_to_datetime(bucket.first_ms or bucket.start_ms).isoformat(),
            "last_event": ms_to_datetime(bucket.last_ms or bucket.start_ms).isoformat(),
        }

    def _query(self, entity: str, start: Any, end: Any) -> str:
        """A Lucene query string an analyst can paste into Kibana to see the raw events."""
        parts = [f'{self.spec.entity}:"{_escape(entity)}"']
        for field_name, want in self.spec.filter.all_of.items():
            wanted = want if isinstance(want, list) else [want]
            parts.append(
                f"{field_name}:(" + " OR ".join(f'"{_escape(str(w))}"' for w in wanted) + ")"
            )
        parts.append(f"{self.time_field}:[{start.isoformat()} TO {end.isoformat()}}}")
        return " AND ".join(parts)

    def stats(self) -> dict[str, int]:
        return {
            "events": self.events,
            "scored": self.scored,
            "learned": self.learned,
            "held_out": self.held_out,
            "unscorable": self.unscorable,
            "missing_entity": self.missing_entity,
            "cut_entities": self.cut_entities,
            "negative_values": self.negative_values,
            "not_numbers": self.not_numbers,
            "late_events": self.table.late_events,
            "evicted_entities": self.table.evicted_entities,
            "evicted_events": self.table.evicted_events,
            "open_entities": len(self.table.open),
            "evicted_baselines": self.baselines.evicted,
            "evicted_models": self.entity_scorers.evicted if self.entity_scorers else 0,
        }


def _tallied(total: int, fields: list[str], batch: Counter[str]) -> tuple[int, list[str]]:
    """A count and its fields with a batch's events per field added."""
    if not batch:
        return total, fields
    return total + sum(batch.values()), sorted({*fields, *batch})


def _span_text(ms: int) -> str:
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes}-minute" if not seconds else f"{ms // 1000}-second"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
