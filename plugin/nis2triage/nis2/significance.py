"""Is this incident significant? The criteria of rules/nis2 applied to what is known.

Three-valued (Kleene) logic, because early in an incident most facts are
unknown: one criterion met makes the incident significant whatever else is
unknown; it is not significant only when every applicable criterion is known
to be unmet (or an exclusion such as planned maintenance, IR Art. 3(2), holds);
otherwise the verdict is undetermined and names the facts that would settle it.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from nis2triage.errors import ConfigError
from nis2triage.nis2.criteria import AllOf, AnyOf, Compare, Condition, CriteriaSet, Criterion
from nis2triage.nis2.entity import Entity
from nis2triage.nis2.facts import Facts, Known, namespace

log = logging.getLogger(__name__)

Verdict = Literal["significant", "not_significant", "undetermined"]

_OPS: dict[str, tuple[Callable[[Any, Any], Any], str]] = {
    "gt": (operator.gt, ">"),
    "ge": (operator.ge, ">="),
    "lt": (operator.lt, "<"),
    "le": (operator.le, "<="),
    "eq": (operator.eq, "=="),
    "ne": (operator.ne, "!="),
}


@dataclass(frozen=True)
class CriterionMet:
    id: str
    source: str
    evidence: str


@dataclass(frozen=True)
class Significance:
    verdict: Verdict
    met: tuple[CriterionMet, ...]
    missing: tuple[str, ...]  # facts whose absence prevents a verdict
    entity_kind: str  # an IR Art. 1 type, or "other"
    excluded_by: CriterionMet | None = None
    undecided: tuple[str, ...] = ()  # ids of criteria whose outcome is still unknown
    unmet: tuple[str, ...] = ()  # ids of criteria known not to be met

    def status(self, criterion_id: str) -> Literal["met", "unmet", "unknown", "not_assessed"]:
        """One criterion's outcome; not_assessed if it does not apply or an exclusion held."""
        if any(m.id == criterion_id for m in self.met):
            return "met"
        if criterion_id in self.unmet:
            return "unmet"
        return "unknown" if criterion_id in self.undecided else "not_assessed"


@dataclass(frozen=True)
class Outcome:
    """A condition's truth (None = unknown), what would settle it, and why it came out so."""

    value: bool | None
    missing: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()


def assess(entity: Entity, facts: Facts, criteria: CriteriaSet) -> Significance:
    """The verdict for one incident of `entity`, with the criteria met and the facts missing."""
    # The inventory's service type wins: an entity may run more than one IR Art. 1 service.
    kind = facts.service_type or entity.ir_type or "other"
    applicable = criteria.criteria_for(kind)
    if not applicable:
        raise ConfigError(f"no significance criterion applies to entity type {kind!r}")
    known = namespace(facts, entity)

    exclusions = criteria.exclusions_for(kind)
    held = _first_true(exclusions, known)
    if held is not None:
        return _excluded(kind, held, applicable, known)

    outcomes = [(c, evaluate(c.when, known)) for c in applicable]
    met = [(c, o) for c, o in outcomes if o.value is True]
    undecided = [(c, o) for c, o in outcomes if o.value is None]
    unmet = tuple(c.id for c, o in outcomes if o.value is False)
    verdict, missing = _verdict([c for c, _ in met], undecided, exclusions, known)
    log.debug("significance for %s (%s): %s", entity.legal_name, kind, verdict)
    ids = tuple(c.id for c, _ in undecided)
    found = tuple(_met(c, o) for c, o in met)
    return Significance(verdict, found, missing, kind, undecided=ids, unmet=unmet)


def _excluded(
    kind: str,
    held: tuple[Criterion, Outcome],
    applicable: tuple[Criterion, ...],
    known: Mapping[str, Known],
) -> Significance:
    """The verdict when an exclusion holds: the criteria it covers are set aside, and the
    incident is not significant unless a criterion it cannot explain is known to be met
    (a death during planned maintenance was not planned). Unknown ones do not reopen it:
    the exclusion is the analyst's judgement of what the incident was."""
    exclusion, outcome = held
    rest = [(c, evaluate(c.when, known)) for c in applicable if not exclusion.sets_aside(c)]
    met = tuple(_met(c, o) for c, o in rest if o.value is True)
    if not met:
        return Significance("not_significant", (), (), kind, excluded_by=_met(exclusion, outcome))
    unmet = tuple(c.id for c, o in rest if o.value is False)
    undecided = tuple(c.id for c, o in rest if o.value is None)
    return Significance("significant", met, (), kind, undecided=undecided, unmet=unmet)


def _verdict(
    met: list[Criterion],
    undecided: list[tuple[Criterion, Outcome]],
    exclusions: Iterable[Criterion],
    known: Mapping[str, Known],
) -> tuple[Verdict, tuple[str, ...]]:
    if met:
        # Met, but an exclusion not yet ruled out (was it planned maintenance?) still decides
        # when it could set aside every criterion met.
        open_exclusions = [
            o
            for x, o in ((x, evaluate(x.when, known)) for x in exclusions)
            if o.value is None and all(x.sets_aside(c) for c in met)
        ]
        if open_exclusions:
            return "undetermined", _union(o.missing for o in open_exclusions)
        return "significant", ()
    if undecided:
        return "undetermined", _union(o.missing for _, o in undecided)
    return "not_significant", ()


def _first_true(
    exclusions: Iterable[Criterion], known: Mapping[str, Known]
) -> tuple[Criterion, Outcome] | None:
    for exclusion in exclusions:
        outcome = evaluate(exclusion.when, known)
        if outcome.value is True:
            return exclusion, outcome
    return None


def _met(criterion: Criterion, outcome: Outcome) -> CriterionMet:
    evidence = f"{criterion.summary}: {'; '.join(outcome.evidence)}"
    return CriterionMet(criterion.id, criterion.source, evidence)


def evaluate(condition: Condition, known: Mapping[str, Known]) -> Outcome:
    """Kleene evaluation: all/any decide as soon as one part is known to decide them."""
    if isinstance(condition, Compare):
        return _compare(condition, known)
    if isinstance(condition, AllOf):
        return _combine([evaluate(c, known) for c in condition.all], decisive=False)
    if isinstance(condition, AnyOf):
        return _combine([evaluate(c, known) for c in condition.any], decisive=True)
    inner = evaluate(condition.not_, known)
    flipped = None if inner.value is None else not inner.value
    return Outcome(flipped, inner.missing, tuple(f"not ({e})" for e in inner.evidence))


def _combine(parts: list[Outcome], decisive: bool) -> Outcome:
    """`all` (decisive=False: one false part decides) or `any` (decisive=True)."""
    deciding = [p for p in parts if p.value is decisive]
    if deciding:
        return Outcome(decisive, (), _union(p.evidence for p in deciding))
    unknown = [p for p in parts if p.value is None]
    if unknown:
        return Outcome(None, _union(p.missing for p in unknown))
    return Outcome(not decisive, (), _union(p.evidence for p in parts))


def _compare(condition: Compare, known: Mapping[str, Known]) -> Outcome:
    left = known[condition.fact]
    scale = known[condition.times] if condition.times else Known(1.0)
    if left.value is None or scale.value is None:
        return Outcome(None, _union([left.missing, scale.missing]))

    test, symbol = _OPS[condition.op]
    right = condition.value if isinstance(condition.value, bool) else condition.value * scale.value
    text = f"{condition.fact} = {_show(left.value)} {symbol} {_show(condition.value)}"
    if condition.times:
        text += f" × {condition.times} ({_show(scale.value)}) = {_show(right)}"
    notes = [n for n in (left.note, scale.note) if n]
    if notes:
        text += f" [{'; '.join(notes)}]"
    return Outcome(bool(test(left.value, right)), (), (text,))


def _show(value: bool | float) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


def _union(groups: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    """Concatenated without repeats, first occurrence first."""
    return tuple(dict.fromkeys(item for group in groups for item in group))
