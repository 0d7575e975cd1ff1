"""Suppression (ElastAlert's `realert`): one alert per rule and entity per period.

Time is the events' time, not the clock's, so a replay of the past suppresses
exactly as the live run did.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from nis2triage.records import Alert
from nis2triage.rules.state import RuleState

log = logging.getLogger(__name__)


def apply(alerts: list[Alert], state: RuleState, period: timedelta) -> list[Alert]:
    """The alerts not within `period` after the previous alert of the same entity.

    An alert at exactly the remembered time is kept: it is the same detection
    replayed after a crash, and its deterministic id overwrites the first copy.
    """
    kept: list[Alert] = []
    for alert in sorted(alerts, key=lambda a: (a.timestamp, a.entity)):
        key = entity_key(alert)
        last = state.last_alert.get(key)
        if last is not None and last < alert.timestamp < last + period:
            log.debug("rule %s: %s suppressed until %s", alert.name, key, last + period)
            continue
        if last is None or alert.timestamp > last:
            state.last_alert[key] = alert.timestamp
        kept.append(alert)
    return kept


def entity_key(alert: Alert) -> str:
    """Field and value: a new_term rule over two fields may meet one value in both."""
    return f"{alert.entity_field}={alert.entity}"
