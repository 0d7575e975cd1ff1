"""A detector judged in a process of its own, a few pages behind the agent.

The agent's loop holds one interpreter lock: reading and decoding pages, the source's
records and every detector's buckets take turns on one core. A per-user detector can be
most of that work (it closes thousands of buckets a page in `make bench`), so on a
machine with a core to spare it runs here instead: the agent sends each page's events
and asks for a close after each, and the process judges page k while the agent reads
and handles the pages after it. The alerts of a close come back a few closes later,
and all of them before any checkpoint (`settle`), so a checkpoint never moves past a
bucket whose alert is not yet written; the checkpoint then holds a copy of the
process's detector (`detector`), the same object an in-process one is, so either can
resume from it.

The process sends back, with each close, the events it had to set aside (for the agent's
dead letters), its log records (written by the agent's own handlers) and its counters
(for `status` and `/metrics`, which lag the process by at most `IN_FLIGHT` pages).
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nis2triage import gc_tuning
from nis2triage.detectors import Detector, DetectorSpec, fields_read
from nis2triage.errors import Nis2TriageError
from nis2triage.features import getter
from nis2triage.records import Alert, Event

log = logging.getLogger(__name__)

# Closes in flight before the agent waits for the oldest: with one, agent and process
# took turns more than they overlapped (`make bench`, 2 million events, 2 cores: 44.2
# and 45.3 s against 41.1 and 42.7 s in the agent's own process); with 3 and 8, 39.6 to
# 40.7 s. The alerts held back are written at the next checkpoint all the same, and a
# live poll of a page or two settles at its end, so only catch-ups run this far ahead.
IN_FLIGHT = 4
# How long a stopping process is given to exit before it is killed.
STOP_WAIT_S = 5.0
# How long the agent waits on a silent process (no part of an answer comes, nothing sent
# is read) before it says so, and before it gives up. A close judges at most
# `max_entities` buckets a slot, seconds of work, so a process silent for minutes is
# frozen (stopped with SIGSTOP, its machine swapping): waiting on for ever kept the
# agent from renewing its lease and deaf to a stop.
ANSWER_WARN_S = 30.0
ANSWER_LIMIT_S = 300.0
WAIT_STEP_S = 0.5


class DetectorProcessFailed(Nis2TriageError):
    """A detector's process died or failed: the pass stops before its checkpoint, so a
    restart resumes from the last one and judges the same events again."""


@dataclass
class SetAside:
    """An event the process's detector failed on, for the agent's dead letters."""

    index: str
    id: str
    reason: str


@dataclass
class _Answer:
    """What the process sends back after a close."""

    alerts: list[Alert]
    set_aside: list[SetAside]
    records: list[logging.LogRecord]
    stats: dict[str, int]
    evictions: dict[str, int]
    next_end_ms: int | None


@dataclass
class _Child:
    """A started process: the agent's end of its socket, the process, and its ending."""

    pipe: _Pipe
    process: subprocess.Popen[bytes]
    end: Callable[[], Any]  # the weakref.finalize that stops it, once


@dataclass
class _Known:
    """The process's counters as of its last answer."""

    stats: dict[str, int]
    evictions: dict[str, int]
    next_end_ms: int | None
    set_aside: list[SetAside] = field(default_factory=list)


class DetectorProcess:
    """`Detector`'s interface for the agent's loop, with the detector in a child process.

    `close` returns the alerts of earlier closes (at most `IN_FLIGHT` stay pending);
    `settle` returns the rest. The agent settles before writing alerts for a checkpoint.
    """

    def __init__(
        self, detector: Detector, source: str, stopping: Callable[[], bool] = lambda: False
    ) -> None:
        self.spec: DetectorSpec = detector.spec
        self.time_field = detector.time_field
        self.source = source
        # Whether the agent was asked to stop: it then waits for a silent process no
        # longer than it would for one to exit.
        self.stopping = stopping
        self._in_flight = 0
        self._known = _Known(detector.stats(), detector.evictions(), detector.next_bucket_end_ms())
        self._fields = fields_for(self.spec)
        # Started at the first page, not here: the agent restores twice at start (and at
        # every takeover), and a standby judges nothing; until then the state waits here.
        self._state: bytes | None = pickle.dumps(detector, protocol=pickle.HIGHEST_PROTOCOL)
        self._child: _Child | None = None
        self._stopped = False

    # --- what the agent's loop calls ------------------------------------------

    def ingest_many(
        self, events: list[Event], failed: Callable[[Event, Exception], None] | None = None
    ) -> None:
        """Send the events, each as the fields the detector reads; an event whose fields
        cannot be read goes to `failed` (raised without it), as the detector's own loop
        does, and one the detector fails on comes back from `take_set_aside`."""
        sent = []
        for event in events:
            try:
                fields = self._fields(event.doc)
            except Exception as exc:
                if failed is None:
                    raise
                failed(event, exc)
                continue
            sent.append((event.index, event.id, event.ts_ms, fields))
        if sent:
            self._send_events(sent, failed)

    def _send_events(
        self,
        sent: list[tuple[str, str, int, dict[str, Any]]],
        failed: Callable[[Event, Exception], None] | None,
    ) -> None:
        try:
            self._send(("ingest", sent))
        except RecursionError:
            # A value nested a few hundred levels deep (the node keeps such a _source under
            # `dynamic: false`): pickle takes two levels of recursion per level of nesting,
            # JSON one, so what JSON decoded it encodes again. Nothing was written yet (a
            # message is pickled whole before it is sent).
            self._send(("ingest_json", self._as_json(sent, failed)))

    def _as_json(
        self,
        sent: list[tuple[str, str, int, dict[str, Any]]],
        failed: Callable[[Event, Exception], None] | None,
    ) -> list[tuple[str, str, int, str]]:
        encoded = []
        for index, doc_id, ts_ms, fields in sent:
            try:
                encoded.append((index, doc_id, ts_ms, json.dumps(fields)))
            except (RecursionError, TypeError, ValueError) as exc:
                if failed is None:
                    raise
                failed(Event(index, doc_id, ts_ms, fields), exc)
        return encoded

    def close(self, cutoff_ms: int, index_pattern: str) -> list[Alert]:
        """Ask for a close; return the alerts of the closes before it beyond `IN_FLIGHT`."""
        self._send(("close", cutoff_ms, index_pattern))
        self._in_flight += 1
        return self._collect(keep=IN_FLIGHT)

    def settle(self) -> list[Alert]:
        """Every alert still being judged: the state is then the one a checkpoint saves."""
        return self._collect(keep=0)

    def take_set_aside(self) -> list[SetAside]:
        taken, self._known.set_aside = self._known.set_aside, []
        return taken

    def stats(self) -> dict[str, int]:
        return dict(self._known.stats)

    def evictions(self) -> dict[str, int]:
        return dict(self._known.evictions)

    def next_bucket_end_ms(self) -> int | None:
        return self._known.next_end_ms

    @property
    def pid(self) -> int | None:
        """The process's, once started (at the first page)."""
        return self._child.process.pid if self._child else None

    def stop(self) -> None:
        """End the process (its state since the last checkpoint is dropped with it)."""
        self._stopped, self._state = True, None
        if self._child is not None:
            self._child.end()

    def detector(self) -> Detector:
        """A copy of the process's detector as it stands (settled first)."""
        if self._in_flight:
            raise RuntimeError(
                f"detector {self.spec.name}: its state was asked for with closes in "
                "flight; settle first"
            )
        assert not self._stopped, "asked for after stop"
        state = self._state
        if self._child is not None:
            self._send(("state",))
            kind, state = self._receive()
            assert kind == "state", kind
        assert state is not None
        detector = pickle.loads(state)
        assert isinstance(detector, Detector)
        return detector

    # --- the pipe -------------------------------------------------------------

    def _collect(self, keep: int) -> list[Alert]:
        alerts: list[Alert] = []
        while self._in_flight > keep:
            kind, answer = self._receive()
            assert kind == "closed", kind
            self._in_flight -= 1
            alerts += self._take(answer)
        return alerts

    def _take(self, answer: _Answer) -> list[Alert]:
        for record in answer.records:
            logging.getLogger(record.name).handle(record)
        self._known = _Known(
            answer.stats,
            answer.evictions,
            answer.next_end_ms,
            self._known.set_aside + answer.set_aside,
        )
        return answer.alerts

    def _started(self) -> _Child:
        if self._child is None:
            assert not self._stopped and self._state is not None, "used after stop"
            sock, process = _launch(logging.getLogger().getEffectiveLevel())
            pipe = _Pipe(sock, self._silent)
            # Also when the agent drops it without `stop` (a failed pass, a library user).
            end = weakref.finalize(self, _end, pipe, process)
            self._child = _Child(pipe, process, end)
            state, self._state = self._state, None
            self._send(("start", state))
        return self._child

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            self._started().pipe.send(message)
        except OSError as exc:
            raise self._failed(self._last_words() or f"it no longer reads ({exc})") from exc

    def _last_words(self) -> str | None:
        """Why a process that no longer reads stopped, if it said so: the agent sends the
        next pages before it reads the answer to a close, so a close the process failed
        on came to light as a broken pipe, its error left unread behind earlier answers."""
        assert self._child is not None
        try:
            while True:
                kind, payload = self._child.pipe.receive()
                if kind == "failed":
                    return f"it failed: {payload}"
        except (EOFError, OSError, pickle.UnpicklingError, DetectorProcessFailed):
            return None

    def _receive(self) -> tuple[str, Any]:
        child = self._started()
        try:
            kind, payload = child.pipe.receive()
        except (EOFError, OSError) as exc:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(STOP_WAIT_S)
            raise self._failed(f"it stopped with exit code {child.process.poll()}") from exc
        if kind == "failed":
            raise self._failed(f"it failed: {payload}")
        return kind, payload

    def _silent(self, waited: float, reading: bool) -> None:
        """Called at each `WAIT_STEP_S` the process stays silent: says so when it is long,
        and gives up on a process silent beyond any real close, or at once under a stop."""
        what = "answered" if reading else "read what was sent"
        if waited >= ANSWER_WARN_S > waited - WAIT_STEP_S:
            log.warning(
                "detector %s of source %s: its process (pid %d) has not %s for %.0f s; "
                "waiting up to %.0f s (a process stopped with SIGSTOP, or a machine short "
                "of memory, answers late)",
                self.spec.name,
                self.source,
                self.pid,
                what,
                waited,
                ANSWER_LIMIT_S,
            )
        if waited >= ANSWER_LIMIT_S or (self.stopping() and waited >= STOP_WAIT_S):
            raise self._failed(f"it has not {what} for {waited:.0f} s")

    def _failed(self, what: str) -> DetectorProcessFailed:
        return DetectorProcessFailed(
            f"detector {self.spec.name} of source {self.source} runs in a process of its own "
            f"(detector_processes), and {what}. The pass stops before its checkpoint: a "
            "restart resumes from the last one and judges the same events again; remove the "
            "detector from detector_processes to run it in the agent's process"
        )


def fields_for(spec: DetectorSpec) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What of a document crosses to the detector's process: every field the detector
    reads, under its whole dotted name, which the detector's lookups try first, so that
    it reads from them what it would from the whole document. A whole document cost the
    process about as much to unpickle as the detector's own work on it (`make bench`)."""
    reads = [(name, getter(name)) for name in fields_read([spec])]

    def fields(doc: dict[str, Any]) -> dict[str, Any]:
        return {name: read(doc) for name, read in reads}

    return fields


class _Pipe:
    """The agent's end of the socket: each message its length (`_LENGTH`) then its pickle,
    written and read a part at a time, with `silent` called at every `WAIT_STEP_S` without
    progress.

    A send waits while the process's socket is full, and its reader thread empties it as
    the messages come, so only a frozen process (SIGSTOP, a swapping machine) fills it for
    long; and an answer larger than the socket holds is cut where the process froze.
    `multiprocessing`'s `Connection`, used before, waited there for ever (a read) or for
    the whole limit again at each part of the message (a write), deaf to a stop."""

    def __init__(self, sock: socket.socket, silent: Callable[[float, bool], None]) -> None:
        # The kernel's deadlines, not Python's `settimeout`: that one waits before each
        # send until the socket is three quarters empty, so a page that a frozen process's
        # socket still holds was said as a send it does not read.
        self.step = WAIT_STEP_S
        seconds, fraction = divmod(self.step, 1.0)
        deadline = struct.pack("ll", int(seconds), int(fraction * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, deadline)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, deadline)
        self.sock = sock
        self.silent = silent

    def send(self, message: tuple[Any, ...]) -> None:
        # Pickled whole before any of it is written: a message that cannot be pickled
        # (RecursionError) leaves the stream as it was.
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._write(_LENGTH.pack(len(data)))
        self._write(data)

    def send_now(self, message: tuple[Any, ...]) -> None:
        """Without waiting: a process that does not read it is killed all the same."""
        self.sock.setblocking(False)
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with contextlib.suppress(OSError):
            self.sock.send(_LENGTH.pack(len(data)) + data)

    def receive(self) -> Any:
        (size,) = _LENGTH.unpack(self._read(_LENGTH.size))
        return pickle.loads(self._read(size))

    def close(self) -> None:
        self.sock.close()

    def _write(self, data: bytes) -> None:
        view, waited = memoryview(data), 0.0
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:  # the deadline passed with nothing done
                waited += self.step
                self.silent(waited, False)
                continue
            view, waited = view[sent:], 0.0

    def _read(self, size: int) -> bytearray:
        data, got, waited = bytearray(size), 0, 0.0
        view = memoryview(data)
        while got < size:
            try:
                n = self.sock.recv_into(view[got:])
            except BlockingIOError:  # the deadline passed with nothing done
                waited += self.step
                self.silent(waited, True)
                continue
            if n == 0:
                raise EOFError("the process's end of the socket closed")
            got, waited = got + n, 0.0
        return data


# Each message between the agent and the process: its length in 8 bytes, then its pickle.
_LENGTH = struct.Struct("!Q")


class _ChildEnd:
    """The process's end of the socket, framed as `_Pipe` frames it; blocking, since the
    process waits for the agent anyway and the agent kills it when it stops."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)

    def send(self, message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self.sock.sendall(_LENGTH.pack(len(data)) + data)

    def receive_bytes(self) -> bytes:
        """One message's pickle; EOFError once the agent's end is closed."""
        (size,) = _LENGTH.unpack(self._read(_LENGTH.size))
        return self._read(size)

    def _read(self, size: int) -> bytes:
        data = bytearray(size)
        view, got = memoryview(data), 0
        while got < size:
            n = self.sock.recv_into(view[got:])
            if n == 0:
                raise EOFError("the agent's end of the socket closed")
            got += n
        return bytes(data)


def _end(pipe: _Pipe, process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        # Not waited on: a frozen process, its socket full, would hold a stop that long.
        pipe.send_now(("stop",))
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_WAIT_S)
    if process.poll() is None:
        process.kill()
        process.wait()
    pipe.close()


def _launch(level: int) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """A fresh interpreter running `serve`, and the agent's end of a socket pair to it.

    Not a fork, nor multiprocessing's spawn: the agent runs threads (the read-ahead, the
    metrics server) whose locks a forked child could inherit held, and spawn runs the
    parent's main script again in the child, which a script without a `__main__` guard
    (a bench, a user's own wrapper) does not survive.
    """
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno()), str(level)],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
    finally:
        theirs.close()
    return ours, process


def serve(conn: _ChildEnd, level: int) -> None:
    """The child's loop: one detector, fed and closed by the agent, until told to stop or
    the agent goes away (its end of the pipe closes)."""
    records = _Records(level)
    logging.getLogger().addHandler(records)
    logging.getLogger().setLevel(level)
    judge = _Judge(conn, records)
    inbox = _inbox(conn)
    with gc_tuning.streaming():
        while (data := inbox.get()) is not None:  # None: the agent is gone
            try:
                if not judge.handle(pickle.loads(data)):
                    return
            except Exception as exc:
                # Said to the agent, which stops its pass: the error and where it was raised.
                conn.send(("failed", _described(exc)))
                return


class _Judge:
    """The child's side of the pipe: its detector, and what it set aside since the last
    close."""

    def __init__(self, conn: _ChildEnd, records: _Records) -> None:
        self.conn = conn
        self.records = records
        self.detector: Detector | None = None
        self.set_aside: list[SetAside] = []

    def handle(self, message: tuple[Any, ...]) -> bool:
        """Do what the agent asks; False once it asks to stop."""
        op = message[0]
        if op == "stop":
            return False
        if op == "start":
            self.detector = pickle.loads(message[1])
            return True
        assert self.detector is not None, "started before any other message"
        if op == "ingest":
            self.detector.ingest_many([Event(*fields) for fields in message[1]], self.failed)
        elif op == "ingest_json":
            events = [Event(i, d, ts, json.loads(text)) for i, d, ts, text in message[1]]
            self.detector.ingest_many(events, self.failed)
        elif op == "close":
            self.conn.send(("closed", self.close(self.detector, message[1], message[2])))
        elif op == "state":
            state = pickle.dumps(self.detector, protocol=pickle.HIGHEST_PROTOCOL)
            self.conn.send(("state", state))
        return True

    def failed(self, event: Event, exc: Exception) -> None:
        self.set_aside.append(SetAside(event.index, event.id, f"{type(exc).__name__}: {exc}"))

    def close(self, detector: Detector, cutoff_ms: int, index_pattern: str) -> _Answer:
        alerts = detector.close(cutoff_ms, index_pattern)
        set_aside, self.set_aside = self.set_aside, []
        return _Answer(
            alerts,
            set_aside,
            self.records.take(),
            detector.stats(),
            detector.evictions(),
            detector.next_bucket_end_ms(),
        )


def _inbox(conn: _ChildEnd) -> queue.SimpleQueue[bytes | None]:
    """The agent's messages, read as they come by a thread of their own (None once the
    agent is gone).

    The agent sends the next pages while the answer to an earlier close is on its way:
    with a page and an answer each larger than the socket's buffer (thousands of events,
    hundreds of alerts or set-aside events), each side waited for the other to read, for
    ever. Read at once here, the agent's sends never wait on this process's. At most
    `IN_FLIGHT` closes' pages queue up: the agent then waits for an answer."""
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def read() -> None:
        while True:
            try:
                inbox.put(conn.receive_bytes())
            except (EOFError, OSError):
                inbox.put(None)
                return

    threading.Thread(target=read, name="inbox", daemon=True).start()
    return inbox


def _described(exc: Exception) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__}: {exc} (in {last.name}, {Path(last.filename).name}:{last.lineno})"


def main() -> None:
    """`python -m nis2triage.detector_process <fd> <level>`, as `_launch` runs it."""
    # Ctrl-C in a terminal signals the agent's whole process group, and systemd's stop
    # every process of the service: the agent then finishes its batch and saves, which
    # needs this process's answers. It ends when the agent stops it or its pipe closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(_ChildEnd(int(sys.argv[1])), int(sys.argv[2]))


class _Records(logging.Handler):
    """Log records kept for the agent, made picklable (their message formatted now)."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.kept: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.kept.append(record)

    def take(self) -> list[logging.LogRecord]:
        taken, self.kept = self.kept, []
        return taken


if __name__ == "__main__":
    # Through the module's own name: run as __main__, the answers' classes would be
    # pickled as __main__'s, which the agent cannot find.
    from nis2triage.detector_process import main as run_as_module

    run_as_module()
