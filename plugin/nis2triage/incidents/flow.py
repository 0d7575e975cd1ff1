"""The incident stage as the agent loop sees it: alerts in, then one watch per cycle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from nis2triage.assets import Asset
from nis2triage.config import AgentConfig
from nis2triage.incidents.desk import Desk
from nis2triage.incidents.record import Incident
from nis2triage.incidents.reporting import Reporter
from nis2triage.incidents.watch import Watchdog, WatchReport
from nis2triage.notify.notifier import Notifier
from nis2triage.notify.soc import Soc
from nis2triage.records import Alert
from nis2triage.reports.stages import BY_REPORT
from nis2triage.store import Store


@dataclass(frozen=True)
class CycleWatch:
    synced: int
    watch: WatchReport


class IncidentFlow:
    def __init__(
        self,
        cfg: AgentConfig,
        store: Store,
        notifier: Notifier,
        clock: Callable[[], datetime],
    ) -> None:
        self.soc = Soc(store, clock)
        self.desk = Desk(cfg, store, clock)
        self.reporter = Reporter(self.desk, store.es, notifier, self.soc, clock)
        self.watchdog = Watchdog(self.desk, self.soc)

    def take(self, routed: list[tuple[Alert, Asset | None]]) -> int:
        """File the alerts; queue early warnings where the agent made an incident aware."""
        return sum(self._early_warning(i) for i in self.desk.take(routed))

    def _early_warning(self, incident: Incident) -> bool:
        aware = [t for t in incident.history if t.action == "aware"]
        auto = bool(aware) and aware[0].who == "nis2triage"
        verdict = incident.significance.verdict if incident.significance else "undetermined"
        if not (self.desk.options.auto_early_warning and auto) or verdict == "not_significant":
            return False
        if "early_warning" in incident.reports:
            return False
        _, _, new = self.reporter.queue(incident, BY_REPORT["early_warning"], "nis2triage")
        return new

    def cycle(self, now: datetime) -> CycleWatch:
        """Follow deliveries into the incidents, then escalate near and missed deadlines."""
        self._catch_up()
        synced = self.reporter.sync()
        return CycleWatch(synced, self.watchdog.run(now))

    def _catch_up(self) -> None:
        """Early warnings the agent owed but did not queue: it stopped between opening (or
        making aware) an incident and queuing its report, and a replayed alert changes nothing."""
        for incident in self.desk.book.each({"term": {"pending": "early_warning"}}):
            self._early_warning(incident)
