"""`nis2triage incidents ...`: list, show, acknowledge, record impact, report, submit, close.

Every subcommand reads the agent's configuration (`--config`), prints a table
by default and JSON with `--json`, and records who acted (`--by`, by default
the login name) in the incident's audit trail.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from nis2triage import logs
from nis2triage.config import AgentConfig, breaks_line, load_config, parse_duration
from nis2triage.errors import IncidentError
from nis2triage.incidents.record import GDPR_KEY, DeadlineView, Incident
from nis2triage.incidents.reporting import Names
from nis2triage.lease import LEASE_ID, holder_of
from nis2triage.nis2.brussels import show
from nis2triage.reports.stages import BY_CLI, BY_REPORT, cli_name, stage_named
from nis2triage.rules.alerts import plural
from nis2triage.terminal import text_console

if TYPE_CHECKING:
    from nis2triage.incidents.flow import IncidentFlow
    from nis2triage.store import Store


def _euros(text: str) -> float:
    """An amount in euros, to the cent. Belgian writing groups thousands with a point, so
    "20.000" (twenty thousand) would be read as 20: more than two decimals is refused."""
    try:
        amount = float(text)
    except ValueError:
        raise _not_euros(text) from None
    _, point, decimals = text.strip().partition(".")
    if point and decimals.isdigit() and len(decimals) > 2:
        raise _not_euros(text)
    return amount


def _not_euros(text: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(
        f"{text!r} is not an amount in euros as this option takes it: write the digits "
        "without thousands separators and at most two decimals after a point, e.g. "
        "20000 or 1250.50"
    )


# Flags of the `impact` command and the fact each records (nis2triage.nis2.facts.Facts).
NUMBERS = {
    "users": ("users_affected", int, "service recipients affected (IR Art. 3(3))"),
    "loss": ("financial_loss_eur", _euros, "direct financial loss in EUR, e.g. 20000 or 1250.50"),
    "down": ("unavailability_minutes", float, "minutes the service was fully unavailable"),
    "limited": ("limited_availability_minutes", float, "minutes of limited availability"),
    "users_data": ("users_data_affected", int, "users whose data was compromised"),
}
FLAGS = {
    "malicious": "malicious_suspected",
    "unauthorised_access": "unauthorised_access_confirmed",
    "data_compromised": "data_compromised",
    "personal_data": "personal_data_involved",
    "cross_border": "cross_border",
    "severe_disruption": "severe_operational_disruption",
    "severe_loss": "severe_financial_loss",
    "damage_to_others": "considerable_damage_to_others",
    "planned_maintenance": "planned_maintenance",
    "trade_secrets": "trade_secrets_exfiltrated",
    "health_damage": "health_damage",
}
# Elasticsearch returns at most 10,000 hits to one search (index.max_result_window).
MAX_LIST = 10_000
TEXTS = ("description", "threat_type", "root_cause", "mitigation_applied", "mitigation_ongoing")


@dataclass
class Context:
    cfg: AgentConfig
    flow: IncidentFlow
    console: Console
    store: Store
    config: str


def connect(config: str, reading: bool = False) -> Context:
    """The incident flow for one command. Reading (list, show) needs no pseudonym key:
    it makes no report, and an analyst who only reads need not hold that secret."""
    from nis2triage import esclient
    from nis2triage.config import es_settings
    from nis2triage.incidents.flow import IncidentFlow
    from nis2triage.notify import build
    from nis2triage.store import Store

    cfg = load_config(config)
    store = Store(esclient.connect(es_settings(cfg)), cfg.state.index_prefix)
    _require_agent_ran(store, config)
    store.ensure_indices()
    key = os.environ.get(cfg.notifier.pseudonym_key_env)
    clock = _now
    if reading and not key:
        without = cfg.notifier.model_copy(update={"pseudonymise": False})
        cfg = cfg.model_copy(update={"notifier": without})
    notifier = build.notifier(cfg, store, key.encode() if key else None, clock)
    console = text_console(width=None if sys.stdout.isatty() else 160)
    return Context(cfg, IncidentFlow(cfg, store, notifier, clock), console, store, config)


def _when_sent(ctx: Context) -> str:
    """The command only queues: the agent's loop delivers (and retries) what is due, so
    say whether one runs to do it."""
    doc = ctx.store.get("state", LEASE_ID)
    holder = holder_of(doc) if doc else None
    if holder is not None and holder.expires > _now():
        return "not sent yet: the running agent sends it at its next cycle"
    return (
        f"not sent yet, and no agent holds the lease of {ctx.store.index('state')}: start "
        f"the agent, or send it now with `nis2triage run --once -c {ctx.config}`"
    )


def _require_agent_ran(store: Store, config: str) -> None:
    """Refuse a prefix no agent ever ran with: a misspelt state.index_prefix listed no
    incident as if there were none, and made the agent's indices under it, after which
    `nis2triage status` could no longer tell that no agent runs there."""
    incidents = store.index("incidents")
    if store.es.indices.exists(index=incidents):
        return
    raise IncidentError(
        f"there is no index {incidents}: no agent has run with state.index_prefix "
        f"{store.prefix} (from {config}); compare it with the running agent's configuration, "
        "or run `nis2triage setup` first for a new installation"
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _yes_no(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("yes", "true", "y"):
        return True
    if lowered in ("no", "false", "n"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: answer yes or no")


def _fact(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=VALUE, e.g. deaths=0")
    lowered = raw.strip().lower()
    if lowered in ("yes", "no", "true", "false"):
        return name.strip(), lowered in ("yes", "true")
    try:
        return name.strip(), int(raw) if raw.strip().isdigit() else float(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: a fact is yes, no or a number") from exc


def _when(text: str) -> datetime:
    """An absolute time (ISO 8601 with its offset) or a duration from now (e.g. 48h)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            return _now() + parse_duration(text)
        except (ValueError, OverflowError) as exc:
            # argparse turns this into a usage error naming the option, not a traceback.
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give the offset too, e.g. +01:00 or Z")
    return moment


def _due(text: str) -> datetime:
    """`_when`, later than now: a report due at once or in the past is a typing mistake."""
    moment = _when(text)
    if moment <= _now():
        raise argparse.ArgumentTypeError(f"{text!r} is not in the future: give e.g. 48h")
    return moment


def _past(text: str) -> datetime:
    """An absolute time (ISO 8601 with its offset) not in the future: when something was
    done. A duration would read as from now, forwards."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give an ISO time with its offset, e.g. 2026-12-04T15:20+01:00"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give the offset too, e.g. +01:00 or Z")
    try:
        # The deadlines and the Brussels times shown are worked out in UTC: 0001-01-01
        # at +14:00 ended `ack` in an OverflowError's traceback.
        moment.astimezone(UTC)
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} lies before the year 1 in UTC") from None
    if moment > _now():
        raise argparse.ArgumentTypeError(f"{text!r} is in the future")
    return moment


def _limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= limit <= MAX_LIST:
        raise argparse.ArgumentTypeError(f"{limit}: give 1 to {MAX_LIST:,}")
    return limit


# Characters that reorder what follows them on screen (Unicode bidirectional overrides
# and isolates): in an audit trail or a report they make text read otherwise than it is.
_REORDERING = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _named(text: str) -> str:
    """A person or a reference: the audit trail needs one, not blanks."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty: give a name or reference")
    if breaks_line(text):
        raise argparse.ArgumentTypeError(f"{text!r} holds a control character or line break")
    return _prose(text)


def _prose(text: str) -> str:
    """Text an analyst writes for the record and the reports: lines and tabs, but nothing a
    terminal, a report or the node would act on or refuse."""
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        # What a shell passes when the bytes are not UTF-8 (Python keeps them as surrogates):
        # stored, they made every later report of the incident fail to encode.
        raise argparse.ArgumentTypeError(
            f"{text!r} is not UTF-8 text: check the terminal's encoding"
        )
    text = text.replace("\r\n", "\n")
    odd = sorted({c for c in text if c in _REORDERING or (breaks_line(c) and c not in "\n\t")})
    if odd:
        named = ", ".join(f"U+{ord(c):04X}" for c in odd)
        raise argparse.ArgumentTypeError(
            f"{text[:60]!r} holds {named}: control or direction characters have no place in "
            "the record (a terminal or a report would act on them); remove them"
        )
    return text.strip()


# --- commands ---------------------------------------------------------------


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    query: dict[str, Any] = {"match_all": {}}
    if args.status:
        query = {"term": {"status": args.status}}
    elif not args.all:
        query = {"bool": {"must_not": [{"term": {"status": "closed"}}]}}
    found = ctx.flow.desk.book.find(query, size=args.limit)
    if args.json:
        now = _now()
        return _print_json([_json_row(i, now) for i in found])
    table = Table(title=plural(len(found), "incident"))
    # The incident's time is its first detection's (the event's), not when it was recorded.
    first = "first detected (Brussels)"
    for column in ("id", "status", first, "alerts", "verdict", "next due", "title"):
        table.add_column(column, overflow="fold")
    now = _now()
    for i in found:
        row = _row(i)
        due = row["next_due"] or "-"
        # As `show` and `status` judge it: no agent pass need have marked it yet.
        if any(_deadline_state(i, d, set(), now) == "OVERDUE" for d in i.deadlines):
            due = f"{due} (OVERDUE)"
        table.add_row(
            i.id[:12], i.status, row["opened"], str(i.alert_count), row["verdict"], due, i.title,
        )  # fmt: skip
    ctx.console.print(table)
    return 0


def _next_due(i: Incident) -> DeadlineView | None:
    """The earliest deadline of a report still pending (the deadlines are not in time order:
    an intermediate report asked for may fall before the final one)."""
    return min((d for d in i.deadlines if d.key in i.pending), key=lambda d: d.due, default=None)


def _json_row(i: Incident, now: datetime) -> dict[str, Any]:
    """`_row` for scripts: ISO times in UTC (as `status --json`), the next due report as
    its key and time, the overdue ones as the table judges them, no placeholder text."""
    due = _next_due(i)
    # Not `i.overdue` alone: only an agent's pass marks it, so with no agent running a
    # deadline passed since showed as none.
    late = [d.key for d in i.deadlines if _deadline_state(i, d, set(), now) == "OVERDUE"]
    return {
        "id": i.id,
        "status": i.status,
        "opened": i.opened_at.astimezone(UTC).isoformat(),
        "alerts": i.alert_count,
        "verdict": i.significance.verdict if i.significance else None,
        # The GDPR deadline keeps the offset the analyst gave its awareness in.
        "next_due": {"key": due.key, "due": due.due.astimezone(UTC).isoformat()} if due else None,
        "overdue": late,
        "title": i.title,
    }


def _row(i: Incident) -> dict[str, Any]:
    due = _next_due(i)
    return {
        "id": i.id,
        "status": i.status,
        "opened": show(i.opened_at),
        "alerts": i.alert_count,
        "verdict": i.significance.verdict if i.significance else "-",
        "next_due": f"{due.key} {show(due.due)}" if due else None,
        "overdue": list(i.overdue),
        "title": i.title,
    }


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    incident = ctx.flow.desk.book.get(args.id)
    if args.json:
        trail = ctx.flow.desk.book.audit_trail(incident.id)
        return _print_json({"incident": incident.to_doc(_now()), "audit": trail})
    _show(ctx.console, incident)
    return 0


def _show(console: Console, i: Incident) -> None:
    facts = Table(title=f"incident {i.id}", show_header=False)
    for name, value in (
        ("status", i.status),
        ("title", i.title),
        ("first detected", show(i.opened_at)),
        ("aware", show(i.aware_at) if i.aware_at else "not yet (incidents ack)"),
        ("alerts", str(i.alert_count)),
        ("assets", ", ".join(a.name for a in i.assets) or "-"),
        ("impact", ", ".join(f"{k}={v}" for k, v in i.impact.items()) or "-"),
        ("verdict", i.significance.verdict if i.significance else "-"),
        ("criteria met", ", ".join(m.id for m in i.significance.met) if i.significance else "-"),
        ("missing", ", ".join(i.significance.missing) if i.significance else "-"),
        ("gdpr", f"{i.gdpr.status}, due {show(i.gdpr.due)}" if i.gdpr else "-"),
    ):
        facts.add_row(name, value)
    console.print(facts)
    _show_deadlines(console, i)
    history = Table(title="timeline")
    for column in ("when (Brussels)", "who", "what", "why"):
        history.add_column(column, overflow="fold")
    for t in i.history:
        history.add_row(show(t.at), t.who, t.action, t.why)
    console.print(history)


def _show_deadlines(console: Console, i: Incident) -> None:
    table = Table(title="deadlines and reports")
    for column in ("report", "due (Brussels)", "state", "report status", "source"):
        table.add_column(column)
    delivered = i.delivered()
    now = _now()
    for d in i.deadlines:
        report = i.reports.get(d.key)
        state = _deadline_state(i, d, delivered, now)
        table.add_row(d.key, show(d.due), state, report.status if report else "-", d.source)
    console.print(table)


def _deadline_state(i: Incident, d: DeadlineView, delivered: set[str], now: datetime) -> str:
    """A deadline's state as `status` judges it. Only an agent's pass marks `overdue`, so a
    deadline passed since (or moved into the past by `ack --at`) showed as `open`; and one
    a later report discharged (the notification, the early warning) is owed no more."""
    if d.key in delivered:
        return "delivered"
    if d.key not in i.pending:
        return "discharged"
    if d.key in i.overdue or d.due < now:
        return "OVERDUE"
    return "open"


def cmd_ack(ctx: Context, args: argparse.Namespace) -> int:
    incident = ctx.flow.desk.ack(args.id, args.by, args.reason, args.at)
    # The clocks now run from awareness: say where they stand, so that a mistyped --at
    # (a year early) shows as reports already overdue, not only at the agent's next pass.
    said = f"acknowledged by {args.by}; {_owed_now(incident)}"
    if args.at is not None and args.at < incident.opened_at:
        # Possible (a partner called before any alert), but also a mistyped date: the
        # reports will state an awareness earlier than anything the agent detected.
        said += (
            f"; aware before the first detection ({show(incident.opened_at)}), as the "
            "reports will say"
        )
    return _done(ctx, args, incident, said)


def cmd_impact(ctx: Context, args: argparse.Namespace) -> int:
    facts: dict[str, Any] = dict(args.fact or [])
    for flag, (name, _, _) in NUMBERS.items():
        if getattr(args, flag) is not None:
            facts[name] = getattr(args, flag)
    for flag, name in FLAGS.items():
        if getattr(args, flag) is not None:
            facts[name] = getattr(args, flag)
    narrative: dict[str, Any] = {t: getattr(args, t) for t in TEXTS if getattr(args, t)}
    if args.member_states:
        narrative["member_states"] = [s.strip().upper() for s in args.member_states.split(",")]
    gdpr = {
        k: v
        for k, v in (
            ("gba_reference", args.gba_reference),
            ("not_required", args.gdpr_not_required),
            ("aware_at", args.personal_data_at and args.personal_data_at.isoformat()),
        )
        if v
    }
    if not (facts or narrative or gdpr):
        raise IncidentError("nothing to record: give at least one fact, e.g. --users 1200")
    incident = ctx.flow.desk.record_impact(args.id, args.by, facts, narrative, gdpr)
    verdict = incident.significance.verdict if incident.significance else "-"
    said = f"impact recorded; significance: {verdict}"
    if incident.gdpr is not None and incident.gdpr.status == "due":
        late = " (OVERDUE: notify it now)" if _now() > incident.gdpr.due else ""
        said += f"; GDPR notification to the GBA/APD due {show(incident.gdpr.due)}{late}"
    if args.personal_data_at is not None and args.personal_data_at < incident.opened_at:
        # As `ack --at` says it: possible (the DPO was told first), or a mistyped date.
        said += f"; breach known before the first detection ({show(incident.opened_at)})"
    return _done(ctx, args, incident, said)


def cmd_report(ctx: Context, args: argparse.Namespace) -> int:
    stage = stage_named(args.stage)
    incident = ctx.flow.desk.book.get(args.id)
    names: Names = "keep" if args.names_ok else "refuse"
    incident, key, new = ctx.flow.reporter.queue(
        incident, stage, args.by, args.request, names=names, remake=True
    )
    entry = ctx.flow.reporter.notifier.entry(key)
    if entry is None:
        raise IncidentError(f"outbox entry {key} is missing; run the command again")
    from nis2triage.reports.render import claim, write

    out = Path(args.out) if args.out else ctx.cfg.resolve(ctx.cfg.incidents.report_dir)
    try:
        claim(out, ctx.cfg.state.index_prefix)
        files = write(out, entry["payload"], incident.id)
    except OSError as exc:
        raise IncidentError(
            f"the report is queued, but its files cannot be written to {out}: "
            f"{exc.strerror or exc}; fix the folder (or give --out) and run the command again"
        ) from exc
    said = "queued" if new else f"already queued ({entry['status']})"
    if not new and entry["status"] == "dry-run":
        said = "made again (dry-run)"
    if args.json:
        return _print_json(
            {"key": key, "new": new, "status": entry["status"], "files": [str(f) for f in files]}
        )
    ctx.console.print(f"{stage.label} {key} {said} for {', '.join(entry.get('channels', []))}")
    for f in files:
        ctx.console.print(f"  {f}")
    if entry["status"] == "pending":
        ctx.console.print(_when_sent(ctx))
    elif entry["status"] == "dry-run":
        ctx.console.print(
            "dry-run: stored in the outbox as it would be sent, and not sent (notifier.mode)"
        )
    return 0


def cmd_submitted(ctx: Context, args: argparse.Namespace) -> int:
    stage = stage_named(args.stage)
    incident = ctx.flow.reporter.submitted(
        args.id, stage, args.by, args.reference, args.request, args.at
    )
    return _done(ctx, args, incident, f"{stage.label} recorded as submitted ({args.reference})")


def cmd_request(ctx: Context, args: argparse.Namespace) -> int:
    incident = ctx.flow.desk.request(args.id, args.ref, args.due, args.by)
    return _done(ctx, args, incident, f"intermediate report {args.ref} due {show(args.due)}")


def cmd_close(ctx: Context, args: argparse.Namespace) -> int:
    incident = ctx.flow.desk.close(args.id, args.by, args.reason)
    return _done(ctx, args, incident, f"closed; {_still_owed(incident)}")


def _owed_label(key: str) -> str:
    """A pending deadline's key as a person reads it (the GDPR duty is one of them)."""
    if key == GDPR_KEY:
        return "GDPR notification to the data protection authority"
    return BY_REPORT[key].label.lower() if key in BY_REPORT else key.replace("_", " ")


def _owed_now(incident: Incident) -> str:
    """The reports owed with their due times, those already past marked OVERDUE."""
    now = _now()
    due = {d.key: d.due for d in incident.deadlines}
    late = " (OVERDUE: send it now)"
    # On time up to and including the due instant, as the deadlines' watch holds.
    owed = [
        f"{_owed_label(k)} due {show(due[k])}{late if now > due[k] else ''}"
        for k in incident.pending
        if k in due
    ]
    return "owed: " + "; ".join(owed) if owed else "no report is owed yet"


def _still_owed(incident: Incident) -> str:
    """The reports a closed incident still owes, each with its due time: closing ends the
    handling, not the reporting duty."""
    due = {d.key: d.due for d in incident.deadlines}
    owed = [f"{_owed_label(k)} due {show(due[k])}" for k in incident.pending if k in due]
    if not owed:
        return "no report is owed"
    return "still owed: " + "; ".join(owed)


def _done(ctx: Context, args: argparse.Namespace, incident: Incident, said: str) -> int:
    if args.json:
        return _print_json(incident.to_doc(_now()))
    ctx.console.print(f"incident {incident.id}: {said} (status {incident.status})")
    return 0


def _print_json(value: Any) -> int:
    print(json.dumps(value, indent=2, default=str))
    return 0


# --- the parser ---------------------------------------------------------------


Parents = list[argparse.ArgumentParser]
Handler = Callable[[Context, argparse.Namespace], int]


def register(sub: Any) -> None:
    """Add `incidents` and its subcommands to the main parser's subparsers."""
    what = "list, show, acknowledge and report incidents"
    parser = sub.add_parser("incidents", help=what, description=what)
    # `incidents -c FILE list` is taken as well as `incidents list -c FILE`: before, the
    # file was read as the subcommand's name and refused as an invalid choice.
    parser.add_argument("-c", "--config", dest="config_first", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="incidents_command", metavar="SUBCOMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False, parents=[logs.verbose_flag()])
    common.add_argument("-c", "--config", help="the agent's YAML configuration (required)")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    who = argparse.ArgumentParser(add_help=False)
    default_by = os.environ.get("NIS2TRIAGE_ANALYST") or getpass.getuser()
    who.add_argument(
        "--by", type=_named, default=default_by, help=f"who acts (default {default_by})"
    )

    _reading(commands, [common])
    _acting(commands, [common, who])
    _impact_parser(commands, [common, who])
    _reporting(commands, [common, who])


def _command(commands: Any, name: str, handler: Handler, parents: Parents, what: str) -> Any:
    parser = commands.add_parser(name, parents=parents, help=what, description=what)
    parser.set_defaults(handler=run, incident_handler=handler)
    return parser


def _reading(commands: Any, parents: Parents) -> None:
    listing = _command(commands, "list", cmd_list, parents, "open incidents, newest first")
    listing.add_argument("--status", help="only this status (e.g. aware, closed)")
    listing.add_argument("--all", action="store_true", help="closed ones too")
    listing.add_argument(
        "--limit", type=_limit, default=50, help=f"at most this many (1 to {MAX_LIST:,})"
    )
    showing = _command(commands, "show", cmd_show, parents, "one incident with its timeline")
    showing.add_argument("id", help="the incident id or a unique prefix (6+ characters)")


def _acting(commands: Any, parents: Parents) -> None:
    ack = _command(commands, "ack", cmd_ack, parents, "acknowledge: the NIS2 clocks start")
    ack.add_argument("id")
    ack.add_argument(
        "--reason", type=_prose, default="acknowledged by an analyst after the initial assessment"
    )
    ack.add_argument(
        "--at",
        type=_past,
        help="when the entity became aware (ISO time with offset; default now): the NIS2 "
        "deadlines run from awareness, not from its recording",
    )
    close = _command(commands, "close", cmd_close, parents, "handling has ended")
    close.add_argument("id")
    close.add_argument("--reason", type=_prose, default="handling ended")


def _reporting(commands: Any, parents: Parents) -> None:
    # --stage takes the names `incidents show` prints (early_warning, incident_notification)
    # as well: cli_name turns them into the command line's before the choice is checked.
    report = _command(commands, "report", cmd_report, parents, "make and queue one report")
    report.add_argument("id")
    report.add_argument("--stage", required=True, type=cli_name, choices=sorted(BY_CLI))
    report.add_argument("--request", type=_named, help="the request an intermediate report answers")
    report.add_argument("--out", help="where to write the files (default incidents.report_dir)")
    report.add_argument(
        "--names-ok",
        action="store_true",
        help="send account and host names the analyst's text holds as written",
    )
    what = "record a report submitted on the CCB platform"
    submitted = _command(commands, "submitted", cmd_submitted, parents, what)
    submitted.add_argument("id")
    submitted.add_argument("--stage", required=True, type=cli_name, choices=sorted(BY_CLI))
    submitted.add_argument(
        "--reference", required=True, type=_named, help="the CCB's reference for it"
    )
    submitted.add_argument(
        "--request", type=_named, help="for an intermediate report: the request it answered"
    )
    submitted.add_argument(
        "--at",
        type=_past,
        help="when it was submitted (ISO time with offset; default now): the final report "
        "is due a month after the notification's submission",
    )
    what = "record a request for an intermediate report"
    request = _command(commands, "request", cmd_request, parents, what)
    request.add_argument("id")
    request.add_argument(
        "ref", type=_named, help="the CSIRT's or authority's reference for the request"
    )
    request.add_argument("--due", required=True, type=_due, help="ISO time with offset or 48h")


def _impact_parser(commands: Any, parents: Parents) -> None:
    impact = _command(commands, "impact", cmd_impact, parents, "record impact, cause, mitigation")
    impact.add_argument("id")
    for flag, (_, kind, what) in NUMBERS.items():
        impact.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=kind, help=what)
    for flag, name in FLAGS.items():
        impact.add_argument(
            f"--{flag.replace('_', '-')}", dest=flag, type=_yes_no, metavar="yes|no", help=name
        )
    impact.add_argument(
        "--fact", type=_fact, action="append", metavar="NAME=VALUE", help="any other fact"
    )
    for text in TEXTS:
        impact.add_argument(f"--{text.replace('_', '-')}", dest=text, type=_prose)
    impact.add_argument("--member-states", type=_named, help="Member States affected, e.g. BE,NL")
    impact.add_argument(
        "--gba-reference", type=_named, help="the GBA/APD reference of the GDPR notification"
    )
    impact.add_argument(
        "--gdpr-not-required", type=_prose, metavar="REASON", help="why no GDPR notification is due"
    )
    impact.add_argument(
        "--personal-data-at",
        type=_past,
        metavar="TIME",
        help="when the entity became aware of the personal-data breach (ISO time with offset; "
        "default now): GDPR's 72 hours run from then",
    )


def run(args: argparse.Namespace) -> int:
    """Entry point from nis2triage.cli: connect, then the chosen subcommand."""
    handler = getattr(args, "incident_handler", None)
    assert handler is not None
    reading = args.incidents_command in ("list", "show")
    config = args.config or getattr(args, "config_first", None)
    if config is None:
        # A usage error, with argparse's status 2, so that scripts tell it from a failure.
        print(
            f"nis2triage incidents {args.incidents_command}: the agent's configuration is "
            f"needed: nis2triage incidents {args.incidents_command} "
            "-c /etc/nis2triage/nis2triage.yml",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return int(handler(connect(config, reading), args))
