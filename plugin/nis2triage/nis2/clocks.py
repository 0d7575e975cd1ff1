"""When each NIS2 report on a significant incident is due, and which deadlines need a nudge.

The clock starts when the entity becomes aware of the significant incident
(NIS2 Art. 23(4); IR recital 31). Hour limits are elapsed hours, so a
daylight-saving change moves the wall-clock time shown, not the instant.
Every deadline is a maximum: "without undue delay" applies first.
Nothing here reads the system clock; callers pass `now`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from nis2triage.nis2.brussels import add_months, local_days_later, require_aware, show
from nis2triage.nis2.entity import Entity

Report = Literal[
    "early_warning",
    "incident_notification",
    "intermediate_report",
    "progress_report",
    "final_report",
]
EARLY_WARNING = timedelta(hours=24)
NOTIFICATION = timedelta(hours=72)
NOTIFICATION_TSP = timedelta(hours=24)
DEFAULT_MARGIN = timedelta(hours=6)


@dataclass(frozen=True)
class IntermediateRequest:
    """A CSIRT or authority request for a status update (NIS2 Art. 23(4)(c)); it sets the date."""

    ref: str
    requested_at: datetime
    due: datetime


@dataclass(frozen=True)
class Deadline:
    report: Report
    due: datetime  # UTC
    basis: str  # how the date was reached, for the analyst
    source: str  # the legal provision
    ref: str | None = None

    @property
    def key(self) -> str:
        """What a delivery record names: the report, plus the request for intermediate ones."""
        return f"{self.report}:{self.ref}" if self.ref else self.report

    def describe(self) -> str:
        return f"{self.key} due {show(self.due)} ({self.basis}; {self.source})"


@dataclass(frozen=True)
class Watch:
    near: tuple[Deadline, ...]  # due within the margin: escalate
    overdue: tuple[Deadline, ...]


def one_month_after(moment: datetime) -> datetime:
    """The earliest reading of "one month" (the project's legal notes, nis2-reporting.md
    section 3, leave it unconfirmed; docs/nis2.md says the same to users).

    Readings: a calendar month on the Brussels wall clock (day clamped), 30
    elapsed days, and 30 calendar days on the wall clock; the last two differ
    by an hour across a daylight-saving change.
    """
    start = require_aware(moment, "moment")
    return min(add_months(start, 1), start + timedelta(days=30), local_days_later(start, 30))


def deadlines(
    entity: Entity,
    aware_at: datetime,
    *,
    notification_sent_at: datetime | None = None,
    handled_at: datetime | None = None,
    requests: Iterable[IntermediateRequest] = (),
    affects_trust_services: bool | None = None,
) -> tuple[Deadline, ...]:
    """Every report due for one significant incident, earliest first.

    `handled_at` None means the incident is still open. `affects_trust_services`:
    whether the incident affects a trust service, which the 24-hour notification of
    NIS2 Art. 23(4)(b) covers; None takes the entity's type (a trust service provider's
    incidents are taken to affect its trust services).
    """
    aware = require_aware(aware_at, "aware_at")
    notification = _notification(entity, aware, affects_trust_services)
    sent = _optional(notification_sent_at, "notification_sent_at")
    handled = _optional(handled_at, "handled_at")

    due = [
        Deadline("early_warning", aware + EARLY_WARNING, "awareness + 24 h", "NIS2 Art. 23(4)(a)"),
        notification,
        *_closing_reports(notification.due, sent, handled),
        *(_intermediate(r) for r in requests),
    ]
    return tuple(sorted(due, key=lambda d: d.due))


def _optional(moment: datetime | None, name: str) -> datetime | None:
    return None if moment is None else require_aware(moment, name)


def _notification(entity: Entity, aware: datetime, affects_trust_services: bool | None) -> Deadline:
    on_trust = (
        entity.trust_service_provider if affects_trust_services is None else affects_trust_services
    )
    if on_trust:
        basis = "awareness + 24 h (trust service provider)"
        return Deadline(
            "incident_notification", aware + NOTIFICATION_TSP, basis, "NIS2 Art. 23(4)(b)"
        )
    basis = "awareness + 72 h"
    return Deadline("incident_notification", aware + NOTIFICATION, basis, "NIS2 Art. 23(4)(b)")


def _closing_reports(
    notification_due: datetime, sent: datetime | None, handled: datetime | None
) -> list[Deadline]:
    """The final report, or a progress report and then the final one if the incident runs on."""
    # Art. 23(4)(d) counts from submission; before it is sent, from its latest allowed moment.
    start, after = (sent, "notification sent") if sent else (notification_due, "notification due")
    final_due = one_month_after(start)
    basis = f"one month after the {after}, earliest reading"
    if handled is not None and handled <= final_due:
        return [Deadline("final_report", final_due, basis, "NIS2 Art. 23(4)(d)")]

    progress_basis = f"{basis}; incident still open then"
    progress = Deadline("progress_report", final_due, progress_basis, "NIS2 Art. 23(4)(e)")
    if handled is None:
        # The final report's date depends on when handling ends; it is unknown until then.
        return [progress]
    final_basis = "one month after handling ended, earliest reading"
    return [
        progress,
        Deadline("final_report", one_month_after(handled), final_basis, "NIS2 Art. 23(4)(e)"),
    ]


def _intermediate(request: IntermediateRequest) -> Deadline:
    due = require_aware(request.due, "request.due")
    basis = f"requested {show(require_aware(request.requested_at, 'request.requested_at'))}"
    return Deadline("intermediate_report", due, basis, "NIS2 Art. 23(4)(c)", request.ref)


def watchdog(
    due: Iterable[Deadline],
    delivered: Collection[str],
    now: datetime,
    margin: timedelta = DEFAULT_MARGIN,
) -> Watch:
    """Undelivered deadlines now within `margin` of falling due, and those already past.

    A report is on time up to and including its due instant; `delivered` holds
    Deadline.key values.
    """
    moment = require_aware(now, "now")
    pending = [d for d in due if d.key not in delivered]
    overdue = tuple(d for d in pending if moment > d.due)
    near = tuple(d for d in pending if d.due - margin <= moment <= d.due)
    return Watch(near, overdue)
