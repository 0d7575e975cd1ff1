"""The deadline watchdog, run once per agent cycle.

For every incident with a report still due it asks nis2triage.nis2.clocks
which deadlines are near (within `escalate_before`, 6 hours by default) or
past, escalates each to the SOC once (a WARNING line and a document in
`<prefix>-escalations`), and marks past ones on the incident as overdue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from nis2triage.incidents import lifecycle
from nis2triage.incidents.desk import Desk
from nis2triage.incidents.record import GDPR_KEY, DeadlineView, Incident
from nis2triage.nis2 import clocks
from nis2triage.nis2.brussels import show
from nis2triage.notify.soc import Soc

log = logging.getLogger(__name__)
# How far in the future a recorded moment may lie before the clock is taken to have been
# set back: NTP's small steps and two machines' drift stay below it.
CLOCK_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class WatchReport:
    watched: int = 0
    near: int = 0  # escalations raised this time
    overdue: int = 0


def _deadline(view: DeadlineView) -> clocks.Deadline:
    report, _, ref = view.key.partition(":")
    return clocks.Deadline(
        cast(clocks.Report, report), view.due, view.basis, view.source, ref or None
    )


def label(key: str) -> str:
    if key == GDPR_KEY:
        return "GDPR notification to the GBA/APD"
    return key.replace("_", " ")


class Watchdog:
    def __init__(self, desk: Desk, soc: Soc) -> None:
        self.desk = desk
        self.soc = soc

    def run(self, now: datetime) -> WatchReport:
        watched = near = overdue = 0
        for incident in self.desk.book.each({"exists": {"field": "pending"}}):
            watched += 1
            watch = clocks.watchdog(
                [_deadline(d) for d in incident.deadlines],
                incident.delivered() | _discharged(incident),
                now,
                self.desk.options.escalate_before,
            )
            self._no_longer_overdue(incident, watch.overdue, now)
            self._gdpr_reminder(incident)
            self._aware_in_the_future(incident, now)
            near += sum(self._near(incident, d) for d in watch.near)
            overdue += sum(self._overdue(incident, d, now) for d in watch.overdue)
        return WatchReport(watched, near, overdue)

    def _gdpr_reminder(self, incident: Incident) -> None:
        """Once per incident with personal data: the CCB report does not discharge the GDPR one."""
        duty = incident.gdpr
        if duty is None or duty.status != "due":
            return
        message = (
            f"personal data involved: notify the GBA/APD by {show(duty.due)} "
            "(GDPR Art. 33(1)), separately from the CCB, through its web form"
        )
        # Said again when the analyst moved the awareness, and with it the due (`raise_once`).
        if not self.soc.raise_once("gdpr_reminder", incident.id, GDPR_KEY, message, duty.due):
            return
        # The near and overdue escalations said the due before: taken back, and said again
        # by this pass if they still hold.
        moved = f"{label(GDPR_KEY)} now due {show(duty.due)}"
        for kind in ("deadline_near", "deadline_overdue"):
            self.soc.withdraw(kind, incident.id, GDPR_KEY, moved, unless_due=duty.due)

    def _aware_in_the_future(self, incident: Incident, now: datetime) -> None:
        """Awareness recorded later than now: the clock was ahead when it was recorded (a
        bad hardware clock after a reboot), so every deadline counted from it is late too."""
        if incident.aware_at is None or incident.aware_at <= now + CLOCK_SLACK:
            return
        message = (
            f"became aware at {show(incident.aware_at)}, later than now ({show(now)}): this "
            "machine's clock was ahead and has been set back, so its deadlines are counted "
            "from the wrong moment; check them with `nis2triage incidents show` and report "
            "by the real ones"
        )
        self.soc.raise_once("clock_stepped_back", incident.id, "aware_at", message)

    def _near(self, incident: Incident, deadline: clocks.Deadline) -> bool:
        message = f"{label(deadline.key)} due {show(deadline.due)} and not delivered yet"
        return self.soc.raise_once(
            "deadline_near", incident.id, deadline.key, message, deadline.due
        )

    def _overdue(self, incident: Incident, deadline: clocks.Deadline, now: datetime) -> bool:
        message = f"{label(deadline.key)} was due {show(deadline.due)}: OVERDUE, not delivered"
        raised = self.soc.raise_once(
            "deadline_overdue", incident.id, deadline.key, message, deadline.due
        )
        if raised:
            # Near by a due since moved earlier (`ack --at`): it said the wrong one.
            moved = f"{label(deadline.key)} now due {show(deadline.due)}"
            self.soc.withdraw(
                "deadline_near", incident.id, deadline.key, moved, unless_due=deadline.due
            )
        if deadline.key not in incident.overdue:
            self.desk.change(incident.id, lambda i: _mark_overdue(i, deadline, now))
        return raised

    def _no_longer_overdue(
        self, incident: Incident, overdue: tuple[clocks.Deadline, ...], now: datetime
    ) -> None:
        """Deadlines marked overdue whose due an analyst has since moved later (a mistyped
        breach awareness corrected): unmarked, and their escalations taken back, which
        said OVERDUE by a due that no longer holds."""
        past = {d.key for d in overdue}
        for view in incident.deadlines:
            # Not for a clock set back a few seconds past a due: it was missed all the same.
            moved = view.due > now + CLOCK_SLACK
            if view.key in incident.overdue and view.key not in past and moved:
                self._unmark(incident.id, view, now)

    def _unmark(self, incident_id: str, view: DeadlineView, now: datetime) -> None:
        why = f"{label(view.key)} now due {show(view.due)}: no longer overdue"
        for kind in ("deadline_overdue", "deadline_near"):
            self.soc.withdraw(kind, incident_id, view.key, why)

        def unmarked(incident: Incident) -> Incident:
            if view.key not in incident.overdue:
                return incident
            overdue = tuple(k for k in incident.overdue if k != view.key)
            return lifecycle.step(
                incident, now, lifecycle.AGENT, "deadline moved", why, overdue=overdue
            )

        self.desk.change(incident_id, unmarked)


def _discharged(incident: Incident) -> set[str]:
    """Keys the watchdog must not chase though not delivered themselves (see assess.pending)."""
    return {d.key for d in incident.deadlines} - set(incident.pending)


def _mark_overdue(incident: Incident, deadline: clocks.Deadline, now: datetime) -> Incident:
    if deadline.key in incident.overdue or deadline.key not in incident.pending:
        return incident
    why = f"{label(deadline.key)} was due {show(deadline.due)} ({deadline.source})"
    overdue = (*incident.overdue, deadline.key)
    return lifecycle.step(incident, now, lifecycle.AGENT, "deadline missed", why, overdue=overdue)
