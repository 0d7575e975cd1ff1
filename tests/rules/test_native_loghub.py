"""The shipped SSH brute-force rule on real sshd logs (loghub OpenSSH_2k), against the node."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from elasticsearch import Elasticsearch, helpers

from nis2triage.rules.engine import run_rule
from nis2triage.rules.loader import load_rule
from nis2triage.rules.native import FrequencyRule
from nis2triage.rules.state import RuleState

from native_support import MAPPING
from support import REPO, shared_data

# The log has no year or zone; 2024 and UTC are assumptions that change nothing here.
LINE = re.compile(
    r"^(\w{3} +\d+ [\d:]+) (\S+) sshd\[\d+\]: (?:message repeated \d+ times: \[ )?"
    r"(Failed|Accepted) password for (?:invalid user )?(.*?) from ([\d.]+) port"
)
START, END = datetime(2024, 12, 10, 6, 50, tzinfo=UTC), datetime(2024, 12, 10, 11, 10, tzinfo=UTC)


def sshd_events() -> list[dict[str, object]]:
    events = []
    for line in shared_data("loghub", "OpenSSH_2k.log").read_text().splitlines():
        if found := LINE.match(line):
            stamp, host, outcome, user, address = found.groups()
            at = datetime.strptime(f"2024 {stamp}", "%Y %b %d %H:%M:%S").replace(tzinfo=UTC)
            events.append(
                {
                    "@timestamp": at.isoformat(),
                    "host.name": host,
                    "user.name": user,
                    "source.ip": address,
                    "event.action": "ssh_login",
                    "event.outcome": "failure" if outcome == "Failed" else "success",
                }
            )
    return events


def guessers(events: list[dict[str, object]], count: int, within: timedelta) -> set[str]:
    """Oracle: addresses with `count` failures inside some `within`-long stretch."""
    times: dict[str, list[datetime]] = defaultdict(list)
    for e in events:
        if e["event.outcome"] == "failure":
            times[str(e["source.ip"])].append(datetime.fromisoformat(str(e["@timestamp"])))
    return {
        address
        for address, ts in times.items()
        if any(ts[i + count - 1] - ts[i] <= within for i in range(len(ts) - count + 1))
    }


def test_shipped_brute_force_rule_on_real_sshd_logs(es: Elasticsearch, index_name: str) -> None:
    events = sshd_events()
    es.indices.create(index=index_name, mappings=MAPPING)
    helpers.bulk(es, ({"_index": index_name, "_source": e} for e in events), refresh=True)
    rule = load_rule(REPO / "rules" / "detection" / "ssh-brute-force.yml")
    assert isinstance(rule, FrequencyRule)
    rule = rule.model_copy(update={"index": index_name})

    alerts = run_rule(es, rule, START, END, RuleState())

    failures = [e for e in events if e["event.outcome"] == "failure"]
    # 520 failures, as the data's README says; they come from 23 addresses (its "25"
    # counts every address in the log, successful logins and disconnects included).
    assert (len(failures), len({e["source.ip"] for e in failures})) == (520, 23)
    assert {a.entity for a in alerts} == guessers(events, 20, timedelta(minutes=5))
    assert "183.62.140.253" in {a.entity for a in alerts}
    assert all(es.count(index=index_name, q=a.query)["count"] >= 20 for a in alerts)


def test_ten_minute_runs_find_what_one_replay_finds(es: Elasticsearch, index_name: str) -> None:
    es.indices.create(index=index_name, mappings=MAPPING)
    helpers.bulk(es, ({"_index": index_name, "_source": e} for e in sshd_events()), refresh=True)
    rule = load_rule(REPO / "rules" / "detection" / "ssh-brute-force.yml")
    rule = rule.model_copy(update={"index": index_name})
    state, stepped, moment = RuleState(), [], START

    while moment < END:
        stepped += run_rule(es, rule, moment, moment + timedelta(minutes=10), state)
        moment += timedelta(minutes=10)

    replayed = run_rule(es, rule, START, END, RuleState())
    assert sorted(a.id for a in stepped) == sorted(a.id for a in replayed)
