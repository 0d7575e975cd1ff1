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
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class DeadlineExceeded(TimeoutError):
    """The attempt ran past its deadline (the peer may still have been sending)."""


class LookupTimeout(TimeoutError):
    """The endpoint's name was not resolved in time (a resolver that does not answer)."""


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


Lookup = Callable[..., list[Any]]


def resolve_within(
    host: str, port: int, deadline: Deadline, per_op: float, lookup: Lookup = socket.getaddrinfo
) -> list[str]:
    """The addresses of `host`, looked up within the deadline.

    A socket timeout does not bound the name lookup (`getaddrinfo` blocks in the C
    library, as long as the resolver's own retries last): it runs in a thread that the
    attempt stops waiting for, left to finish on its own.
    """
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    wait = min(per_op, deadline.left())
    found: list[Any] = []
    failed: list[BaseException] = []

    def look() -> None:
        try:
            found.extend(lookup(host, port, type=socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the caller below
            failed.append(exc)

    # A daemon: a lookup still stuck when the agent exits must not hold the exit.
    thread = threading.Thread(target=look, name=f"lookup-{host}", daemon=True)
    thread.start()
    thread.join(wait)
    if thread.is_alive():
        raise LookupTimeout(f"the name {host} was not resolved within {wait:.2g} s")
    if failed:
        raise failed[0]
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def connect_within(
    host: str, port: int, deadline: Deadline, per_op: float, lookup: Lookup = socket.getaddrinfo
) -> socket.socket:
    """A TCP connection to `host`, its name lookup and each address tried within the deadline."""
    error: OSError | None = None
    for address in resolve_within(host, port, deadline, per_op, lookup):
        try:
            return socket.create_connection((address, port), min(per_op, deadline.left()))
        except OSError as exc:  # the next address may answer (IPv6 then IPv4)
            error = exc
    raise error or OSError(f"the name {host} has no address")
