"""The `nis2triage` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from nis2triage import __version__
from nis2triage.errors import Nis2TriageError

log = logging.getLogger("nis2triage")

Handler = Callable[[argparse.Namespace], int]


def cmd_demo(args: argparse.Namespace) -> int:
    from nis2triage import esclient, localnode

    node = localnode.start()
    client = esclient.connect(
        esclient.ESSettings(hosts=(node.url,), username=node.user, password=node.password)
    )
    info = esclient.cluster_info(client)
    print(f"Elasticsearch {info.version} (cluster {info.name}) at {node.url}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nis2triage",
        description="Online anomaly detection, triage and NIS2 reporting beside Elasticsearch.",
    )
    parser.add_argument("--version", action="version", version=f"nis2triage {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the whole flow on a local node with sample data")
    demo.set_defaults(handler=cmd_demo)
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
