"""The endpoint's name is looked up within the attempt's deadline, as the rest of it is."""

from __future__ import annotations

import re
import socket
import time
from datetime import UTC, datetime

import pytest

from nis2triage.notify.channel import HttpChannel, RetryLater
from nis2triage.notify.deadline import Deadline, LookupTimeout, resolve_within

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_a_name_lookup_that_does_not_answer_is_cut_at_the_deadline() -> None:
    # The C library's resolver cannot be pointed at a silent server without root: this
    # lookup stands in for one that waits out its retries.
    def silent(host: str, port: int, **_: object) -> list[object]:
        time.sleep(3.0)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    started = time.monotonic()
    with pytest.raises(LookupTimeout, match=r"ccb\.example was not resolved within 0\.3 s"):
        resolve_within("ccb.example", 443, Deadline(0.3), per_op=5.0, lookup=silent)

    assert time.monotonic() - started < 1.5


def test_a_name_that_does_not_exist_is_a_retry_not_a_hang() -> None:
    channel = HttpChannel("http://no-such-host.invalid/notify", None, 2.0, [])

    started = time.monotonic()
    outcome = channel.send("k", {}, NOW)

    # Without a reachable resolver the lookup is cut at 2 s instead of failing at once.
    assert time.monotonic() - started < 3.5
    assert isinstance(outcome, RetryLater)
    # The resolver's own words differ between systems (and without a resolver at all).
    unknown = re.fullmatch(
        r"the name no-such-host\.invalid does not resolve \(.+\): check notifier\.endpoint "
        r"and this machine's DNS",
        outcome.reason,
    )
    late = "the name no-such-host.invalid was not resolved within 2 s: check the DNS resolver "
    assert unknown or outcome.reason == late + "of this machine"


def test_addresses_are_given_as_they_are_without_a_lookup() -> None:
    def refuse(*_: object, **__: object) -> list[object]:
        raise AssertionError("an address literal needs no lookup")

    assert resolve_within("::1", 443, Deadline(1.0), 1.0, lookup=refuse) == ["::1"]
    assert resolve_within("127.0.0.1", 443, Deadline(1.0), 1.0, lookup=refuse) == ["127.0.0.1"]
