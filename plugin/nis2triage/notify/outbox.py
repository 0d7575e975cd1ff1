"""The outbox: every notification is written to Elasticsearch before it is sent.

An entry is created once (deterministic id, `op_type=create`), sent by a
channel, and marked `sent` only when the channel confirms. A crash between
sending and marking means one more attempt with the same idempotency key,
which the receiver uses to recognise the repeat.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nis2triage.faults import crash_point
from nis2triage.notify.channel import Channel, Delivered, Outcome, RetryLater
from nis2triage.store import Store

log = logging.getLogger(__name__)

BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_MAX = timedelta(minutes=30)


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def backoff(attempts: int, rand: Callable[[], float] = random.random) -> timedelta:
    """Exponential backoff with full jitter (half to all of the capped delay)."""
    capped = min(BACKOFF_MAX, BACKOFF_BASE * (2 ** max(attempts - 1, 0)))
    return timedelta(seconds=capped.total_seconds() * (0.5 + rand() / 2))


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0


class Outbox:
    def __init__(self, store: Store, channel: Channel | None, max_attempts: int) -> None:
        self.store = store
        self.channel = channel
        self.max_attempts = max_attempts

    def due(self, now: datetime) -> list[dict[str, Any]]:
        self.store.refresh("outbox")
        resp = self.store.es.search(
            index=self.store.index("outbox"),
            query={
                "bool": {
                    "filter": [
                        {"term": {"status": "pending"}},
                        {"range": {"next_attempt": {"lte": _iso(now)}}},
                    ]
                }
            },
            sort=[{"created": "asc"}],
            size=100,
            seq_no_primary_term=True,
        )
        return list(resp["hits"]["hits"])

    def deliver_due(self, now: datetime) -> DeliveryReport:
        """Try every pending entry whose time has come, once."""
        if self.channel is None:
            return DeliveryReport()
        sent = retrying = failed = 0
        for hit in self.due(now):
            outcome = self.channel.send(hit["_id"], hit["_source"]["payload"], now)
            crash_point("post-answered")
            status = self._record(hit, outcome, now)
            sent += status == "sent"
            retrying += status == "pending"
            failed += status == "failed"
        return DeliveryReport(sent, retrying, failed)

    def _record(self, hit: dict[str, Any], outcome: Outcome, now: datetime) -> str:
        doc = hit["_source"]
        attempts = int(doc.get("attempts", 0)) + 1
        update: dict[str, Any] = {"attempts": attempts}
        if isinstance(outcome, Delivered):
            update.update(status="sent", sent_at=_iso(now), last_error=None)
            log.info(
                "notification %s delivered over %s (%s)",
                hit["_id"],
                doc.get("channel"),
                outcome.detail,
            )
        elif isinstance(outcome, RetryLater):
            # A legal deadline does not go away because the endpoint is down: keep trying
            # (at most every BACKOFF_MAX), and raise the alarm once max_attempts is reached.
            later = max(outcome.not_before or now, now + backoff(attempts))
            update.update(status="pending", next_attempt=_iso(later), last_error=outcome.reason)
            level = logging.ERROR if attempts == self.max_attempts else logging.WARNING
            log.log(
                level,
                "notification %s not delivered (%s); attempt %d, next at %s%s",
                hit["_id"],
                outcome.reason,
                attempts,
                _iso(later),
                "; still failing: send it by hand if its deadline is near"
                if attempts >= self.max_attempts
                else "",
            )
        else:
            update.update(status="failed", last_error=outcome.reason)
            log.error(
                "notification %s REJECTED after %d attempt(s): %s; trying again cannot help, "
                "fix the cause and send it by hand",
                hit["_id"],
                attempts,
                outcome.reason,
            )
        self.store.es.update(
            index=self.store.index("outbox"),
            id=hit["_id"],
            doc=update,
            if_seq_no=hit["_seq_no"],
            if_primary_term=hit["_primary_term"],
            refresh=True,
        )
        return str(update["status"])
