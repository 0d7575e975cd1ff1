"""The incident desk: alerts in, lifecycle changes from the agent and from analysts.

The agent hands over every routed alert (`take`): it joins the open incident
it correlates with, or opens one if its route warrants it. Analysts change
incidents through the same desk (acknowledge, record impact, close), so
every change is re-assessed (significance, deadlines) and audited the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from nis2triage.assets import Asset
from nis2triage.config import AgentConfig
from nis2triage.errors import ConfigError, IncidentError
from nis2triage.incidents import assess, lifecycle
from nis2triage.incidents.book import Book, any_key
from nis2triage.incidents.record import Gdpr, Incident, Narrative, Request
from nis2triage.nis2.criteria import CriteriaSet, load_directory
from nis2triage.records import Alert
from nis2triage.store import Store

log = logging.getLogger(__name__)


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


# The checkout's criteria, the default; an installed package does not carry them.
SHIPPED_CRITERIA = Path(__file__).resolve().parents[3] / "rules" / "nis2"


def load_criteria(cfg: AgentConfig, shipped: Path = SHIPPED_CRITERIA) -> CriteriaSet:
    """The configured significance criteria, or the shipped rules/nis2."""
    if cfg.incidents.criteria:
        return load_directory(cfg.resolve(cfg.incidents.criteria))
    if not shipped.is_dir():
        raise ConfigError(
            f"incidents.criteria is not set and the shipped criteria are not beside this "
            f"installation ({shipped}); set incidents.criteria to the rules/nis2 folder you "
            "copied (e.g. /etc/nis2triage/rules/nis2)"
        )
    return load_directory(shipped)


class Desk:
    def __init__(
        self,
        cfg: AgentConfig,
        store: Store,
        clock: Callable[[], datetime],
        criteria: CriteriaSet | None = None,
    ) -> None:
        self.cfg = cfg
        self.options = cfg.incidents
        self.entity = cfg.entity
        self.clock = clock
        self.book = Book(store, clock)
        self.criteria = criteria or load_criteria(cfg)

    # --- from the agent ----------------------------------------------------

    def take(self, routed: list[tuple[Alert, Asset | None]]) -> list[Incident]:
        """File each alert under its incident; the incidents that changed, latest state."""
        changed: dict[str, Incident] = {}
        for alert, asset in sorted(routed, key=lambda pair: pair[0].timestamp):
            incident = self._file(alert, asset)
            if incident is not None:
                changed[incident.id] = incident
        return list(changed.values())

    def _file(self, alert: Alert, asset: Asset | None) -> Incident | None:
        keys = lifecycle.correlation_keys(alert, asset, self.options.correlate_by)
        match = self._match(alert, keys)
        if match is not None and alert.id in match.alert_ids:
            return None  # a replayed alert: already filed
        if match is not None:
            return self.change(match.id, lambda i: self._join(i, alert, asset, keys))
        if alert.route not in self.options.open_on_routes:
            return None
        incident = self._open(alert, asset, keys)
        if not self.book.create(incident):
            return None
        log.info("incident %s opened (%s) for %s", incident.id, incident.status, keys[0])
        return incident

    def _match(self, alert: Alert, keys: tuple[str, ...]) -> Incident | None:
        """The incident holding this alert already, else the latest open one sharing a key."""
        ts = _iso(alert.timestamp)
        correlated = {
            "bool": {
                "filter": [any_key(keys), {"range": {"window_end": {"gte": ts}}}],
                "must_not": [{"term": {"status": "closed"}}],
            }
        }
        query = {"bool": {"should": [{"term": {"alert_ids": alert.id}}, correlated]}}
        found = self.book.find(query, size=20)
        holding = [i for i in found if alert.id in i.alert_ids]
        return (holding or found)[0] if holding or found else None

    def _open(self, alert: Alert, asset: Asset | None, keys: tuple[str, ...]) -> Incident:
        now = self.clock()
        incident = lifecycle.open_incident(alert, asset, keys, now)
        return self._settle(self._auto_aware(incident, alert, now))

    def _join(
        self, incident: Incident, alert: Alert, asset: Asset | None, keys: tuple[str, ...]
    ) -> Incident:
        if alert.id in incident.alert_ids:
            return incident
        joined = lifecycle.with_alert(incident, alert, asset, keys)
        return self._settle(self._auto_aware(joined, alert, self.clock()))

    def _auto_aware(self, incident: Incident, alert: Alert, now: datetime) -> Incident:
        if incident.aware_at is not None or alert.route not in self.options.auto_aware_routes:
            return incident
        why = f"high-confidence route {alert.route}: {alert.route_reason}"
        return lifecycle.become_aware(incident, now, lifecycle.AGENT, why)

    def _settle(self, incident: Incident) -> Incident:
        """Re-assessed, with the correlation window running from its latest alert."""
        end = incident.last_seen + self.options.window
        return assess.refresh(
            incident.model_copy(update={"window_end": end}), self.entity, self.criteria
        )

    def change(self, incident_id: str, fn: Callable[[Incident], Incident]) -> Incident:
        """Apply a lifecycle change and re-assess, under the book's concurrency control."""
        full_id = self.book.get(incident_id).id  # analysts may give a unique prefix
        return self.book.update(full_id, lambda i: self._settle_same(fn(i), i))

    def _settle_same(self, after: Incident, before: Incident) -> Incident:
        return before if after == before else assess.refresh(after, self.entity, self.criteria)

    # --- from analysts -----------------------------------------------------

    def ack(self, incident_id: str, who: str, why: str, at: datetime | None = None) -> Incident:
        """Awareness, from `at` when the entity became aware before it was recorded."""
        now = self.clock()
        if at is not None and at > now:
            raise IncidentError(
                f"aware at {at.isoformat()}: that is later than now; give the moment the "
                "entity became aware of the incident"
            )
        return self.change(incident_id, lambda i: lifecycle.become_aware(i, now, who, why, at))

    def close(self, incident_id: str, who: str, why: str) -> Incident:
        now = self.clock()
        return self.change(incident_id, lambda i: lifecycle.close(i, now, who, why))

    def request(self, incident_id: str, ref: str, due: datetime, who: str) -> Incident:
        """A CSIRT or authority request for an intermediate report (NIS2 Art. 23(4)(c))."""
        now = self.clock()

        def add(i: Incident) -> Incident:
            if any(r.ref == ref for r in i.requests):
                raise IncidentError(f"request {ref} is already recorded on incident {i.id}")
            asked = Request(ref=ref, requested_at=now, due=due)
            why = f"intermediate report {ref} requested, due {_iso(due)}"
            return lifecycle.step(
                i, now, who, "report requested", why, requests=(*i.requests, asked)
            )

        return self.change(incident_id, add)

    def record_impact(
        self,
        incident_id: str,
        who: str,
        facts: dict[str, Any],
        narrative: dict[str, Any],
        gdpr: dict[str, str] | None = None,
    ) -> Incident:
        """Analyst facts and texts; personal data involved starts the GDPR 72-hour clock,
        from `gdpr["aware_at"]` (ISO) when the entity learnt of the breach before this."""
        assess.check_impact(facts)
        now = self.clock()
        aware = (gdpr or {}).get("aware_at")
        if aware is not None and datetime.fromisoformat(aware) > now:
            raise IncidentError(
                f"personal data breach known at {aware}: that is later than now; give the "
                "moment the entity became aware of it"
            )

        def apply(i: Incident) -> Incident:
            told = Narrative.model_validate({**i.narrative.model_dump(), **narrative})
            changes: dict[str, Any] = {"impact": {**i.impact, **facts}, "narrative": told}
            changes["gdpr"] = _gdpr(i.gdpr, {**i.impact, **facts}, gdpr or {}, now)
            said = ", ".join(f"{k}={v}" for k, v in {**facts, **narrative, **(gdpr or {})}.items())
            details = {"facts": facts, "narrative": narrative, "gdpr": gdpr or {}}
            return lifecycle.step(i, now, who, "impact recorded", said, details=details, **changes)

        return self.change(incident_id, apply)


# The reason recorded when the analyst says no personal data are involved after all.
NO_PERSONAL_DATA = "no personal data involved"


def _gdpr(
    current: Gdpr | None, facts: dict[str, Any], said: dict[str, str], now: datetime
) -> Gdpr | None:
    """The GDPR duty (Art. 33(1)): opened when personal data are involved, closed by the analyst."""
    involved = facts.get("personal_data_involved")
    given = said.get("aware_at")
    # Art. 33(1): 72 hours after becoming aware, which may be before it was recorded here.
    aware = datetime.fromisoformat(given) if given else now
    duty = current
    if duty is None and involved is True:
        duty = Gdpr(aware_at=aware, due=aware + assess.GDPR_WINDOW)
    elif duty is not None and given and aware != duty.aware_at:
        moved = {"aware_at": aware, "due": aware + assess.GDPR_WINDOW}
        duty = duty.model_copy(update={**moved, "corrections": duty.corrections + 1})
    if duty is None:
        if said:
            raise IncidentError(
                "no personal-data breach is recorded: add --personal-data yes first"
            )
        return None
    if involved is False and duty.status == "due":
        duty = duty.model_copy(update={"status": "not_required", "reason": NO_PERSONAL_DATA})
    if involved is True and duty.status == "not_required" and duty.reason == NO_PERSONAL_DATA:
        # A 'no' taken back: the duty is owed again, by the first awareness's 72 hours,
        # since the breach was known then. It stayed closed, and no reminder came.
        duty = duty.model_copy(update={"status": "due", "reason": None})
    if "gba_reference" in said:
        duty = duty.model_copy(
            update={"status": "notified", "reference": said["gba_reference"], "notified_at": now}
        )
    if "not_required" in said:
        # Art. 33(1): no notification when the breach is unlikely to result in a risk; the
        # reason stays in the record the entity must keep under Art. 33(5).
        duty = duty.model_copy(update={"status": "not_required", "reason": said["not_required"]})
    return duty
