"""From early-warning alerts to outbox entries, one per entity and window.

Alerts for the same entity within `group_window` of the first share one
notification: the authority gets one early warning for one brute-force
campaign, not one per five-minute bucket. Later alerts are attached to the
entry as follow-ups without being sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from nis2triage.assets import Asset
from nis2triage.nis2.entity import Entity
from nis2triage.notify import payload
from nis2triage.notify.pseudonym import Pseudonymiser
from nis2triage.records import Alert, stable_id
from nis2triage.store import Store

log = logging.getLogger(__name__)


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


class Notifier:
    def __init__(
        self,
        store: Store,
        entity: Entity,
        mode: str,
        channel_name: str,
        window: timedelta,
        pseudonymiser: Pseudonymiser | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.entity = entity
        self.mode = mode
        self.channel_name = channel_name
        self.window = window
        self.pseudonymiser = pseudonymiser
        self.clock = clock

    def enqueue(self, alerts: list[tuple[Alert, Asset | None]]) -> int:
        """Outbox entries for early-warning alerts; returns how many new ones were created."""
        created = 0
        for alert, asset in sorted(alerts, key=lambda pair: pair[0].timestamp):
            if alert.route != "early_warning":
                continue
            group = self._open_group(alert)
            if group is None:
                created += self._create(alert, asset)
            else:
                self._attach(group, alert)
        return created

    def _entity_key(self, alert: Alert) -> str:
        return stable_id(alert.entity_field, alert.entity)

    def _open_group(self, alert: Alert) -> dict[str, Any] | None:
        self.store.refresh("outbox")
        resp = self.store.es.search(
            index=self.store.index("outbox"),
            query={
                "bool": {
                    "filter": [
                        {"term": {"kind": "early_warning"}},
                        {"term": {"entity_key": self._entity_key(alert)}},
                        {"range": {"created": {"lte": _iso(alert.timestamp)}}},
                        {"range": {"window_end": {"gt": _iso(alert.timestamp)}}},
                    ]
                }
            },
            sort=[{"created": "asc"}],
            size=1,
            seq_no_primary_term=True,
        )
        hits = resp["hits"]["hits"]
        return dict(hits[0]) if hits else None

    def _create(self, alert: Alert, asset: Asset | None) -> int:
        doc_id = stable_id("early_warning", alert.entity_field, alert.entity, alert.id)
        body = payload.early_warning(
            doc_id, self.entity, [alert], [asset] if asset else [], self.clock()
        )
        body = self._minimise(body, alert)
        doc = {
            "kind": "early_warning",
            "status": "dry-run" if self.mode == "dry-run" else "pending",
            "channel": self.channel_name,
            "entity_key": self._entity_key(alert),
            "created": _iso(alert.timestamp),
            "window_end": _iso(alert.timestamp + self.window),
            "next_attempt": _iso(self.clock()),
            "attempts": 0,
            "alert_ids": [alert.id],
            "payload": body,
        }
        new = self.store.create_many("outbox", [(doc_id, doc)])
        if new:
            log.info(
                "early warning %s queued (%s) for %s %s",
                doc_id,
                doc["status"],
                alert.entity_field,
                alert.entity,
            )
        return new

    def _minimise(self, body: dict[str, Any], alert: Alert) -> dict[str, Any]:
        if self.pseudonymiser is None:
            body["pseudonymised"] = False
            return body
        scrubbed: dict[str, Any] = self.pseudonymiser.scrub(body, alert.related_users)
        scrubbed["pseudonymised"] = True
        self._save_lookup()
        return scrubbed

    def _save_lookup(self) -> None:
        """Keep the pseudonym -> value table in the entity's own index, never in a payload."""
        assert self.pseudonymiser is not None
        docs = [
            (
                name,
                {"kind": name.split("-", 1)[0], "value": value, "@timestamp": _iso(self.clock())},
            )
            for name, value in self.pseudonymiser.table.items()
        ]
        self.store.create_many("pseudonyms", docs)
        self.pseudonymiser.table.clear()

    def _attach(self, group: dict[str, Any], alert: Alert) -> None:
        ids = list(group["_source"].get("alert_ids", []))
        if alert.id in ids:
            return
        self.store.es.update(
            index=self.store.index("outbox"),
            id=group["_id"],
            doc={"alert_ids": [*ids, alert.id]},
            if_seq_no=group["_seq_no"],
            if_primary_term=group["_primary_term"],
            refresh=True,
        )
        log.info(
            "alert %s attached to early warning %s (same entity, same window)",
            alert.id,
            group["_id"],
        )
