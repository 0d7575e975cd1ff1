"""End to end on the real node: a brute force on the real SSH log becomes an incident, is
acknowledged and assessed, escalated while nothing is sent, and its early warning, notification
and final report reach a loopback HTTP server and a loopback SMTP server exactly once each."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch
from pypdf import PdfReader

from nis2triage import esclient
from nis2triage.agent import Agent
from nis2triage.cli import main
from nis2triage.config import load_config
from nis2triage.demo import index_docs

from ccb_server import CcbServer, running_ccb
from smtp_server import SmtpServer, running_smtp
from support import real_log_docs, write_agent_config

ATTACKER = "183.62.140.253"
KEYS = {"snapshot": b"test-snapshot-key-0123456789abcdef",
        "pseudonym": b"test-pseudonym-key-0123456789abcdef"}  # fmt: skip


@pytest.fixture
def servers() -> Iterator[tuple[CcbServer, SmtpServer]]:
    with running_ccb() as ccb, running_smtp() as smtp:
        yield ccb, smtp


def incident_config(tmp_path: Path, es_settings: esclient.ESSettings, index: str,
                    ccb: CcbServer, smtp: SmtpServer) -> Path:  # fmt: skip
    notifier = {"mode": "send", "endpoint": ccb.url, "token_env": "NIS2TRIAGE_CCB_TOKEN"}
    path = write_agent_config(tmp_path, es_settings, index, f"{index}-st", notifier)
    cfg = yaml.safe_load(path.read_text())
    cfg["incidents"] = {
        "auto_aware_routes": [],  # the analyst's acknowledgement starts the clocks here
        "channels": ["http", "smtp"],
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none",
                 "sender": "soc@entity.example", "recipients": ["incident@ccb.example"]},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args: str) -> None:
    assert main(["incidents", *args]) == 0


def leaks(text: str, ips: set[str], users: set[str]) -> list[str]:
    found = [ip for ip in re.findall(r"\d+(?:\.\d+){3}", text) if ip in ips]
    return found + [u for u in users if re.search(rf"(?<![\w.-]){re.escape(u)}(?![\w.-])", text)]


def strings(value: Any) -> str:
    if isinstance(value, dict):
        return "\n".join(strings(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(strings(v) for v in value)
    return value if isinstance(value, str) else ""


def mail_texts(message: Any) -> list[str]:
    texts = []
    for part in message.walk():
        data = part.get_payload(decode=True)
        if part.get_filename() and part.get_filename().endswith(".pdf"):
            texts.append("\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages))
        elif part.get_filename():
            texts.append(strings(json.loads(data)))
        elif data:
            texts.append(data.decode())
    return texts


@pytest.mark.usefixtures("agent_env")
def test_a_brute_force_is_acknowledged_assessed_escalated_and_reported_once_per_channel(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    servers: tuple[CcbServer, SmtpServer], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    ccb, smtp = servers
    docs = real_log_docs()
    index_docs(es, index_name, docs)
    config = incident_config(tmp_path, es_settings, index_name, ccb, smtp)
    now = [datetime.now(UTC)]
    agent = Agent(load_config(config), es, KEYS["snapshot"], KEYS["pseudonym"],
                  clock=lambda: now[0], token="test-ccb-token-s3cr3t")  # fmt: skip
    agent.start()
    agent.run_once()

    # The detection is an incident, triaged but not acknowledged: nothing is due, nothing sent.
    found = agent.incidents.desk.book.find({"term": {"keys": f"entity:source.ip={ATTACKER}"}})
    assert [i.status for i in found] == ["triaged"]
    incident = found[0]
    assert incident.pending == () and ccb.received == [] and smtp.messages == []

    cli("ack", incident.id, "--config", str(config), "--by", "alice", "--reason", "guessing seen")
    cli("impact", incident.id[:10], "--config", str(config), "--by", "alice",
        "--severe-disruption", "yes", "--down", "90", "--users", "1200", "--loss", "20000",
        "--cross-border", "no", "--description", f"password guessing from {ATTACKER}",
        "--threat-type", "credential brute force", "--root-cause", "SSH reachable with passwords",
        "--mitigation-applied", f"{ATTACKER} blocked; the guessed account locked",
        "--mitigation-ongoing", "moving to key-only logins")  # fmt: skip
    incident = agent.incidents.desk.book.get(incident.id)
    assert incident.significance is not None
    assert incident.significance.verdict == "significant"
    assert [m.id for m in incident.significance.met] == ["art23-severe-disruption"]

    # 19 hours after awareness, the early warning is due within 6 hours and nothing is sent.
    assert incident.aware_at is not None
    now[0] = incident.aware_at + timedelta(hours=19)
    with caplog.at_level("WARNING", logger="nis2triage.notify.soc"):
        agent.run_once()
    es.indices.refresh(index=f"{index_name}-st-escalations")
    raised = es.search(
        index=f"{index_name}-st-escalations", query={"term": {"incident_id": incident.id}}
    )
    assert [(h["_source"]["kind"], h["_source"]["report"]) for h in raised["hits"]["hits"]] == [
        ("deadline_near", "early_warning")
    ]
    assert any(
        "early_warning" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records
    )

    for stage in ("early-warning", "notification"):
        cli("report", incident.id, "--config", str(config), "--by", "alice", "--stage", stage)
    # The final report follows the end of handling (NIS2 Art. 23(4)(e)).
    cli("close", incident.id, "--config", str(config), "--by", "alice", "--reason", "handled")
    cli("report", incident.id, "--config", str(config), "--by", "alice", "--stage", "final")
    agent.run_once()
    agent.run_once()

    # Each report once over HTTP and once over SMTP, with one idempotency key each.
    reports = agent.incidents.desk.book.get(incident.id).reports
    keys = {k: r.outbox_id for k, r in reports.items()}
    assert sorted(keys) == ["early_warning", "final_report", "incident_notification"]
    assert sorted(ccb.idempotency_keys) == sorted(keys.values()) == sorted(smtp.keys)
    assert {r.status for r in reports.values()} == {"sent"}
    assert agent.incidents.desk.book.get(incident.id).status == "closed"

    bodies = {r.json()["report_type"]: r.json() for r in ccb.received}
    early, notification, final = (
        bodies[k] for k in ("early_warning", "incident_notification", "final_report")
    )
    assert early["suspected_unlawful_or_malicious"] == "yes"
    assert early["possible_cross_border_impact"] == "no"
    assert early["entity"]["enterprise_number"] == "0403.019.261"
    assert notification["severity"] == "high"
    assert notification["impact"]["users_affected"] == 1200
    assert notification["significance"]["verdict"] == "significant"
    # The attacker's address is an indicator the CSIRT acts on, and stays as it is.
    assert ATTACKER in notification["indicators"]["ip"]
    assert all(i == ATTACKER or i.startswith("ip-") for i in notification["indicators"]["ip"])
    assert final["threat_type"] == "credential brute force"
    assert final["mitigation_ongoing"] == "moving to key-only logins"
    for body in bodies.values():
        assert all(r["provided"] for r in body["requirements"]), body["report_type"]

    # Nothing leaving the organisation names an account of the incident, nor an address
    # but the attacker's, which each report's JSON holds as written.
    ips = {d["source"]["ip"] for d in docs if "source" in d} - {ATTACKER}
    users = set(incident.users)
    assert "oracle" in users
    texts = [strings(r.json()) for r in ccb.received]
    texts += [t for m in smtp.messages for t in mail_texts(m)]
    texts += [p.read_text() for p in (tmp_path / "reports").rglob("*.md")]
    assert len(texts) == 3 + 3 * 3 + 3
    assert [leaks(t, ips, users) for t in texts] == [[]] * len(texts)
    assert all(ATTACKER in strings(r.json()) for r in ccb.received)

    # Every step is in the append-only audit trail, with who did it.
    trail = agent.incidents.desk.book.audit_trail(incident.id)
    history = agent.incidents.desk.book.get(incident.id).history
    assert [(a["seq"], a["action"], a["who"]) for a in trail] == [
        (t.seq, t.action, t.who) for t in history
    ]
    assert ("aware", "alice") in {(a["action"], a["who"]) for a in trail}
    # Appended only: no audit document was ever written twice.
    audit = es.search(index=f"{index_name}-st-audit", size=1000, version=True)["hits"]["hits"]
    assert len(audit) >= len(history) and {h["_version"] for h in audit} == {1}
