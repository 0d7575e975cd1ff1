"""Reports on incidents: built, minimised, queued once per stage, and followed to delivery.

One idempotency key per report: a hash of the incident, the stage and (for
intermediate reports) the request. Queuing the same stage again finds the
outbox entry there and changes nothing. A stage counts as sent only when a
channel confirmed it (`sent_at` in the outbox) or a person recorded the
submission on the CCB's platform with its reference.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from elasticsearch import Elasticsearch

from nis2triage.assets import Inventory, load_inventory
from nis2triage.errors import IncidentError
from nis2triage.incidents import lifecycle
from nis2triage.incidents.desk import Desk
from nis2triage.incidents.record import (
    OPEN_REPORT,
    Incident,
    StageReport,
    StageStatus,
    Status,
    later_status,
)
from nis2triage.notify.notifier import Notifier
from nis2triage.notify.pseudonym import Written, keyed_id, named_in
from nis2triage.notify.soc import Soc
from nis2triage.reports import chart, content
from nis2triage.reports.stages import BY_REPORT, Stage

log = logging.getLogger(__name__)
# What becomes of account and host names in text an analyst wrote (`Reporter.payload`).
Names = Literal["refuse", "keep", "replace"]


def report_key(
    incident_id: str, stage: Stage, ref: str | None, secret: bytes | None = None
) -> tuple[str, str]:
    """(deadline key, idempotency key) of one report.

    The idempotency key leaves the organisation (Idempotency-Key, Message-ID), so with a
    pseudonym key it is keyed: a plain hash of the incident id could be confirmed by
    guessing the address and the window the incident id is a hash of."""
    deadline_key = f"{stage.report}:{ref}" if ref else stage.report
    return deadline_key, keyed_id(secret, "report", incident_id, deadline_key)


class Reporter:
    def __init__(
        self,
        desk: Desk,
        es: Elasticsearch,
        notifier: Notifier,
        soc: Soc,
        clock: Callable[[], datetime],
    ) -> None:
        self.desk = desk
        self.es = es
        self.notifier = notifier
        self.soc = soc
        self.clock = clock
        self.time_fields = {",".join(s.indices): s.time_field for s in desk.cfg.sources}
        pseudonymiser = notifier.pseudonymiser
        self.secret = pseudonymiser.key if pseudonymiser is not None else None

    def queue(
        self,
        incident: Incident,
        stage: Stage,
        who: str,
        ref: str | None = None,
        names: Names = "replace",
        remake: bool = False,
    ) -> tuple[Incident, str, bool]:
        """Build and queue one report; (incident, idempotency key, whether it is new).

        `names`: what becomes of an account or host name of the incident that text an
        analyst wrote holds (see `payload`). `remake`: a report already made in dry-run
        is made again from the incident as it stands (an analyst asking again), where
        otherwise the first one stands.
        """
        lifecycle.require_aware(incident, "report")
        _check_order(incident, stage, ref)
        deadline_key, key = report_key(incident.id, stage, ref, self.secret)
        made = incident.reports.get(deadline_key)
        if made is not None and made.status == "dry-run" and self.notifier.mode == "send":
            return self._send_dry_run(incident, stage, who, ref, names, made)
        if made is not None and made.status == "dry-run" and remake:
            return self._remake_dry_run(incident, stage, who, ref, names, made)
        if made is not None:
            return incident, key, False
        body = self.payload(incident, stage, who, key, ref, names)
        meta = {"incident_id": incident.id, "stage": deadline_key}
        new = self.notifier.queue(key, "incident_report", body, meta)
        status: StageStatus = "dry-run" if self.notifier.mode == "dry-run" else "queued"
        found = None if new else self.notifier.entry(key)
        if found is not None and found.get("status") == "dry-run":
            # Made in dry-run by a run that stopped before recording it: recorded as what
            # it is, so that `incidents report` can send it (see `_send_dry_run`).
            status = "dry-run"
        entry = StageReport(
            key=deadline_key, report=stage.report, outbox_id=key, status=status,
            queued_at=self.clock(), by=who,
        )  # fmt: skip
        why = f"{stage.label} queued for {', '.join(self.notifier.channels)} ({status})"
        updated = self.desk.change(incident.id, lambda i: _with_report(i, entry, who, why))
        return updated, key, new

    def _send_dry_run(
        self,
        incident: Incident,
        stage: Stage,
        who: str,
        ref: str | None,
        names: Names,
        made: StageReport,
    ) -> tuple[Incident, str, bool]:
        """A report made while the notifier was in dry-run, asked for again now that it
        sends: made again (the incident as it stands) and queued under the same key.

        Once only: if the outbox entry is no longer a dry run (queued again by a command
        that stopped before recording it), it is recorded as queued, for `sync` to
        follow, and not queued a second time."""
        body = self.payload(incident, stage, who, made.outbox_id, ref, names)
        new = self.notifier.requeue(made.outbox_id, body)
        queued = made.model_copy(update={"status": "queued", "queued_at": self.clock(), "by": who})
        why = f"{stage.label} made in dry-run, queued for {', '.join(self.notifier.channels)}"

        def requeue(i: Incident) -> Incident:
            reports = {**i.reports, made.key: queued}
            return lifecycle.step(i, queued.queued_at, who, "report queued", why, reports=reports)

        return self.desk.change(incident.id, requeue), made.outbox_id, new

    def _remake_dry_run(
        self,
        incident: Incident,
        stage: Stage,
        who: str,
        ref: str | None,
        names: Names,
        made: StageReport,
    ) -> tuple[Incident, str, bool]:
        """A dry-run report made again, still a dry run, under the same key: the names
        check runs on the new text, and the report files show what was recorded since."""
        body = self.payload(incident, stage, who, made.outbox_id, ref, names)
        if not self.notifier.remake(made.outbox_id, body):
            return incident, made.outbox_id, False
        remade = made.model_copy(update={"queued_at": self.clock(), "by": who})
        why = f"{stage.label} made again (dry-run)"

        def record(i: Incident) -> Incident:
            reports = {**i.reports, made.key: remade}
            return lifecycle.step(
                i, remade.queued_at, who, "report made again", why, reports=reports
            )

        return self.desk.change(incident.id, record), made.outbox_id, False

    def payload(
        self,
        incident: Incident,
        stage: Stage,
        who: str,
        key: str,
        ref: str | None,
        names: Names = "replace",
    ) -> dict[str, Any]:
        """The report as it leaves the organisation: addresses, user and host names
        pseudonymised, but for the attackers' addresses (`lifecycle.attacker_addresses`,
        unless notifier.keep_attacker_addresses is off). What an analyst wrote keeps its
        words (an account called `root` is also a word), so an account or host name of
        the incident in it is, by `names`:
        refused before anything is queued (`incidents report`), kept as written (with
        --names-ok) or replaced as well (the agent's own reports, which no person saw)."""
        drawn = chart.gather(self.es, incident, self.time_fields)
        body = content.build(
            stage, incident, self.desk.entity, key=key, now=self.clock(), who=who,
            tlp=self.desk.options.tlp, chart=drawn, ref=ref,
        )  # fmt: skip
        users, hosts = lifecycle.named_entities(incident)
        everywhere = False
        if self.notifier.pseudonymiser is not None:
            everywhere = _check_names_written(incident.id, body, [*users, *hosts], names)
        return self.notifier.minimise(
            body, users, hosts, content.AS_IS, content.WRITTEN, names_everywhere=everywhere,
            kept_addresses=self._attackers(incident),
        )  # fmt: skip

    def _attackers(self, incident: Incident) -> list[str]:
        if not self.desk.cfg.notifier.keep_attacker_addresses:
            return []
        return lifecycle.attacker_addresses(incident, self.inventory)

    @cached_property
    def inventory(self) -> Inventory:
        cfg = self.desk.cfg
        return load_inventory(cfg.resolve(cfg.assets) if cfg.assets else None)

    def sync(self) -> int:
        """Mark reports the outbox has confirmed, handed over or given up; how many changed."""
        changed = self.adopt()
        open_ones = self.desk.book.find({"exists": {"field": "open_reports"}}, size=500)
        for incident in open_ones:
            for key, report in incident.reports.items():
                sending = report.status == "dry-run" and self.notifier.mode == "send"
                if report.status in OPEN_REPORT or sending:
                    changed += self._follow(incident.id, key, report)
        return changed

    def adopt(self) -> int:
        """Reports in the outbox that their incident does not know of: the agent stopped
        between queuing one and recording it. Their keys are deterministic, so look them up."""
        adopted = 0
        for incident in self.desk.book.find({"exists": {"field": "pending"}}, size=1000):
            for key in incident.pending:
                report, _, ref = key.partition(":")
                if key in incident.reports or report not in BY_REPORT:
                    continue
                _, outbox_id = report_key(incident.id, BY_REPORT[report], ref or None, self.secret)
                entry = self.notifier.entry(outbox_id)
                if entry is not None:
                    adopted += self._adopt(incident.id, key, report, outbox_id, entry)
        return adopted

    def _adopt(
        self, incident_id: str, key: str, report: str, outbox_id: str, entry: dict[str, Any]
    ) -> int:
        status: StageStatus = "dry-run" if entry["status"] == "dry-run" else "queued"
        queued_at = datetime.fromisoformat(entry["created"])
        found = StageReport(key=key, report=report, outbox_id=outbox_id, status=status,
                            queued_at=queued_at, by=lifecycle.AGENT)  # fmt: skip
        why = f"{BY_REPORT[report].label} found queued in the outbox after a restart"
        self.desk.change(incident_id, lambda i: _with_report(i, found, lifecycle.AGENT, why))
        log.warning("incident %s: %s was queued but not recorded; recorded now", incident_id, key)
        return 1

    def _follow(self, incident_id: str, key: str, report: StageReport) -> int:
        now = self.clock()
        entry = self.notifier.entry(report.outbox_id)
        if entry is None:
            return 0
        if entry.get("sent_at"):
            channels = [n for n, d in entry.get("deliveries", {}).items() if d["status"] == "sent"]
            at = datetime.fromisoformat(entry["sent_at"])
            self.desk.change(
                incident_id, lambda i: mark_sent(i, key, at, ", ".join(channels), None)
            )
            return 1
        if entry.get("status") == "handed_over" and report.status in ("queued", "dry-run"):
            self.desk.change(incident_id, lambda i: _mark(i, key, "awaiting_submission", now))
            return 1
        if entry.get("status") == "failed":
            self.desk.change(incident_id, lambda i: _mark(i, key, "failed", now))
            self.soc.raise_once(
                "delivery_failed", incident_id, key,
                f"{key} could not be delivered ({entry.get('last_error')}); submit it by hand",
            )  # fmt: skip
            return 1
        return 0

    def unsent_dry_runs(self, since: datetime) -> list[dict[str, Any]]:
        """Reports made in dry-run since `since` that no one has sent since: one recorded
        as submitted on the CCB's platform (or sent once the mode changed) is left out."""
        unsent = []
        for entry in self.notifier.dry_runs(since):
            try:
                reports = self.desk.book.get(str(entry.get("incident_id", ""))).reports
            except IncidentError:
                reports = {}  # the incident is gone: the entry is said as it is
            report = reports.get(str(entry.get("stage", "")))
            if report is None or report.status != "sent":
                unsent.append(entry)
        return unsent

    def submitted(
        self,
        incident_id: str,
        stage: Stage,
        who: str,
        reference: str,
        ref: str | None = None,
        at: datetime | None = None,
    ) -> Incident:
        """A person submitted the report on the CCB's platform, `at` (None: now); its
        reference is recorded. The moment counts: the final report is due a month after
        the notification's submission (Art. 23(4)(d)), not after it was recorded here."""
        incident_id = self.desk.book.get(incident_id).id
        deadline_key, _ = report_key(incident_id, stage, ref, self.secret)
        now = self.clock()
        when = at or now
        if when > now:
            raise IncidentError(f"{stage.label} submitted at {when.isoformat()}: that is later "
                                "than now; give the moment it was submitted")  # fmt: skip

        def record(i: Incident) -> Incident:
            if deadline_key not in i.reports:
                raise IncidentError(
                    f"no {stage.label.lower()} was made for {i.id}; run `incidents report` first"
                )
            made = i.reports[deadline_key].queued_at
            if when < made:
                raise IncidentError(
                    f"{stage.label} submitted at {when.isoformat()}: that is before it was made "
                    f"({made.isoformat()}); give the moment it was submitted on the platform"
                )
            return mark_sent(i, deadline_key, when, "manual", reference, who, recorded_at=now)

        incident = self.desk.change(incident_id, record)
        self.notifier.submitted_by_hand(incident.reports[deadline_key].outbox_id, who, reference)
        return incident


def _check_order(incident: Incident, stage: Stage, ref: str | None) -> None:
    if stage.report == "final_report" and "incident_notification" not in incident.reports:
        raise IncidentError(
            "the final report follows the incident notification (NIS2 Art. 23(4)(d)): "
            "make the notification first"
        )
    if stage.report == "intermediate_report" and not ref:
        raise IncidentError("an intermediate report answers a request: give --request REF")
    if ref and stage.report != "intermediate_report":
        # A request reference would make the stage a new report, under a new key: the
        # CCB would receive the same stage twice.
        raise IncidentError(
            f"--request belongs to intermediate reports; the {stage.label.lower()} is made "
            "once per incident: leave --request out"
        )
    if stage.report == "final_report" and incident.closed_at is None:
        # Sent while open, it would count as delivered and the final report due a month
        # after handling ends (Art. 23(4)(e)) would never be asked for.
        raise IncidentError(
            "the incident is still open: send a progress report now (NIS2 Art. 23(4)(e)), "
            "and the final report once handling has ended; if it has, close the incident "
            "first with `nis2triage incidents close`"
        )
    if stage.report == "progress_report" and incident.closed_at is not None:
        raise IncidentError(
            "the incident is closed: send the final report instead of a progress report"
        )


def _check_names_written(
    incident_id: str, body: dict[str, Any], names: list[str], policy: Names
) -> bool:
    """Which account or host names of the incident the analyst's text holds, and what
    `policy` does with them: refuse (before the report is queued, so the choice comes
    first), keep or replace them. True when they are to be replaced."""
    notes = {f"timeline ({s['action']})": s["why"] for s in body.get("timeline", [])}
    texts = {key: body.get(key) for key in content.WRITTEN} | {
        key: note for key, note in notes.items() if isinstance(note, Written)
    }
    found = {key: named_in(str(text or ""), names) for key, text in texts.items()}
    found = {key: named for key, named in found.items() if named}
    if found and policy == "refuse":
        where = "; ".join(f"{key} names {', '.join(named)}" for key, named in found.items())
        raise IncidentError(
            f"nothing queued: the report's {where}, in clear (text an analyst writes is sent "
            "as written, addresses aside); reword it with `nis2triage incidents impact` if "
            "these are people, or run this again with --names-ok to send them as written"
        )
    done = "replaced by pseudonyms" if policy == "replace" else "sent in clear"
    for key, named in found.items():
        log.warning(
            "incident %s: the report's %s names %s, %s (reword it with `nis2triage "
            "incidents impact` if these are people)",
            incident_id,
            key,
            ", ".join(named),
            done,
        )
    return bool(found) and policy == "replace"


def _with_report(incident: Incident, entry: StageReport, who: str, why: str) -> Incident:
    if entry.key in incident.reports:
        return incident
    reports = {**incident.reports, entry.key: entry}
    return lifecycle.step(incident, entry.queued_at, who, "report queued", why, reports=reports)


def _mark(incident: Incident, key: str, status: StageStatus, now: datetime) -> Incident:
    report = incident.reports[key]
    if report.status == status:
        return incident
    reports = {**incident.reports, key: report.model_copy(update={"status": status})}
    why = f"{key}: {status.replace('_', ' ')}"
    action = f"report {status.replace('_', ' ')}"
    return lifecycle.step(incident, now, lifecycle.AGENT, action, why, reports=reports)


def mark_sent(
    incident: Incident,
    key: str,
    at: datetime,
    channel: str,
    reference: str | None,
    who: str = lifecycle.AGENT,
    recorded_at: datetime | None = None,
) -> Incident:
    """`incident` with the report `key` sent `at`; the history says so at `recorded_at`
    (a submission by hand recorded after it was made), by default `at`."""
    report = incident.reports[key]
    if report.status == "sent":
        return incident
    sent = report.model_copy(
        update={"status": "sent", "sent_at": at, "channel": channel, "reference": reference}
    )
    reports = {**incident.reports, key: sent}
    target = later_status(incident.status, _sent_status(report.report))
    why = f"{BY_REPORT[report.report].label} delivered over {channel}" + (
        f", reference {reference}" if reference else ""
    )
    if recorded_at is not None and recorded_at != at:
        why += f", submitted at {at.isoformat()}"
    moment = recorded_at or at
    return lifecycle.step(incident, moment, who, "report sent", why, to=target, reports=reports)


def _sent_status(report: str) -> Status:
    statuses: dict[str, Status] = {
        "early_warning": "early_warning_sent",
        "incident_notification": "incident_notification_sent",
        "intermediate_report": "intermediate_report_sent",
        "progress_report": "progress_report_sent",
        "final_report": "final_report_sent",
    }
    return statuses[report]
