"""Run one ElastAlert 2 rule once over a past range, timed; runs in ElastAlert's own virtualenv.

    python ea_driver.py CONFIG RULE START END [--version-from-nodes]
    python ea_driver.py --create-index CONFIG


ElastAlert's `--start/--end` loop exits before its scheduler has run anything
when the end lies in the past, so this calls its own `run_rule` for the range,
as its scheduler would, and prints one JSON line: seconds, hits, matches.

`--version-from-nodes` answers ElastAlert's version probe from `GET /_nodes/_local`:
it asks `GET /`, which the Elasticsearch test build does not serve (405). Nothing
else is changed. Not imported by nis2triage: ElastAlert is not installed beside it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def version_from_nodes(client: Any) -> str:
    nodes = client.transport.perform_request("GET", "/_nodes/_local")["nodes"]
    return str(next(iter(nodes.values()))["version"])


def create_index(config: str) -> int:
    """ElastAlert's own `elastalert-create-index`, its version probe answered from /_nodes."""
    from elastalert import create_index as ea_create_index

    ea_create_index.get_version_from_cluster_info = version_from_nodes
    sys.argv = ["elastalert-create-index", "--config", config, "--recreate", "True"]
    ea_create_index.main()
    return 0


def main(argv: list[str]) -> int:
    if argv[0] == "--create-index":
        return create_index(argv[1])
    config, rule_file, start, end = argv[:4]
    if "--version-from-nodes" in argv:
        from elastalert import util

        util.get_version_from_cluster_info = version_from_nodes

    from elastalert.elastalert import ElastAlerter
    from elastalert.util import ts_to_dt

    args = ["--config", config, "--rule", rule_file, "--start", start, "--end", end, "--verbose"]
    alerter = ElastAlerter(args)
    [rule] = alerter.rules
    began = time.perf_counter()
    matches = alerter.run_rule(rule, ts_to_dt(end), ts_to_dt(start))
    seconds = time.perf_counter() - began
    hits = alerter.thread_data.cumulative_hits
    print(json.dumps({"seconds": seconds, "hits": hits, "matches": matches}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
