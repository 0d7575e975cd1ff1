"""The `nis2triage` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from nis2triage import __version__
from nis2triage.errors import Nis2TriageError

log = logging.getLogger("nis2triage")

Handler = Callable[[argparse.Namespace], int]


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from nis2triage.demo import run_demo

    # Piped into a file or CI log, rich would wrap the table at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=140)
    return run_demo(console)


def cmd_run(args: argparse.Namespace) -> int:
    from nis2triage import esclient, snapshots
    from nis2triage.agent import Agent
    from nis2triage.config import es_settings, load_config, read_secret

    cfg = load_config(args.config)
    es = esclient.connect(es_settings(cfg))
    info = esclient.cluster_info(es)
    log.info("connected to Elasticsearch %s (cluster %s)", info.version, info.name)
    key = snapshots.key_from_env(cfg.state.snapshot_key_env)
    pseudonym = os.environ.get(cfg.notifier.pseudonym_key_env)
    token = (
        read_secret(cfg.notifier.token_env, None, "notifier token")
        if cfg.notifier.mode == "send"
        else None
    )
    agent = Agent(cfg, es, key, pseudonym.encode() if pseudonym else None, token=token)
    agent.start()
    if args.once:
        report = agent.run_once()
        print(
            f"{report.events} events, {len(report.alerts)} alerts "
            f"({report.new_alerts} new; routes {dict(report.routes)}), "
            f"{report.notifications_queued} notifications queued, {report.notifications_sent} sent"
        )
        return 0
    agent.run_forever()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nis2triage",
        description="Online anomaly detection, triage and NIS2 reporting beside Elasticsearch.",
    )
    parser.add_argument("--version", action="version", version=f"nis2triage {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="poll, detect, triage and notify (Ctrl-C stops cleanly)")
    run.add_argument("-c", "--config", required=True, help="the agent's YAML configuration")
    run.add_argument("--once", action="store_true", help="one pass over new events, then exit")
    run.set_defaults(handler=cmd_run)

    demo = sub.add_parser("demo", help="the whole flow on a local node with the real SSH log")
    demo.set_defaults(handler=cmd_demo)

    from nis2triage import cli_incidents

    cli_incidents.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The client logs every request at INFO; one line per request drowns what matters.
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except Nis2TriageError as exc:
        print(f"nis2triage: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
