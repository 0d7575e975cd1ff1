"""What is known about an incident, fact by fact; `None` means nobody knows yet.

Facts come from three places: detections (was access gained, is malice
suspected), the asset and service inventory (which service, how many users in
the Union) and the analyst's impact assessment (loss, outage, harm). The
significance criteria in rules/nis2 name these facts; `FACT_KINDS` is the list
they may use.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict, model_validator

from nis2triage.nis2.brussels import add_months
from nis2triage.nis2.entity import Entity, IrType

# Strict: a detection that says "yes" instead of true is a bug to surface, not to coerce.
Flag = Annotated[bool, Strict()]
# Bounded far above any real incident (a trillion euros or minutes, ten times the world's
# people): a typo of 1e307 overflowed the report's share of turnover to infinity.
Count = Annotated[int, Strict(), Field(ge=0, le=10**11)]
Amount = Annotated[float, Strict(), Field(ge=0, le=1e15)]

FactKind = Literal["flag", "number"]


class PreviousIncident(BaseModel):
    """An earlier incident, for the recurrence test of IR Art. 4."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: str
    occurred_at: AwareDatetime
    root_cause_id: str
    financial_loss_eur: Amount | None = None


class Facts(BaseModel):
    """Everything the significance criteria may ask about one incident.

    Flags record "has caused or is capable of causing", the wording of IR
    Art. 3(1) and NIS2 Art. 23(3): the analyst's judgement, not only what
    already happened. User counts are users in the Union and include contract
    customers and people linked to business customers (IR Art. 3(3)).
    """

    # A loss of inf or an outage of 1e309 minutes is a typing slip, and JSON cannot hold it.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # From detections.
    unauthorised_access_confirmed: Flag | None = None
    malicious_suspected: Flag | None = None
    data_compromised: Flag | None = None
    # From the asset and service inventory.
    service_type: IrType | None = None
    eu_users_total: Count | None = None
    domain_names_managed: Count | None = None
    cross_border: Flag | None = None
    # Recorded by the analyst: availability.
    full_outage: Flag | None = None
    unavailability_minutes: Amount | None = None
    weekly_unavailability_minutes: Amount | None = None
    limited_availability_minutes: Amount | None = None
    mean_response_seconds: Amount | None = None
    slow_response_minutes: Amount | None = None
    users_affected: Count | None = None
    # The impact is a planned interruption or planned consequence of maintenance (IR Art. 3(2)).
    planned_maintenance: Flag | None = None
    # Recorded by the analyst: data and physical security.
    users_data_affected: Count | None = None
    compromise_by_misconfiguration: Flag | None = None
    domain_names_affected: Count | None = None
    personal_data_involved: Flag | None = None
    trade_secrets_exfiltrated: Flag | None = None
    physical_access_compromised: Flag | None = None
    # Recorded by the analyst: harm.
    financial_loss_eur: Amount | None = None
    severe_financial_loss: Flag | None = None
    severe_operational_disruption: Flag | None = None
    considerable_damage_to_others: Flag | None = None
    deaths: Count | None = None
    death_risk: Flag | None = None
    health_damage: Flag | None = None
    # For recurrence (IR Art. 4).
    occurred_at: AwareDatetime | None = None
    root_cause_id: str | None = None
    previous_incidents: tuple[PreviousIncident, ...] | None = None
    # Where each fact came from (index, query, time range), quoted in the evidence.
    sources: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent_outage(self) -> Facts:
        minutes = self.unavailability_minutes
        if self.full_outage is False and minutes:
            raise ValueError("full_outage is false but unavailability_minutes is above 0")
        if self.full_outage is True and minutes == 0:
            raise ValueError("full_outage is true but unavailability_minutes is 0")
        return self


def _kind(annotation: Any) -> FactKind | None:
    """'flag' or 'number' for a scalar fact's type, None for records and text."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, Annotated):
        kinds = {_kind(arg) for arg in typing.get_args(annotation)} - {None}
        return kinds.pop() if len(kinds) == 1 else None
    if annotation is bool:
        return "flag"
    return "number" if annotation in (int, float) else None


def _fact_kinds() -> dict[str, FactKind]:
    kinds = {name: _kind(info.annotation) for name, info in Facts.model_fields.items()}
    found: dict[str, FactKind] = {name: kind for name, kind in kinds.items() if kind}
    # Not recorded per incident: the turnover is the entity's, recurrence is derived.
    found.update(annual_turnover_eur="number", recurrence_count="number")
    found["recurrence_loss_eur"] = "number"
    return found


FACT_KINDS: dict[str, FactKind] = _fact_kinds()


@dataclass(frozen=True)
class Known:
    """A fact's value as the criteria see it, or None with the inputs that would settle it."""

    value: bool | float | None
    missing: tuple[str, ...] = ()
    note: str = ""


def namespace(facts: Facts, entity: Entity) -> dict[str, Known]:
    """Every fact a criterion may name, with derived ones filled in."""
    plain = {name: getattr(facts, name) for name in FACT_KINDS if name in Facts.model_fields}
    known = {name: _plain(name, value, facts) for name, value in plain.items()}
    known["full_outage"], known["unavailability_minutes"] = _outage(facts)
    known["planned_maintenance"] = _planned(facts)
    known["annual_turnover_eur"] = _plain("annual_turnover_eur", entity.annual_turnover_eur, facts)
    known["recurrence_count"], known["recurrence_loss_eur"] = _recurrence(facts)
    return known


def _plain(name: str, value: bool | float | None, facts: Facts) -> Known:
    return Known(value, () if value is not None else (name,), facts.sources.get(name, ""))


def _outage(facts: Facts) -> tuple[Known, Known]:
    """Each of full_outage and unavailability_minutes settles the other when it is 0 or False."""
    full, minutes = facts.full_outage, facts.unavailability_minutes
    if full is None and minutes is not None:
        full = minutes > 0
    if minutes is None and full is False:
        minutes = 0.0
    return _plain("full_outage", full, facts), _plain("unavailability_minutes", minutes, facts)


def _planned(facts: Facts) -> Known:
    """Unless the analyst said otherwise, what a suspected malicious action did was not planned.

    Our reading of IR Art. 3(2): an attack's effects are never "planned consequences of
    scheduled maintenance", so a detection of malice settles the question.
    """
    if facts.planned_maintenance is None and facts.malicious_suspected is True:
        return Known(False, (), "malicious action suspected, so not planned maintenance")
    return _plain("planned_maintenance", facts.planned_maintenance, facts)


def _recurrence(facts: Facts) -> tuple[Known, Known]:
    """IR Art. 4: incidents with the same apparent root cause within six months, and their loss."""
    needed = ("occurred_at", "root_cause_id", "previous_incidents")
    missing = tuple(name for name in needed if getattr(facts, name) is None)
    if missing or facts.occurred_at is None or facts.previous_incidents is None:
        return Known(None, missing), Known(None, missing)

    # "Within six months" read as six calendar months back from this incident (Brussels time).
    since = add_months(facts.occurred_at, -6)
    linked = [
        p
        for p in facts.previous_incidents
        if p.root_cause_id == facts.root_cause_id and since <= p.occurred_at <= facts.occurred_at
    ]
    note = _recurrence_note(facts.root_cause_id, linked, since)
    return Known(float(1 + len(linked)), (), note), _joint_loss(facts, linked, note)


def _joint_loss(facts: Facts, linked: list[PreviousIncident], note: str) -> Known:
    """The loss of this incident and the linked ones together, or which losses are unknown."""
    gaps = ["financial_loss_eur"] if facts.financial_loss_eur is None else []
    gaps += [f"previous_incidents[{p.ref}].financial_loss_eur" for p in linked
             if p.financial_loss_eur is None]  # fmt: skip
    if gaps:
        return Known(None, tuple(gaps), note)
    return Known(
        sum(p.financial_loss_eur or 0.0 for p in linked) + (facts.financial_loss_eur or 0.0),
        (),
        note,
    )


def _recurrence_note(
    root_cause: str | None, linked: list[PreviousIncident], since: datetime
) -> str:
    refs = ", ".join(p.ref for p in linked) or "none"
    return f"root cause {root_cause}: earlier incidents since {since:%Y-%m-%d}: {refs}"
