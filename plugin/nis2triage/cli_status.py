"""`nis2triage status -c CONFIG`: the agent's state at a glance, and an exit status for checks.

Exit status: 0 when nothing needs attention, 3 when something does (each concern is
printed), 1 when the cluster could not be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError
from rich.console import Console
from rich.table import Table

from nis2triage import logs
from nis2triage.errors import ConnectionSetupError
from nis2triage.nis2.brussels import show
from nis2triage.status import Status, read_status
from nis2triage.terminal import text_console

NEEDS_ATTENTION = 3


WHAT = "is an agent running, are the sources caught up, is anything owed"


def add_parser(sub: Any) -> None:
    status = sub.add_parser(
        "status",
        parents=[logs.verbose_flag()],
        help=WHAT,
        description=WHAT,
    )
    status.add_argument("-c", "--config", required=True, help="the agent's YAML configuration")
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")
    status.add_argument(
        "--every",
        type=_interval,
        metavar="DURATION",
        help="the agent runs from a timer (`run --once`) this often, e.g. 15m: no agent "
        "holding the lease is then no concern, a checkpoint older than two runs is",
    )
    status.set_defaults(handler=cmd_status)


def _interval(text: str) -> timedelta:
    from nis2triage.config import parse_duration

    try:
        every = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if every <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r}: a timer's interval is longer than zero")
    return every


def cmd_status(args: argparse.Namespace) -> int:
    from nis2triage import esclient
    from nis2triage.config import es_settings, load_config
    from nis2triage.store import Store

    cfg = load_config(args.config)
    settings = es_settings(cfg)
    store = Store(esclient.connect(settings), cfg.state.index_prefix)
    try:
        status = read_status(cfg, store, datetime.now(UTC), args.every)
    except (TransportError, ApiError) as exc:
        # Said by main too, but without where: a monitoring check runs this against
        # several configurations, and "cannot be reached" alone named none of them.
        hosts = ", ".join(settings.hosts)
        raise ConnectionSetupError(
            f"the agent's state under {cfg.state.index_prefix}-* at {hosts} (elasticsearch "
            f"in {args.config}) cannot be read: {_why(exc)}"
        ) from exc
    if args.json:
        print(json.dumps(as_json(status), indent=2))
    else:
        print_status(status, text_console(width=None if sys.stdout.isatty() else 160))
    return NEEDS_ATTENTION if status.concerns() else 0


def _why(exc: Exception) -> str:
    """The node's refusal, or why it was not reached with what to check."""
    from nis2triage.agent import describe_outage
    from nis2triage.esclient import unreached

    return unreached(exc) if isinstance(exc, TransportError) else describe_outage(exc)


def print_status(status: Status, console: Console) -> None:
    holder = status.live_holder
    if holder is not None:
        # In Brussels time like every other time of this table; the logs keep ISO 8601 UTC.
        console.print(
            f"agent: process {holder.pid} on {holder.host}, until {show(holder.expires)} "
            f"holds the lease of {status.prefix}-state"
        )
    console.print(_sources_table(status))
    outbox = ", ".join(f"{n} {k}" for k, n in sorted(status.outbox.items())) or "empty"
    console.print(f"notifications: {outbox}")
    owed = status.owed
    due = f"; next due {show(owed.next_due[1])} ({owed.next_due[0][:12]})" if owed.next_due else ""
    console.print(f"incidents: {owed.open_incidents} open{due}")
    concerns = status.concerns()
    for concern in concerns:
        console.print(f"attention: {concern}", soft_wrap=True)
    if not concerns:
        console.print("nothing needs attention")


def _sources_table(status: Status) -> Table:
    table = Table(title="sources")
    for column in ("source", "checkpoint saved", "events read up to", "events read"):
        table.add_column(column, overflow="fold")
    for src in status.sources:
        table.add_row(
            src.name,
            show(src.saved) if src.saved else "never",
            show(src.read_up_to) if src.read_up_to else "-",
            f"{src.events:,}",
        )
    return table


def as_json(status: Status) -> dict[str, Any]:
    holder = status.holder
    return {
        "checked": status.checked.isoformat(),
        "lease": None
        if holder is None
        else {"host": holder.host, "pid": holder.pid, "expires": holder.expires.isoformat()},
        "sources": [
            {
                "name": s.name,
                "saved": s.saved.isoformat() if s.saved else None,
                "read_up_to": s.read_up_to.isoformat() if s.read_up_to else None,
                "events": s.events,
                "unreadable": s.unreadable,
                "untimed_indices": list(s.unread.untimed_indices),
                "without_time": s.unread.without_time,
            }
            for s in status.sources
        ],
        "notifications": status.outbox,
        "late_notifications": status.late_notifications,
        "open_incidents": status.owed.open_incidents,
        "next_due": None
        if status.owed.next_due is None
        else {"incident": status.owed.next_due[0], "due": status.owed.next_due[1].isoformat()},
        "overdue_incidents": status.owed.overdue,
        "concerns": status.concerns(),
    }
