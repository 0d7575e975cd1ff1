"""The `nis2triage` command line."""

from __future__ import annotations

import argparse
import logging
import os
import select
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nis2triage import __version__, cli_setup, gc_tuning, logs
from nis2triage.errors import ConfigError, ConnectionSetupError, LeaseHeld, Nis2TriageError
from nis2triage.terminal import text_console

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from nis2triage.agent import Agent, CycleReport
    from nis2triage.config import AgentConfig
    from nis2triage.metrics import MetricsServer

log = logging.getLogger("nis2triage")

Handler = Callable[[argparse.Namespace], int]


def cmd_demo(args: argparse.Namespace) -> int:
    from nis2triage.demo import run_demo

    # Piped into a file or CI log, rich would wrap the table at 80 columns.
    console = text_console(width=None if sys.stdout.isatty() else 140)
    return run_demo(console)


def cmd_run(args: argparse.Namespace) -> int:
    from nis2triage import esclient, snapshots
    from nis2triage.config import credential_of, es_settings, load_config, read_secret

    cfg = load_config(args.config)
    settings = es_settings(cfg)
    es = esclient.connect(settings)
    key = snapshots.key_from_env(cfg.state.snapshot_key_env)
    pseudonym = os.environ.get(cfg.notifier.pseudonym_key_env)
    # Only the http channel sends the token: a configuration over manual or smtp that
    # keeps token_env (as the example does) must not stop on a variable nothing reads.
    token = (
        read_secret(cfg.notifier.token_env, None, "notifier token")
        if cfg.notifier.mode == "send" and "http" in cfg.incidents.channels
        else None
    )
    if token is not None and not token.isascii():
        # It goes into the Authorization header, which carries ASCII only: every attempt
        # would fail.
        raise ConfigError(
            f"notifier token: environment variable {cfg.notifier.token_env} holds a "
            "character outside ASCII, which an HTTP header cannot carry (the value is not "
            "shown)"
        )
    for secret in (settings.password, settings.api_key, token, pseudonym, key):
        logs.register_secret(secret)
    agent, server = _agent(args, cfg, es, key, pseudonym.encode() if pseudonym else None, token)
    if args.once:
        try:
            info = esclient.cluster_info(es, credential_of(cfg))
        except ConnectionSetupError as exc:
            # As `status` says it: which address, from which file.
            where = f"{cfg.elasticsearch.hosts[0]} (elasticsearch in {args.config})"
            raise ConnectionSetupError(f"{where}: {exc}") from exc
        log.info("connected to Elasticsearch %s (cluster %s)", info.version, info.name)
        agent.start()
        holder = agent.hold_for_one_pass()
        if holder is not None:
            raise LeaseHeld(
                f"another agent runs on the state prefix {cfg.state.index_prefix} "
                f"({holder.describe()}): stop it first, or give this configuration its own "
                "state.index_prefix"
            )
        try:
            report = agent.run_once()
        finally:
            agent.stop_processes()
            agent.lease.release()
        print(_pass_summary(report, agent.store.index("outbox")))
        return 0
    try:
        agent.run_forever()
    finally:
        if server:
            server.stop()
    return 0


def _pass_summary(report: CycleReport, outbox: str) -> str:
    """One line for `run --once`: what was read, found and delivered."""
    line = (
        f"{report.events} events read, {len(report.alerts)} alerts "
        f"({report.new_alerts} new; routes {dict(report.routes)}), "
        f"{report.notifications_queued} notifications queued, {report.notifications_sent} sent"
    )
    if report.notifications_handed_over:
        # Otherwise the manual channel's reports looked lost: written, yet "0 sent".
        line += (
            f", {report.notifications_handed_over} written to incidents.report_dir for a "
            "person to submit (see `nis2triage incidents submitted`)"
        )
    if report.notifications_unsent:
        # Otherwise an endpoint that was down showed as "0 sent" alone, its failure said
        # in a WARNING line only.
        line += (
            f", {report.notifications_unsent} not delivered yet (retried at the next cycles; "
            f"see {outbox})"
        )
    return line


def _agent(
    args: argparse.Namespace,
    cfg: AgentConfig,
    es: Elasticsearch,
    key: bytes,
    pseudonym: bytes | None,
    token: str | None,
) -> tuple[Agent, MetricsServer | None]:
    """The agent, metered and serving /metrics and /health when a port is given."""
    from nis2triage.agent import Agent
    from nis2triage.metrics import AgentMetrics, MeteredAgent, MetricsServer

    if args.metrics_port is None:
        return Agent(cfg, es, key, pseudonym, token=token), None
    interval = min(s.poll_interval for s in cfg.sources).total_seconds()
    # A cycle that has not ended well for 5 intervals (at least 5 minutes) makes /health 503.
    metrics = AgentMetrics(stale_after_s=max(5 * interval, 300.0))
    server = MetricsServer(metrics, args.metrics_host, args.metrics_port)
    server.start()
    return MeteredAgent(metrics, cfg, es, key, pseudonym, token=token), server


def _checked_as(kind: str, no_references: bool) -> str:
    # The count below is of the files given; a configuration's own files are checked with it
    # and named only when wrong, so its line says whether they were.
    if kind != "configuration":
        return kind
    if no_references:
        return "configuration; the files it names not checked"
    return "configuration, with the files it names"


def cmd_validate(args: argparse.Namespace) -> int:
    from nis2triage.rules.alerts import plural
    from nis2triage.validate import validate

    findings = validate(args.paths, references=not args.no_references)
    if not findings:
        print("nis2triage: no YAML files found under " + ", ".join(args.paths), file=sys.stderr)
        return 1
    for finding in findings:
        if finding.ok:
            print(f"ok      {finding.path} ({_checked_as(finding.kind, args.no_references)})")
        else:
            print(f"ERROR   {finding.problem}")
    failed = sum(not f.ok for f in findings)
    print(f"{plural(len(findings), 'file')} checked, {failed} with errors")
    return 1 if failed else 0


def port_number(text: str) -> int:
    """A TCP port to listen on: 1 to 65535, or 0 for one the system picks."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give 1 to 65535 (9464 is usual)")
    return port


# More buckets than a terminal shows would only hide the nearest ones.
MAX_CLOSEST = 1000


def _count_arg(text: str) -> int:
    """How many buckets `replay --closest` lists: 0 (none) to `MAX_CLOSEST`."""
    try:
        count = int(text)
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_CLOSEST:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count: give 0 to {MAX_CLOSEST}")
    return count


# Times a replay may ask for: its rules look back and step from them, and a datetime
# stops at year 9999; no log is older than the Unix epoch.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (UTC when no zone is given), or 'now', or 'now-2d' style."""
    parsed = _time_given(text)
    if not EARLIEST <= parsed < LATEST:
        raise argparse.ArgumentTypeError(
            f"{text!r} is outside the times a replay can read: give a time from "
            f"{EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d}"
        )
    return parsed


def _time_given(text: str) -> datetime:
    from nis2triage.config import parse_duration

    now = datetime.now(UTC)
    if text == "now":
        return now
    if text.startswith("now-"):
        try:
            return now - parse_duration(text[4:])
        except OverflowError as exc:
            raise argparse.ArgumentTypeError(
                f"{text!r} reaches before the year 1: give a shorter duration"
            ) from exc
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"after now-: {exc}") from exc
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: write 2026-12-01T00:00, 2026-12-01 or now-2d"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cmd_replay(args: argparse.Namespace) -> int:

    from nis2triage import esclient, triage
    from nis2triage.assets import load_inventory
    from nis2triage.config import es_settings, load_config
    from nis2triage.detectors import load_specs
    from nis2triage.replay import run_replay, summary
    from nis2triage.rulerunner import load_native
    from nis2triage.store import Store, alert_document

    if not args.start < args.end:
        print("nis2triage: --from must be before --to", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    specs = load_specs(cfg.detector_files())
    rules = load_native(cfg)
    if args.detector or args.rule:
        unknown = _unknown_names(args.detector, [s.name for s in specs], "detector")
        unknown += _unknown_names(args.rule, [r.name for r in rules], "rule")
        if unknown:
            print("\n".join(f"nis2triage: {line}" for line in unknown), file=sys.stderr)
            return 2
        specs = [s for s in specs if s.name in (args.detector or [])]
        rules = [r for r in rules if r.name in (args.rule or [])]
    es = esclient.connect(es_settings(cfg))
    console = text_console(stderr=True)
    result = run_replay(es, cfg, specs, rules, args.start, args.end, console, args.closest)
    summary(result, text_console())
    if args.write:
        inventory = load_inventory(cfg.resolve(cfg.assets) if cfg.assets else None)
        rules_t = triage.load_rules(cfg.resolve(cfg.triage) if cfg.triage else None)
        routed = [triage.route(a, rules_t, inventory) for a in result.alerts]
        store = Store(es, cfg.state.index_prefix)
        store.ensure_indices()
        docs = [(a.id, alert_document(a)) for a, _ in routed]
        print(f"{store.create_many('alerts', docs)} new alerts written to {store.index('alerts')}")
    return 1 if result.failed else 0


def _unknown_names(asked: list[str] | None, known: list[str], what: str) -> list[str]:
    """A line per name the configuration does not define, with the names it does."""
    return [
        f"no {what} named {name!r} in the configuration; its {what}s: "
        + (", ".join(repr(k) for k in known) or "none")
        for name in asked or []
        if name not in known
    ]


def _command(
    sub: Any, name: str, parents: list[argparse.ArgumentParser], what: str
) -> argparse.ArgumentParser:
    """A subcommand whose own --help says what it does, as the command list does."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, parents=parents, help=what, description=what
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nis2triage",
        description="Online anomaly detection, triage and NIS2 reporting beside Elasticsearch.",
    )
    parser.add_argument("--version", action="version", version=f"nis2triage {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    verbose = [logs.verbose_flag()]
    run = _command(sub, "run", verbose, "poll, detect, triage and notify (Ctrl-C stops cleanly)")
    run.add_argument("-c", "--config", required=True, help="the agent's YAML configuration")
    run.add_argument("--once", action="store_true", help="one pass over new events, then exit")
    run.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="N",
        help="serve /metrics (Prometheus) and /health on this port (off by default; 9464 is usual)",
    )
    run.add_argument(
        "--metrics-host", default="127.0.0.1", help="address to serve them on (loopback)"
    )
    run.set_defaults(handler=cmd_run)

    cli_setup.add_parser(sub)

    check = _command(sub, "validate", verbose, "check configuration, rules and detector files")
    check.add_argument("paths", nargs="+", help="files or folders of YAML files")
    check.add_argument(
        "--no-references",
        action="store_true",
        help="do not check the files a configuration names (validating for another machine)",
    )
    check.set_defaults(handler=cmd_validate)

    replay = _command(sub, "replay", verbose, "run detectors and rules over a past time range")
    replay.add_argument("-c", "--config", required=True, help="the agent's YAML configuration")
    replay.add_argument(
        "--from",
        dest="start",
        type=parse_time,
        required=True,
        help="start: 2026-12-01T00:00 (UTC unless an offset is given), 2026-12-01 or now-2d",
    )
    replay.add_argument(
        "--to",
        dest="end",
        type=parse_time,
        default="now",
        help="end, written as --from (default: now)",
    )
    replay.add_argument(
        "--rule", action="append", help="only the native rule of this `name:` (repeatable)"
    )
    replay.add_argument("--detector", action="append", help="only this detector (repeatable)")
    replay.add_argument("--write", action="store_true", help="write the alerts (default: no)")
    replay.add_argument(
        "--closest",
        type=_count_arg,
        default=0,
        metavar="N",
        help="also list the N buckets nearest to alerting that did not, with their score "
        "and the bar they missed",
    )
    replay.set_defaults(handler=cmd_replay)

    demo = _command(sub, "demo", verbose, "the whole flow on a local node with the real SSH log")
    demo.set_defaults(handler=cmd_demo, for_people=True)

    from nis2triage import cli_incidents, cli_status

    cli_incidents.register(sub)
    cli_status.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Elasticsearch accepts documents nested about a thousand levels deep; decoding one
    # must not exhaust Python's default recursion limit of 1,000 frames.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(verbose=args.verbose, for_people=getattr(args, "for_people", False))
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    from nis2triage.agent import describe_outage
    from nis2triage.esclient import unreached

    try:
        # The agent's commands stream documents (see gc_tuning); for the others it is moot.
        with gc_tuning.streaming():
            return handler(args)
    except Nis2TriageError as exc:
        return _failed(args, str(exc))
    except TransportError as exc:
        # status, incidents and replay meet the node first here: the loop's short words
        # ("cannot be reached (ConnectionError)") named neither the address nor the fix.
        return _failed(args, unreached(exc))
    except ApiError as exc:
        return _failed(args, f"{describe_outage(exc)}{_whose(args, exc)}")
    except BrokenPipeError:
        if not _stdout_gone():
            raise
        return 141  # 128 + SIGPIPE: what a shell reports for a command so cut off


def _failed(args: argparse.Namespace, message: str) -> int:
    """Say the error that ends the command; 1. A plain line for a person, but the agent's
    service (`run`, its log in ECS JSON) says it as one more JSON record: a pipeline reading
    its journal otherwise failed to parse exactly the line saying why it stopped."""
    if args.command == "run" and logs.as_json():
        log.error("%s", message)
    else:
        print(f"nis2triage: {message}", file=sys.stderr)
    return 1


def _stdout_gone() -> bool:
    """Whether standard output's reader has gone (`nis2triage ... --json | head`).

    Said quietly, as other command-line tools do, rather than as a traceback. Asked of the
    pipe itself (POLLERR: no reader left), since a broken pipe may also come from a socket,
    which must still be raised. Stdout then points at /dev/null, so that Python's own flush
    at exit does not fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    if not any(events & select.POLLERR for _, events in poller.poll(0)):
        return False
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return True


def _whose(args: argparse.Namespace, refusal: Exception) -> str:
    """For a 401, which credential the configuration gave: status and incidents meet the
    node here first, where the refusal alone did not say what to check."""
    from nis2triage.config import credential_of, load_config

    path = getattr(args, "config", None) or getattr(args, "config_first", None)
    if getattr(getattr(refusal, "meta", None), "status", None) != 401 or not path:
        return ""
    try:
        return f"; the configuration gives {credential_of(load_config(path))}"
    except Nis2TriageError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
