"""Log set-up: ECS JSON lines for machines, coloured lines for people.

When stderr is a terminal, rich's handler writes readable, coloured lines;
otherwise (systemd's journal, a container, a pipe) each record is one JSON
object with the ECS fields Filebeat and Elastic Agent expect, so the agent's
own log can be shipped into the same cluster. Secret values the agent has read
are registered here and replaced in every line, whatever the handler: a last
guard behind the rule that no code logs a secret.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.text import Text

ECS_VERSION = "8.11.0"
REDACTED = "[redacted]"
OURS = "_nis2triage_handler"
_secrets: set[str] = set()


def register_secret(value: str | bytes | None) -> None:
    """Never let `value` reach a log line. Short values are skipped: they would mask words."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    if text and len(text) >= 8:
        # Also as an error message quotes it: escaped, bytes or text (a line break in a
        # token shows as \n in "Invalid header value b'Bearer ...\n'").
        _secrets.update({text, repr(text)[1:-1], repr(text.encode())[2:-1]})


def some(names: Sequence[str], at_most: int = 5) -> str:
    """`names` for a line a person reads: the first `at_most`, and how many more."""
    more = f" and {len(names) - at_most} more" if len(names) > at_most else ""
    return ", ".join(names[:at_most]) + more


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, REDACTED)
    return text


# C0 and C1 control characters but line breaks and tabs: quoted from outside (an
# endpoint's refusal, a document's value), they would drive the operator's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """`text` with its control characters written out (`\x1b`), so that none acts."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


class RedactingFilter(logging.Filter):
    """Formats the message once, without secrets or control characters, before any
    handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = visible(redact(record.getMessage()))
        record.args = None
        return True


class EcsFormatter(logging.Formatter):
    """One ECS JSON object per record (the ecs-logging layout: dotted level and version)."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        doc: dict[str, Any] = {
            "@timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "log.level": record.levelname.lower(),
            "message": record.getMessage(),
            "ecs.version": ECS_VERSION,
            "log": {"logger": record.name},
            "process": {"pid": record.process, "thread": {"name": record.threadName}},
            "service": {"name": "nis2triage"},
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            trace = "".join(traceback.format_exception(exc))
            doc["error"] = {
                "type": type(exc).__name__,
                "message": redact(str(exc)),
                "stack_trace": redact(trace),
            }
        return json.dumps(doc, ensure_ascii=False)


def _utc_time(at: datetime) -> Text:
    return Text(at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ"))


def verbose_flag() -> argparse.ArgumentParser:
    """`-v` for a command's own parser, so that it may follow the command as well as come
    before it (`nis2triage validate -v x.yml`); unset there unless given."""
    flag = argparse.ArgumentParser(add_help=False)
    flag.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug detail"
    )
    return flag


class PlainFormatter(logging.Formatter):
    """One plain line per record, for a person reading a file or a pager."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        line = f"{moment} {record.levelname.lower()} {record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            trace = "".join(traceback.format_exception(record.exc_info[1]))
            line += "\n" + visible(redact(trace))
        return line


def as_json() -> bool:
    """Whether `configure` set the log to ECS JSON (stderr no terminal, not the demo)."""
    ours = [h for h in logging.getLogger().handlers if getattr(h, OURS, False)]
    return any(isinstance(h.formatter, EcsFormatter) for h in ours)


def configure(
    verbose: bool = False, stream: TextIO | None = None, for_people: bool = False
) -> None:
    """Route every logger to one handler on `stream` (stderr by default).

    `for_people` (the demo): plain lines rather than JSON when `stream` is no terminal,
    since its output is read, not shipped, even when kept in a file."""
    out = stream or sys.stderr
    handler: logging.Handler
    if out.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(
            console=Console(file=out),
            show_path=False,
            markup=False,
            # ISO 8601 in UTC: rich's default, 12/05/26 with no zone, reads as 12 May here.
            log_time_format=_utc_time,
        )
    else:
        handler = logging.StreamHandler(out)
        handler.setFormatter(PlainFormatter() if for_people else EcsFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    # Only the handler set up here before is replaced; others (a test harness's) stay.
    for old in [h for h in root.handlers if getattr(h, OURS, False)]:
        root.removeHandler(old)
    setattr(handler, OURS, True)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # The client logs every request at INFO and every retry, with its traceback, at
    # WARNING; the agent says once per condition what is wrong instead.
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)
