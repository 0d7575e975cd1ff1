"""What a rule remembers between runs, kept apart from the rule itself.

The caller persists it (it is a pydantic model: `model_dump_json` and
`RuleState.model_validate_json`). Every map is bounded: past `MAX_ENTRIES` the
oldest entries go, and the evictions are counted, so that a field with millions
of values cannot exhaust the agent's memory.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

MAX_ENTRIES = 50_000

Scalar = str | int | float | bool | None


class PreviousValue(BaseModel):
    """The last value of a `change` rule's compare_key for one query_key, and when it was seen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: Scalar
    at: datetime


class RuleState(BaseModel):
    """Run state of one rule; `run_rule` reads and updates it in place."""

    model_config = ConfigDict(extra="forbid")

    # Suppression: the time of the last alert per "field=value" entity.
    last_alert: dict[str, datetime] = Field(default_factory=dict)
    # frequency: events up to this time per entity were counted by an earlier alert.
    counted_until: dict[str, datetime] = Field(default_factory=dict)
    # change: the previous value per query_key.
    previous: dict[str, PreviousValue] = Field(default_factory=dict)
    # new_term: per field, each known term and when it was last seen.
    seen_terms: dict[str, dict[str, datetime]] = Field(default_factory=dict)
    evicted: int = 0

    def forget_before(self, cutoffs: dict[str, datetime]) -> None:
        """Drop entries older than their map's cutoff, then cap every map's size."""
        for name, cutoff in cutoffs.items():
            if name == "previous":
                self.previous = {k: v for k, v in self.previous.items() if v.at >= cutoff}
            elif name == "seen_terms":
                self.seen_terms = {
                    f: {t: at for t, at in terms.items() if at >= cutoff}
                    for f, terms in self.seen_terms.items()
                }
            else:
                mapping: dict[str, datetime] = getattr(self, name)
                setattr(self, name, {k: at for k, at in mapping.items() if at >= cutoff})
        self._cap()

    def _cap(self) -> None:
        self.last_alert = self._newest(self.last_alert)
        self.counted_until = self._newest(self.counted_until)
        self.seen_terms = {f: self._newest(terms) for f, terms in self.seen_terms.items()}
        if len(self.previous) > MAX_ENTRIES:
            keep = sorted(self.previous, key=lambda k: self.previous[k].at)[-MAX_ENTRIES:]
            self.evicted += len(self.previous) - MAX_ENTRIES
            self.previous = {k: self.previous[k] for k in keep}

    def _newest(self, mapping: dict[str, datetime]) -> dict[str, datetime]:
        if len(mapping) <= MAX_ENTRIES:
            return mapping
        self.evicted += len(mapping) - MAX_ENTRIES
        keep = sorted(mapping, key=mapping.__getitem__)[-MAX_ENTRIES:]
        return {k: mapping[k] for k in keep}
