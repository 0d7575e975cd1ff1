"""The main job on the real SSH log, against the real node."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from nis2triage import esclient
from nis2triage.demo import index_docs

from support import authentication_events, real_log_docs, run_agent, write_agent_config

GROUND_TRUTH_COUNT = 10
GROUND_TRUTH_WINDOW = timedelta(minutes=5)


def brute_forcers(docs: list[dict[str, Any]]) -> set[str]:
    """Ground truth: addresses with 10 or more failed passwords within some 5 minutes."""
    times: dict[str, list[datetime]] = defaultdict(list)
    for d in docs:
        ssh = d.get("system", {}).get("auth", {}).get("ssh", {})
        if ssh.get("event") == "Failed" and ssh.get("method") == "password":
            times[d["source"]["ip"]].append(datetime.fromisoformat(d["@timestamp"]))
    found = set()
    for ip, ts in times.items():
        ts.sort()
        for i, start in enumerate(ts):
            if sum(1 for t in ts[i:] if t - start <= GROUND_TRUTH_WINDOW) >= GROUND_TRUTH_COUNT:
                found.add(ip)
                break
    return found


@pytest.fixture
def ssh_index(es: Elasticsearch, index_name: str) -> tuple[str, list[dict[str, Any]]]:
    docs = real_log_docs()
    index_docs(es, index_name, docs)
    return index_name, docs


@pytest.mark.usefixtures("agent_env")
def test_brute_force_detector_on_the_real_log(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    ssh_index: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    index, docs = ssh_index
    report = run_agent(write_agent_config(tmp_path, es_settings, index, f"{index}-st"), es)

    alerted = {a.entity for a in report.alerts if a.name == "ssh-brute-force"}
    truth = brute_forcers(docs)
    precision = len(alerted & truth) / len(alerted)
    recall = len(alerted & truth) / len(truth)
    print(
        f"\nssh-brute-force: {len(truth)} true brute-forcers, {len(alerted)} alerted, "
        f"precision {precision:.2f}, recall {recall:.2f}; missed {sorted(truth - alerted)}"
    )

    assert {"183.62.140.253", "187.141.143.180", "103.99.0.122"} <= alerted
    # The node is asked only for what the detectors' filters may take: the 638 lines
    # parsed as authentication events, not the 1,362 other sshd lines.
    assert report.events == authentication_events(docs)
    assert 0 < report.events < len(docs)
    # Floors, not the measured values (precision 1.00, recall 0.83 with seed 7; 0.83 to
    # 1.00 precision over seeds 1-11). The address guessing at 07:27 comes before the
    # detector's first reference window of 10 buckets closes, when Half-Space Trees
    # score nothing: an online model with no prior must miss what comes first.
    assert precision >= 0.8
    assert recall >= 0.8


@pytest.mark.usefixtures("agent_env")
def test_the_single_accepted_login_raises_no_brute_force_alert(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    ssh_index: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    index, _ = ssh_index
    report = run_agent(write_agent_config(tmp_path, es_settings, index, f"{index}-st"), es)

    brute = [a for a in report.alerts if a.name == "ssh-brute-force"]
    assert brute, "the detector must have alerted on something for this test to mean anything"
    assert all("119.137.62.142" not in a.related_ips for a in brute)
    assert all("fztu" not in a.related_users for a in brute)


@pytest.mark.usefixtures("agent_env")
def test_alerts_are_ecs_documents_with_route_and_reason(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    ssh_index: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    index, _ = ssh_index
    prefix = f"{index}-st"
    report = run_agent(write_agent_config(tmp_path, es_settings, index, prefix), es)
    es.indices.refresh(index=f"{prefix}-alerts")

    hits = es.search(index=f"{prefix}-alerts", query={"term": {"source.ip": "183.62.140.253"}})
    doc = hits["hits"]["hits"][0]["_source"]
    assert es.count(index=f"{prefix}-alerts")["count"] == len(report.alerts)
    assert doc["event"]["kind"] == "alert"
    assert doc["rule"]["name"] == "ssh-brute-force"
    assert doc["nis2triage"]["route"] == "early_warning"
    assert "asset labsz is high" in doc["nis2triage"]["route_reason"]
    assert doc["nis2triage"]["score"] > doc["nis2triage"]["threshold"]
    assert "183.62.140.253" in doc["related"]["ip"]
    assert doc["nis2triage"]["evidence"]["events"] >= 10
    assert 'source.ip:"183.62.140.253"' in doc["nis2triage"]["query"]


@pytest.mark.usefixtures("agent_env")
def test_alerts_judged_again_after_a_state_reset_carry_the_route_they_get_now(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    ssh_index: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    # The lab server added to the inventory and the checkpoint deleted, as the README's
    # first hour does: the incidents followed the new route, the alerts kept the old one.
    index, _ = ssh_index
    prefix = f"{index}-st"
    config = write_agent_config(tmp_path, es_settings, index, prefix)
    listed = (tmp_path / "assets.yml").read_text()
    (tmp_path / "assets.yml").write_text("assets: []\n")
    before = run_agent(config, es)
    (tmp_path / "assets.yml").write_text(listed)
    for hit in es.search(index=f"{prefix}-state", size=100)["hits"]["hits"]:
        es.delete(index=hit["_index"], id=hit["_id"], refresh=True)

    after = run_agent(config, es)

    routes_then = {a.id: a.route for a in before.alerts}
    routes_now = {a.id: a.route for a in after.alerts}
    changed = {i for i in routes_now if routes_then.get(i) not in (None, routes_now[i])}
    assert changed and after.new_alerts == 0  # the same alerts, routed otherwise
    hits = es.search(index=f"{prefix}-alerts", query={"ids": {"values": sorted(changed)}})
    stored = {h["_id"]: h["_source"]["nis2triage"] for h in hits["hits"]["hits"]}
    assert {i: s["route"] for i, s in stored.items()} == {i: routes_now[i] for i in changed}
    assert all("asset labsz is high" in s["route_reason"] for s in stored.values())
    assert {s["asset"] for s in stored.values()} == {"labsz"}
