"""A wall-clock deadline and a size cap for one delivery attempt, over a plain or TLS socket.

A socket timeout bounds each read on its own: a peer that sends one byte a second
never trips it and holds the agent as long as it likes. Here every read and write
may wait only for the shorter of the per-read timeout and what is left of the
attempt's deadline, and the bytes read are counted against a cap, so neither a
drip nor a flood can hold or fill the agent. Both channels (HTTP and SMTP) read
through `read_within`.
"""

from __future__ import annotations

import io
import socket
import time
from dataclasses import dataclass, field


class DeadlineExceeded(TimeoutError):
    """The attempt ran past its deadline (the peer may still have been sending)."""


class AnswerTooLarge(Exception):
    """The peer sent more than the cap; the rest was not read."""


@dataclass
class Deadline:
    seconds: float
    at: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.at = time.monotonic() + self.seconds

    def left(self) -> float:
        """Seconds left; DeadlineExceeded once there are none."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"not finished within the {self.seconds:g} s deadline")
        return left

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def bound(self, sock: socket.socket, per_op: float) -> None:
        """Let the next operation on `sock` wait no longer than the deadline allows."""
        sock.settimeout(min(per_op, self.left()))


class _CappedReads(io.RawIOBase):
    def __init__(self, sock: socket.socket, deadline: Deadline, per_read: float, cap: int) -> None:
        self.sock = sock
        # Through makefile, as http.client and smtplib read: the file keeps the socket open
        # after its owner closes it (http.client does so on `Connection: close`).
        self.raw = sock.makefile("rb", buffering=0)
        self.deadline = deadline
        self.per_read = per_read
        self.cap = cap
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        # Ask for no more than one byte past the cap: enough to know it was crossed.
        room = min(len(buffer), self.cap + 1 - self.count)
        self.deadline.bound(self.sock, self.per_read)
        got = self.raw.readinto(buffer[:room]) or 0
        self.count += got
        if self.count > self.cap:
            raise AnswerTooLarge(f"answer over the {self.cap:,} byte cap; the rest was not read")
        return got

    def close(self) -> None:
        self.raw.close()
        super().close()


def read_within(
    sock: socket.socket, deadline: Deadline, per_read: float, cap: int
) -> io.BufferedReader:
    """A buffered reader of `sock` that honours `deadline` and stops past `cap` bytes."""
    return io.BufferedReader(_CappedReads(sock, deadline, per_read, cap))
