"""The outbox: every notification is written to Elasticsearch before it is sent.

An entry is created once (deterministic id, `op_type=create`); its id is the
idempotency key every channel sends with it. Each channel the entry names
delivers it on its own schedule: a failed channel is retried with backoff
while the others go on, and an entry counts as sent (`sent_at`) only when a
channel confirms. A crash between sending and recording means one more
attempt with the same key, which the receiver uses to recognise the repeat.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from elasticsearch import ConflictError

from nis2triage.faults import crash_point
from nis2triage.logs import redact
from nis2triage.notify.channel import (
    RETRY_AFTER_MAX,
    Channel,
    Delivered,
    HandedOver,
    Outcome,
    Rejected,
    RetryLater,
)
from nis2triage.store import Store

log = logging.getLogger(__name__)

BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_MAX = timedelta(minutes=30)
_DOUBLINGS_TO_CAP = math.ceil(math.log2(BACKOFF_MAX / BACKOFF_BASE))


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _when(text: str | None, default: datetime) -> datetime:
    return datetime.fromisoformat(text) if text else default


# The latest a retry can be set: the longest backoff, or the longest Retry-After taken.
LATEST_RETRY = max(BACKOFF_MAX, RETRY_AFTER_MAX)


def _waits(state: dict[str, Any], now: datetime) -> bool:
    """Whether a channel's next attempt is still to come. One set later than any backoff
    could set it was set by a clock that ran ahead: it is due now, and said."""
    later = _when(state.get("next_attempt"), now)
    if later > now + LATEST_RETRY:
        log.warning(
            "a delivery was set for %s, later than any retry could be (now %s): the clock "
            "was ahead and has been set back; trying now",
            _iso(later),
            _iso(now),
        )
        return False
    return later > now


def backoff(attempts: int, rand: Callable[[], float] = random.random) -> timedelta:
    """Exponential backoff with full jitter (half to all of the capped delay)."""
    # The exponent stops growing once past the cap: 2**44 times 5 s overflows a timedelta,
    # which an endpoint down for about 20 hours reached (attempt 45).
    doublings = min(max(attempts - 1, 0), _DOUBLINGS_TO_CAP)
    capped = min(BACKOFF_MAX, BACKOFF_BASE * 2**doublings)
    return timedelta(seconds=capped.total_seconds() * (0.5 + rand() / 2))


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0  # channel confirmations
    retrying: int = 0
    failed: int = 0
    handed_over: int = 0


def channels_of(doc: dict[str, Any]) -> list[str]:
    """The channels an entry goes out on (entries written before there were several name one)."""
    return list(doc.get("channels") or [doc.get("channel", "http")])


def _redacted(outcome: Outcome) -> Outcome:
    """The outcome without a registered secret in its reason: the reason is logged and
    stored in the outbox, which whoever reads the cluster may read."""
    if isinstance(outcome, RetryLater | Rejected):
        return replace(outcome, reason=redact(outcome.reason))
    return outcome


# A channel's delivery stopped because a person submitted the report by hand.
BY_HAND = "submitted_by_hand"


def overall_status(deliveries: dict[str, dict[str, Any]]) -> str:
    """pending while a channel still tries; then sent if any confirmed (or a person submitted
    the report by hand), else handed_over, failed."""
    states = {d.get("status", "pending") for d in deliveries.values()}
    states = {"sent" if s == BY_HAND else s for s in states}
    for status in ("pending", "sent", "handed_over"):
        if status in states:
            return status
    return "failed"


class Outbox:
    def __init__(self, store: Store, channels: Mapping[str, Channel], max_attempts: int) -> None:
        self.store = store
        self.channels = dict(channels)
        self.max_attempts = max_attempts
        # Asked before every send; the agent answers whether it still holds its lease.
        self.may_send: Callable[[], bool] = lambda: True
        # Asked between entries; the agent answers False once it was asked to stop, so a
        # stop does not wait for every due entry (up to 100 deadlines) to be tried.
        self.keep_going: Callable[[], bool] = lambda: True
        self.halted = False

    def due(self, now: datetime) -> list[dict[str, Any]]:
        """Pending entries whose next attempt has come, and those set later than any
        backoff could: the clock was ahead when they were tried, and is right again."""
        self.store.refresh("outbox")
        resp = self.store.es.search(
            index=self.store.index("outbox"),
            query={
                "bool": {
                    "filter": [{"term": {"status": "pending"}}],
                    "should": [
                        {"range": {"next_attempt": {"lte": _iso(now)}}},
                        {"range": {"next_attempt": {"gt": _iso(now + LATEST_RETRY)}}},
                    ],
                    "minimum_should_match": 1,
                }
            },
            sort=[{"created": "asc"}],
            size=100,
            seq_no_primary_term=True,
        )
        return list(resp["hits"]["hits"])

    def deliver_due(self, now: datetime) -> DeliveryReport:
        """Try every pending channel of every entry whose time has come, once."""
        if not self.channels:
            return DeliveryReport()
        counts: dict[str, int] = {}
        self.halted = False
        due = self.due(now)
        for done, hit in enumerate(due):
            if not self.keep_going():
                # Durable: what is left stays pending for the next pass or the next holder.
                log.info(
                    "stopping: %d notifications left pending for the next pass", len(due) - done
                )
                break
            for status in self._deliver(hit, now):
                counts[status] = counts.get(status, 0) + 1
            if self.halted:
                break
        return DeliveryReport(
            counts.get("sent", 0),
            counts.get("pending", 0),
            counts.get("failed", 0),
            counts.get("handed_over", 0),
        )

    def _deliver(self, hit: dict[str, Any], now: datetime) -> list[str]:
        doc = hit["_source"]
        deliveries = {name: dict(state) for name, state in doc.get("deliveries", {}).items()}
        names, rerouted = self._routes(hit["_id"], channels_of(doc), deliveries)
        tried = []
        for name in names:
            state = deliveries.setdefault(name, {"status": "pending", "attempts": 0})
            if state["status"] != "pending" or _waits(state, now):
                continue
            if not self.may_send():
                # Another agent now delivers (see `lease`): what was tried is saved, no more.
                self.halted = True
                break
            outcome = self._send(name, hit["_id"], doc["payload"], now)
            crash_point("post-answered")
            deliveries[name] = self._judge(hit["_id"], name, state, outcome, now)
            tried.append(deliveries[name]["status"])
        if tried or rerouted:
            self._save(hit, deliveries, now, names)
        return tried

    def _routes(
        self, key: str, listed: list[str], deliveries: dict[str, dict[str, Any]]
    ) -> tuple[list[str], bool]:
        """The entry's channels as `incidents.channels` stands now, and whether that
        changed its deliveries.

        A channel taken out of the configuration (http given up for manual, the CCB
        having no API) would refuse the entry for good: its delivery is marked replaced,
        and when none of the entry's channels is left, the configured ones take it. A
        replaced channel configured again takes its delivery back.
        """
        changed = False
        for name in listed:
            state = deliveries.get(name, {})
            if state.get("status") == "replaced" and name in self.channels:
                state.update(status="pending", next_attempt=None)
                changed = True
        status = {n: deliveries.get(n, {}).get("status", "pending") for n in listed}
        gone = [n for n in listed if n not in self.channels and status[n] == "pending"]
        if not gone:
            return listed, changed
        for name in gone:
            state = deliveries.setdefault(name, {"attempts": 0})
            state.update(status="replaced", last_error="no longer in incidents.channels")
            status[name] = "replaced"
        live = ("pending", "sent", "handed_over")
        left = [n for n in listed if n in self.channels and status[n] in live]
        added = [] if left else [n for n in self.channels if n not in listed]
        log.warning(
            "notification %s was queued for %s, which incidents.channels no longer lists; %s",
            key,
            ", ".join(gone),
            f"it goes over {', '.join(added)} instead (if an earlier try may have reached "
            "the old channel, check there before submitting it again)"
            if added
            else f"{', '.join(left)} goes on with it",
        )
        return [*listed, *added], True

    def _send(self, name: str, key: str, payload: dict[str, Any], now: datetime) -> Outcome:
        channel = self.channels.get(name)
        if channel is None:
            return Rejected(f"channel {name} is not configured (incidents.channels)")
        try:
            return _redacted(channel.send(key, payload, now))
        except Exception as exc:  # the delivery's edge: one peer or entry must not stop the loop
            # A peer that answers in a way no handler foresaw (a chunk size past any integer,
            # say) or a credential the library cannot encode: retried, and said, like a failure.
            log.debug("channel %s raised on %s", name, key, exc_info=True)
            return RetryLater(redact(f"{name} channel failed: {type(exc).__name__}: {exc}")[:500])

    def _judge(
        self, key: str, name: str, state: dict[str, Any], outcome: Outcome, now: datetime
    ) -> dict[str, Any]:
        attempts = int(state.get("attempts", 0)) + 1
        if isinstance(outcome, Delivered | HandedOver):
            status = "sent" if isinstance(outcome, Delivered) else "handed_over"
            log.info("notification %s %s over %s (%s)", key, status, name, outcome.detail)
            return {
                "status": status,
                "attempts": attempts,
                "at": _iso(now),
                "detail": outcome.detail,
            }
        if isinstance(outcome, RetryLater):
            # A legal deadline does not go away because the endpoint is down: keep trying
            # (at most every BACKOFF_MAX), and raise the alarm once max_attempts is reached.
            later = max(outcome.not_before or now, now + backoff(attempts))
            level = logging.ERROR if attempts == self.max_attempts else logging.WARNING
            still = attempts >= self.max_attempts
            log.log(
                level,
                "notification %s not delivered over %s (%s); attempt %d, next at %s%s",
                key, name, outcome.reason, attempts, _iso(later),
                "; still failing: send it by hand if its deadline is near" if still else "",
            )  # fmt: skip
            return {
                "status": "pending",
                "attempts": attempts,
                "next_attempt": _iso(later),
                "last_error": outcome.reason,
            }
        log.error(
            "notification %s REJECTED over %s after %d attempt(s): %s; trying again cannot "
            "help, fix the cause and send it by hand",
            key, name, attempts, outcome.reason,
        )  # fmt: skip
        return {"status": "failed", "attempts": attempts, "last_error": outcome.reason}

    def _save(
        self,
        hit: dict[str, Any],
        deliveries: dict[str, dict[str, Any]],
        now: datetime,
        names: list[str],
    ) -> None:
        doc = hit["_source"]
        confirmed = [_when(d["at"], now) for d in deliveries.values() if d["status"] == "sent"]
        waiting = [
            _when(d.get("next_attempt"), now)
            for d in deliveries.values()
            if d["status"] == "pending"
        ]
        update: dict[str, Any] = {
            "channels": names,
            "deliveries": deliveries,
            "status": overall_status(deliveries),
            "attempts": sum(int(d.get("attempts", 0)) for d in deliveries.values()),
            "next_attempt": _iso(min(waiting)) if waiting else doc.get("next_attempt"),
            "sent_at": doc.get("sent_at") or (_iso(min(confirmed)) if confirmed else None),
            "last_error": "; ".join(
                f"{n}: {d['last_error']}" for n, d in deliveries.items() if d.get("last_error")
            )
            or None,
        }
        try:
            self.store.es.update(
                index=self.store.index("outbox"),
                id=hit["_id"],
                doc=update,
                if_seq_no=hit["_seq_no"],
                if_primary_term=hit["_primary_term"],
                refresh=True,
            )
        except ConflictError:
            outcome = update["status"] if not update["last_error"] else update["last_error"]
            if self._submitted_by_hand_meanwhile(hit["_id"], names, outcome):
                return
            # Only the lease's holder writes the outbox: another agent did, so this one has
            # lost the lease and stops delivering (the agent then stands by). Its outcome
            # is not written over the other's record, but said here so it is not lost.
            self.halted = True
            log.warning(
                "notification %s was updated by another agent while this one delivered it "
                "(its lease was taken over); this agent's outcome, not recorded: %s",
                hit["_id"],
                outcome,
            )

    def _submitted_by_hand_meanwhile(self, key: str, names: list[str], outcome: str) -> bool:
        """Whether the entry was recorded as submitted by hand (`incidents submitted`) while
        this agent delivered it: that write, not another agent, changed it. Said with this
        agent's outcome: if a channel reached the CCB too, it has the report twice."""
        by_hand = (self.store.get("outbox", key) or {}).get("submitted_by_hand")
        if not by_hand:
            return False
        log.warning(
            "notification %s was submitted by hand (%s) while this agent delivered it over %s; "
            "this agent's outcome, not recorded: %s. If that says sent, the CCB received the "
            "report both ways: tell it they are the same report",
            key,
            by_hand.get("reference"),
            ", ".join(names),
            outcome,
        )
        return True
