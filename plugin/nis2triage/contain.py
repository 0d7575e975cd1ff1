"""The `contain` route: a containment request, recorded and logged.

Nothing is executed yet: an automated block (firewall, EDR isolation, account
lock) needs per-site integrations and a guard against locking out the wrong
party, which do not exist yet. The request record is what a SOAR or an
analyst acts on.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from nis2triage.assets import Asset
from nis2triage.records import Alert, stable_id
from nis2triage.store import Store

log = logging.getLogger(__name__)


def request_containment(
    store: Store, pairs: list[tuple[Alert, Asset | None]], now: datetime
) -> int:
    docs: list[tuple[str, dict[str, Any]]] = []
    for alert, asset in pairs:
        if alert.route != "contain":
            continue
        doc_id = stable_id("contain", alert.id)
        docs.append(
            (
                doc_id,
                {
                    "@timestamp": now.isoformat().replace("+00:00", "Z"),
                    "kind": "containment_request",
                    "status": "requested",
                    "reason": alert.route_reason,
                    "alert_id": alert.id,
                    "target": {"field": alert.entity_field, "value": alert.entity},
                    "asset": asset.name if asset else None,
                    "executed": False,
                },
            )
        )
    created = store.create_many("containment", docs)
    if created:
        # Replays find the requests already there and stay quiet.
        log.warning(
            "%d containment request(s) recorded in %s; nothing executed: no action is configured",
            created,
            store.index("containment"),
        )
    return created
