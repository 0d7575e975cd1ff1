"""Reports still go out while a rule's search is refused, on the real node with a real key,
and the refusal is said with its likely cause.

A rule whose index pattern takes in an alias over an index the agent's role does not cover
(another agent's alerts behind the shared Elastic Security alias, say) passes the start's
read check, but its point-in-time search answers 403 on every cycle. The detectors' alerts
of the same cycle were written and their early warnings queued: they must still be
delivered, and the deadlines still watched, while that condition is waited out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from elasticsearch import Elasticsearch

from nis2triage import esclient
from nis2triage.config import load_config
from nis2triage.demo import index_docs

from ccb_server import CcbServer, running_ccb
from support import real_log_docs, write_agent_config

RUN = uuid.uuid4().hex[:8]
SOURCE = f"t-rule-refused-{RUN}"
HIDDEN = f"t-hidden-{RUN}"
ENV = {
    "NIS2TRIAGE_CCB_TOKEN": f"rr-token-{RUN}",
    "NIS2TRIAGE_PSEUDONYM_KEY": f"rr-pseudonym-key-{RUN}-0123456789abcdef",
    "NIS2TRIAGE_SNAPSHOT_KEY": f"rr-snapshot-key-{RUN}-0123456789abcdef",
}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ENV, **env},
    )


@pytest.fixture
def indices(es: Elasticsearch) -> Iterator[None]:
    index_docs(es, SOURCE, real_log_docs())
    # The rule reads `<source>-r*`: one index of its own, and an alias whose name the
    # pattern takes in, over an index the agent's role does not name.
    es.indices.create(index=f"{SOURCE}-r-own", settings={"number_of_replicas": 0})
    es.indices.create(index=HIDDEN, settings={"number_of_replicas": 0})
    es.index(index=HIDDEN, document={"@timestamp": datetime.now(UTC).isoformat()}, refresh=True)
    es.indices.put_alias(index=HIDDEN, name=f"{SOURCE}-r-alias")
    yield
    for pattern in (f"{SOURCE}*", HIDDEN):
        es.options(ignore_status=404).indices.delete(index=pattern, expand_wildcards="all")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{SOURCE}*")


@pytest.fixture
def ccb() -> Iterator[CcbServer]:
    with running_ccb() as server:
        yield server


@pytest.mark.usefixtures("indices")
def test_early_warnings_are_delivered_while_a_rules_search_is_refused(
    es: Elasticsearch, es_settings: esclient.ESSettings, tmp_path: Path, ccb: CcbServer
) -> None:
    rule = tmp_path / "rules" / "any.yml"
    rule.parent.mkdir()
    rule.write_text(f"name: every event\ntype: any\nindex: {SOURCE}-r*\n")
    notifier = {"mode": "send", "endpoint": ccb.url, "token_env": "NIS2TRIAGE_CCB_TOKEN"}
    config = write_agent_config(
        tmp_path, es_settings, SOURCE, f"{SOURCE}-st", notifier, {"native": [str(rule)]}
    )
    admin = {"NIS2TRIAGE_TEST_ES_PASSWORD": es_settings.password or ""}
    setup = cli("setup", "--config", str(config), "--create-api-key", env=admin)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    lines = setup.stdout.splitlines()
    key = lines[lines.index(next(x for x in lines if x.startswith("The agent's API key"))) + 1]
    settings = yaml.safe_load(config.read_text())
    settings["elasticsearch"] = {"hosts": list(es_settings.hosts), "api_key_env": "T_RR_API_KEY"}
    config.write_text(yaml.safe_dump(settings))

    try:
        done = cli("run", "--config", str(config), "--once", env={"T_RR_API_KEY": key.strip()})
    finally:
        es.security.invalidate_api_key(name=f"{load_config(config).state.index_prefix}-agent")

    # The rule's refusal still fails the pass (it is waited out as before), named ...
    assert done.returncode == 1 and "403" in done.stderr, done.stderr[-2000:]
    said = [json.loads(line)["message"] for line in done.stderr.splitlines() if line[:1] == "{"]
    assert [m for m in said if m.startswith("rule every event: ")] == [
        f"rule every event: Elasticsearch refuses its search (403) although the agent may "
        f"read {SOURCE}-r*: most likely an alias those names take in covers an index the "
        "agent's role does not name (another agent's alerts under a shared Elastic Security "
        "alias, say); leave that alias out of the rule's index, or give the role read on the "
        "index. The rules wait until then; detectors and reports go on"
    ]
    # ... but the early warnings the detectors' alerts queued went out all the same.
    reports = [r.json().get("report_type") for r in ccb.received]
    assert reports and set(reports) == {"early_warning"}, done.stderr[-2000:]
