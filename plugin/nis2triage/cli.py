"""The `nis2triage` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from nis2triage import __version__, logs
from nis2triage.errors import Nis2TriageError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from nis2triage.agent import Agent
    from nis2triage.config import AgentConfig
    from nis2triage.esclient import ESSettings
    from nis2triage.metrics import MetricsServer

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
    from nis2triage.config import es_settings, load_config, read_secret

    cfg = load_config(args.config)
    settings = es_settings(cfg)
    es = esclient.connect(settings)
    info = esclient.cluster_info(es)
    log.info("connected to Elasticsearch %s (cluster %s)", info.version, info.name)
    key = snapshots.key_from_env(cfg.state.snapshot_key_env)
    pseudonym = os.environ.get(cfg.notifier.pseudonym_key_env)
    token = (
        read_secret(cfg.notifier.token_env, None, "notifier token")
        if cfg.notifier.mode == "send"
        else None
    )
    for secret in (settings.password, settings.api_key, token, pseudonym, key):
        logs.register_secret(secret)
    agent, server = _agent(args, cfg, es, key, pseudonym.encode() if pseudonym else None, token)
    agent.start()
    if args.once:
        report = agent.run_once()
        print(
            f"{report.events} events, {len(report.alerts)} alerts "
            f"({report.new_alerts} new; routes {dict(report.routes)}), "
            f"{report.notifications_queued} notifications queued, {report.notifications_sent} sent"
        )
        return 0
    try:
        agent.run_forever()
    finally:
        if server:
            server.stop()
    return 0


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


def cmd_setup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from elasticsearch import ApiError

    from nis2triage import esclient, provision
    from nis2triage.config import es_settings, load_config
    from nis2triage.errors import ConnectionSetupError
    from nis2triage.kibana import DEFAULT_OBJECTS

    cfg = load_config(args.config)
    settings = _admin(es_settings(cfg), args)
    es = esclient.connect(settings)
    request = provision.SetupRequest(
        create_role=args.create_role,
        create_api_key=args.create_api_key,
        kibana_url=args.kibana,
        kibana_objects=Path(args.kibana_objects) if args.kibana_objects else DEFAULT_OBJECTS,
    )
    try:
        result = provision.setup(es, cfg, settings, request)
    except ApiError as exc:
        if exc.meta.status not in (401, 403):
            raise
        raise ConnectionSetupError(
            f"setup needs an administrator's credential ({exc.meta.status}: {exc.message}); "
            "pass --admin-user with --admin-password-env, or --admin-api-key-env"
        ) from exc
    print(provision.render(result))
    return 1 if result.failed else 0


def _admin(settings: ESSettings, args: argparse.Namespace) -> ESSettings:
    """The configuration's connection with the administrator's credential, if one is given."""
    from dataclasses import replace

    from nis2triage.config import read_secret

    if args.admin_api_key_env:
        key = read_secret(args.admin_api_key_env, None, "administrator's API key")
        return replace(settings, username=None, password=None, api_key=key)
    if args.admin_user:
        password = read_secret(args.admin_password_env, None, "administrator's password")
        return replace(settings, username=args.admin_user, password=password, api_key=None)
    return settings


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
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="serve /metrics (Prometheus) and /health on this port (off by default; 9464 is usual)",
    )
    run.add_argument(
        "--metrics-host", default="127.0.0.1", help="address to serve them on (loopback)"
    )
    run.set_defaults(handler=cmd_run)

    setup = sub.add_parser(
        "setup", help="create or update index templates, indices, aliases, role, Kibana objects"
    )
    setup.add_argument("-c", "--config", required=True, help="the agent's YAML configuration")
    setup.add_argument(
        "--create-role", action="store_true", help="the agent's least-privilege role"
    )
    setup.add_argument(
        "--create-api-key",
        action="store_true",
        help="the role and an API key that carries it (printed once)",
    )
    setup.add_argument("--admin-user", help="an administrator, instead of the file's credential")
    setup.add_argument("--admin-password-env", help="variable holding that user's password")
    setup.add_argument("--admin-api-key-env", help="variable holding an administrator's API key")
    setup.add_argument("--kibana", metavar="URL", help="import the saved objects into this Kibana")
    setup.add_argument(
        "--kibana-objects",
        help="the saved objects file (default: deploy/kibana/nis2triage.ndjson in the checkout)",
    )
    setup.set_defaults(handler=cmd_setup)

    demo = sub.add_parser("demo", help="the whole flow on a local node with the real SSH log")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(verbose=args.verbose)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    from nis2triage.agent import describe_outage

    try:
        return handler(args)
    except Nis2TriageError as exc:
        print(f"nis2triage: {exc}", file=sys.stderr)
        return 1
    except (TransportError, ApiError) as exc:
        print(f"nis2triage: {describe_outage(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
