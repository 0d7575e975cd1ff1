"""The incident as stored in `<prefix>-incidents`: a frozen record, replaced whole on change.

Every change goes through nis2triage.incidents.lifecycle, which returns a new
record with one more `Transition` in its history; the history is copied into
the append-only `<prefix>-audit` index.
"""

from __future__ import annotations

import typing
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from nis2triage.records import Alert, Route, Severity

Status = Literal[
    "detected",
    "triaged",
    "aware",
    "early_warning_sent",
    "incident_notification_sent",
    "intermediate_report_sent",
    "progress_report_sent",
    "final_report_sent",
    "closed",
]
STATUS_ORDER: tuple[Status, ...] = typing.get_args(Status)
StageStatus = Literal["queued", "dry-run", "sent", "awaiting_submission", "failed"]
GDPR_KEY = "gdpr_breach_notification"
# Reports whose delivery the agent still follows in the outbox.
OPEN_REPORT = ("queued", "awaiting_submission")
# Followed into the outbox as well once the notifier sends: a dry run's report that
# `incidents report` queued again may be delivered before the incident records it.
FOLLOWED_REPORT = (*OPEN_REPORT, "dry-run")
# An incident keeps the first detections in full; later ones are counted, their IoCs merged.
MAX_ALERTS = 200


def later_status(current: Status, reached: Status) -> Status:
    """Reports can arrive out of order; the status only moves forward (closed stays closed)."""
    return max(current, reached, key=STATUS_ORDER.index)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AlertSummary(_Record):
    """What an incident keeps of each alert: enough for the report, its IoCs and its chart."""

    id: str
    name: str
    kind: str
    severity: Severity
    timestamp: AwareDatetime
    start: AwareDatetime
    end: AwareDatetime
    score: float
    threshold: float
    entity_field: str
    entity: str
    message: str
    route: Route | None
    route_reason: str | None
    index_pattern: str
    query: str
    events: int | None = None
    tags: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()

    @classmethod
    def of(cls, alert: Alert) -> AlertSummary:
        events = alert.evidence.get("events")
        return cls(
            **{k: getattr(alert, k) for k in cls.model_fields if k not in ("id", "events")},
            id=alert.id,
            events=int(events) if isinstance(events, int | float) else None,
        )


class AssetView(_Record):
    """An inventory asset the incident touches, with what the significance criteria need."""

    name: str
    criticality: str
    service: str | None = None
    service_type: str | None = None
    users_served: int | None = None
    cross_border: bool | None = None


class Transition(_Record):
    """One step of the lifecycle: who did what, when and why."""

    seq: int
    at: AwareDatetime
    who: str
    action: str
    from_status: Status | None
    to_status: Status
    why: str
    details: dict[str, Any] = Field(default_factory=dict)


class StageReport(_Record):
    """One report to the authority and where its delivery stands."""

    key: str
    report: str
    outbox_id: str
    status: StageStatus
    queued_at: AwareDatetime
    by: str
    sent_at: AwareDatetime | None = None
    channel: str | None = None
    reference: str | None = None


class Narrative(_Record):
    """What the analyst writes for the notification and final report (Art. 23(4)(b), (d))."""

    description: str | None = None
    threat_type: str | None = None
    root_cause: str | None = None
    mitigation_applied: str | None = None
    mitigation_ongoing: str | None = None
    member_states: tuple[str, ...] = ()


class Gdpr(_Record):
    """The separate personal-data breach duty towards the GBA/APD (GDPR Art. 33(1)): 72 hours."""

    aware_at: AwareDatetime
    due: AwareDatetime
    status: Literal["due", "notified", "not_required"] = "due"
    reference: str | None = None
    notified_at: AwareDatetime | None = None
    reason: str | None = None
    # How often the analyst moved `aware_at` once the duty was open (`impact
    # --personal-data-at`); each move of the due says the reminder again (`Soc.raise_once`).
    corrections: int = 0


class Criterion(_Record):
    id: str
    source: str
    evidence: str


class SignificanceView(_Record):
    verdict: str
    entity_kind: str
    met: tuple[Criterion, ...] = ()
    missing: tuple[str, ...] = ()
    undecided: tuple[str, ...] = ()
    excluded_by: Criterion | None = None


class DeadlineView(_Record):
    report: str
    key: str
    due: AwareDatetime
    basis: str
    source: str


class Request(_Record):
    """A CSIRT or authority request for an intermediate report (NIS2 Art. 23(4)(c))."""

    ref: str
    requested_at: AwareDatetime
    due: AwareDatetime


class Incident(_Record):
    id: str
    title: str
    status: Status
    opened_at: AwareDatetime
    last_seen: AwareDatetime
    window_end: AwareDatetime
    keys: tuple[str, ...]
    alert_ids: tuple[str, ...]
    alerts: tuple[AlertSummary, ...]
    routes: tuple[str, ...] = ()
    assets: tuple[AssetView, ...] = ()
    ips: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    aware_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None
    impact: dict[str, Any] = Field(default_factory=dict)
    narrative: Narrative = Narrative()
    requests: tuple[Request, ...] = ()
    gdpr: Gdpr | None = None
    significance: SignificanceView | None = None
    deadlines: tuple[DeadlineView, ...] = ()
    reports: dict[str, StageReport] = Field(default_factory=dict)
    pending: tuple[str, ...] = ()
    overdue: tuple[str, ...] = ()
    history: tuple[Transition, ...] = ()

    @property
    def alert_count(self) -> int:
        return len(self.alert_ids)

    @property
    def services(self) -> list[str]:
        return sorted({a.service for a in self.assets if a.service})

    def delivered(self) -> set[str]:
        """Report keys the authority has (or the GBA has, for the GDPR duty)."""
        done = {k for k, r in self.reports.items() if r.status == "sent"}
        if self.gdpr is not None and self.gdpr.status != "due":
            done.add(GDPR_KEY)
        return done

    def to_doc(self, now: datetime) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        doc["@timestamp"] = now.isoformat()
        doc["alert_count"] = self.alert_count
        doc["services"] = self.services
        doc["open_reports"] = [k for k, r in self.reports.items() if r.status in FOLLOWED_REPORT]
        # The dashboard sorts on it, and `status` calls the incident overdue once it passed.
        due = self.next_due()
        doc["next_due"] = due.isoformat() if due is not None else None
        return doc

    def next_due(self) -> datetime | None:
        """The earliest deadline of a report still owed. Owed means pending too: a report
        another discharged (the notification sent before the early warning's deadline) has
        no delivery of its own, yet nothing more is owed for it."""
        delivered = self.delivered()
        owed = [d.due for d in self.deadlines if d.key in self.pending and d.key not in delivered]
        return min(owed, default=None)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Incident:
        fields = {k: v for k, v in doc.items() if k in cls.model_fields}
        return cls.model_validate(fields)
