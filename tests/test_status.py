"""`nis2triage status`: the lease, each source's checkpoint and what is owed, read from the
agent's indices on the real node, and the exit status a monitoring check relies on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from test_agent_restart import index_part
from test_cli_incidents import with_incident

from nis2triage import esclient
from nis2triage.cli import main
from nis2triage.config import load_config
from nis2triage.incidents.flow import IncidentFlow
from nis2triage.lease import Lease
from nis2triage.nis2.brussels import show
from nis2triage.reports.stages import BY_CLI
from nis2triage.status import read_status
from nis2triage.store import Store

from report_sample import T0
from support import authentication_events, real_log_docs, run_agent, write_agent_config


@pytest.fixture
def polled(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> tuple[Path, Store]:
    """A configuration whose agent has made one pass over the real SSH log."""
    index_part(es, index_name, real_log_docs(), 0)
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    run_agent(config, es)
    return config, Store(es, f"{index_name}-st")


def _status(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(["status", "-c", str(config), "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.usefixtures("agent_env")
def test_before_any_agent_ran_the_status_says_so_and_asks_for_attention(
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")

    code, said = _status(config, capsys)

    assert code == 3
    assert said["sources"] == [
        {
            "name": "auth",
            "saved": None,
            "read_up_to": None,
            "events": 0,
            "unreadable": None,
            "untimed_indices": [],
            "without_time": 0,
        }
    ]
    # A misspelt prefix looks the same: nothing was ever written under it.
    assert said["concerns"] == [
        f"there is no index {index_name}-st-state: no agent has run with state.index_prefix "
        f"{index_name}-st; if one runs, compare that setting with its configuration",
        "source auth has no checkpoint: no agent has polled it yet",
    ]


@pytest.mark.usefixtures("agent_env")
def test_a_running_agent_with_a_fresh_checkpoint_needs_no_attention(
    polled: tuple[Path, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    config, store = polled
    Lease(store, timedelta(minutes=5), lambda: datetime.now(UTC)).hold()
    docs = real_log_docs()
    logins = [d for d in docs if "category" in d.get("event", {})]
    latest = max(datetime.fromisoformat(d["@timestamp"]) for d in logins)

    code, said = _status(config, capsys)

    assert code == 0, said["concerns"]
    assert said["lease"]["pid"] == os.getpid()
    [auth] = said["sources"]
    assert auth["events"] == authentication_events(docs)
    assert datetime.fromisoformat(auth["read_up_to"]) == latest
    assert said["concerns"] == []


@pytest.mark.usefixtures("agent_env")
def test_a_checkpoint_older_than_five_polls_and_five_minutes_is_a_concern(
    polled: tuple[Path, Store],
) -> None:
    config, store = polled
    cfg = load_config(config)
    # Six polls of 30 s are within the five minutes /health also allows; eleven are not.
    soon = datetime.now(UTC) + 6 * cfg.sources[0].poll_interval
    later = datetime.now(UTC) + 11 * cfg.sources[0].poll_interval

    assert not [c for c in read_status(cfg, store, soon).concerns() if "last checkpoint" in c]
    concerns = read_status(cfg, store, later).concerns()

    assert any(c.startswith("source auth: last checkpoint 5 min ago") for c in concerns), concerns


@pytest.mark.usefixtures("agent_env")
def test_late_notifications_and_overdue_incidents_are_concerns(
    es: Elasticsearch, polled: tuple[Path, Store]
) -> None:
    config, store = polled
    now = datetime.now(UTC)
    # The real log's pass opened incidents of its own, none of them late.
    before = read_status(load_config(config), store, now)
    assert before.concerns() == [
        f"no agent holds the lease of {store.prefix}-state: none is running"
    ]
    queued = (now - timedelta(hours=25)).isoformat()
    store.put("outbox", "late-one", {"status": "pending", "created": queued}, refresh=True)
    due = (now - timedelta(hours=1)).isoformat()
    overdue = {"status": "aware", "next_due": due, "overdue": ["early_warning"]}
    store.put("incidents", "inc-overdue", overdue, refresh=True)
    # Closed, it still owes the report it is late with (the watch escalates it): said too.
    closed = {**overdue, "status": "closed", "next_due": None, "pending": ["final_report"]}
    store.put("incidents", "inc-closed", closed, refresh=True)

    status = read_status(load_config(config), store, now)

    assert status.late_notifications == 1
    assert status.owed.open_incidents == before.owed.open_incidents + 1
    assert status.owed.next_due == ("inc-overdue", datetime.fromisoformat(due))
    assert sorted(status.owed.overdue) == ["inc-closed", "inc-overdue"]
    assert status.concerns()[-2:] == [
        f"1 notifications unsent 24.0 h after they were queued (see {store.prefix}-outbox)",
        f"incidents with an overdue report: {', '.join(status.owed.overdue)}",
    ]


@pytest.mark.usefixtures("agent_env")
def test_a_deadline_passed_since_the_last_pass_is_overdue_without_an_agent_running(
    polled: tuple[Path, Store],
) -> None:
    config, store = polled
    now = datetime.now(UTC)
    # No agent ran since the deadline passed, so nothing marked the incident overdue.
    waiting = {"status": "aware", "next_due": (now - timedelta(minutes=5)).isoformat()}
    store.put("incidents", "inc-passed", waiting, refresh=True)
    ahead = {"status": "aware", "next_due": (now + timedelta(hours=3)).isoformat()}
    store.put("incidents", "inc-ahead", ahead, refresh=True)

    status = read_status(load_config(config), store, now)

    assert "inc-passed" in status.owed.overdue
    assert "inc-ahead" not in status.owed.overdue
    assert any(c.startswith("incidents with an overdue report:") for c in status.concerns())


@pytest.mark.usefixtures("agent_env")
def test_the_table_names_the_lease_holder_and_what_is_due(
    polled: tuple[Path, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    config, store = polled
    Lease(store, timedelta(minutes=5), lambda: datetime.now(UTC), host="soc-agent-1").hold()

    status = read_status(load_config(config), store, datetime.now(UTC))
    owed = status.owed
    assert owed.next_due is not None  # the real log's pass opened incidents
    assert status.live_holder is not None

    code = main(["status", "-c", str(config)])

    out = capsys.readouterr().out
    until = show(status.live_holder.expires)
    assert code == 0
    assert f"agent: process {os.getpid()} on soc-agent-1, until {until} holds the lease" in out
    assert until.endswith((" CET", " CEST"))
    assert f"incidents: {owed.open_incidents} open; next due " in out
    assert f"({owed.next_due[0][:12]})" in out and "nothing needs attention" in out


@pytest.mark.usefixtures("agent_env")
@pytest.mark.parametrize(
    ("checkpoint", "said"),
    [
        ({"cursor": "garbage"}, "cursor is 'garbage', not an object"),
        ({"cursor": {"watermark_ms": "abc"}}, "cursor.watermark_ms is 'abc', not a time in"),
        ({"cursor": {"watermark_ms": 9 * 10**18}}, "cursor.watermark_ms is 9000000000000000000,"),
        ({"cursor": {"events": "many"}}, "cursor.events is 'many', not a count"),
        ({"updated": 12345}, "updated is 12345, not an ISO 8601 time"),
    ],
    ids=["cursor-text", "watermark-text", "watermark-past-9999", "events-text", "updated-number"],
)
def test_an_unreadable_checkpoint_is_a_concern_naming_the_document_and_field(
    es_settings: esclient.ESSettings,
    es: Elasticsearch,
    index_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    checkpoint: dict[str, object],
    said: str,
) -> None:
    # Its state index maps the cursor as an object it does not index: any value goes in,
    # and `status` ended in a traceback instead of its exit status.
    prefix = f"{index_name}-st"
    config = write_agent_config(tmp_path, es_settings, index_name, prefix)
    store = Store(es, prefix)
    store.ensure_indices()
    doc = {"kind": "source", "updated": datetime.now(UTC).isoformat(), **checkpoint}
    store.put("state", "source-auth", doc, refresh=True)

    code, answer = _status(config, capsys)

    assert code == 3
    [concern] = [c for c in answer["concerns"] if c.startswith("source auth")]
    assert concern.startswith(
        f"source auth: its checkpoint document cannot be read ({prefix}-state/_doc/source-auth: "
        f"{said}"
    )


@pytest.mark.usefixtures("agent_env")
def test_times_written_without_a_zone_are_read_as_utc(
    es_settings: esclient.ESSettings,
    es: Elasticsearch,
    index_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Elasticsearch reads them as UTC; compared with the aware clock or shown in Brussels
    # time, they ended `status` in a TypeError or a ValueError.
    prefix = f"{index_name}-st"
    config = write_agent_config(tmp_path, es_settings, index_name, prefix)
    store = Store(es, prefix)
    store.ensure_indices()
    naive = (datetime.now(UTC) + timedelta(minutes=5)).replace(tzinfo=None).isoformat()
    lease = {"kind": "lease", "host": "soc-agent-1", "pid": 7, "run": "r", "expires": naive}
    store.put("state", "lease", lease, refresh=True)
    # Saved a moment ago: one dated ahead of the clock is a concern of its own.
    saved = datetime.now(UTC).replace(tzinfo=None).isoformat()
    store.put("state", "source-auth", {"updated": saved, "cursor": {}}, refresh=True)
    store.put("incidents", "inc-1", {"status": "aware", "next_due": naive}, refresh=True)

    code = main(["status", "-c", str(config)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "agent: process 7 on soc-agent-1" in out and "(inc-1)" in out


@pytest.mark.usefixtures("agent_env")
def test_a_node_that_cannot_be_reached_is_said_with_its_address_and_exit_status_1(
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # "Elasticsearch cannot be reached" alone named no node and no configuration.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    config.write_text(config.read_text().replace(es_settings.hosts[0], dead))

    code = main(["status", "-c", str(config)])

    assert code == 1
    said = capsys.readouterr().err
    assert said.startswith(
        f"nis2triage: the agent's state under {index_name}-st-* at {dead} (elasticsearch in "
        f"{config}) cannot be read: Elasticsearch could not be reached: "
    )
    assert said.endswith(
        "Connection refused: check elasticsearch.hosts in the configuration file and that "
        "the cluster is up\n"
    )


@pytest.mark.usefixtures("agent_env")
def test_documents_no_read_reaches_are_a_concern_after_the_start_said_them(
    es_settings: esclient.ESSettings,
    es: Elasticsearch,
    index_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Said once in the log at start: once the log had rotated, nothing showed that a
    # shipper's events were skipped.
    now = datetime.now(UTC).isoformat()
    es.index(index=index_name, id="timed", document={"@timestamp": now})
    es.index(index=index_name, id="untimed", document={"message": "no time"}, refresh=True)
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    run_agent(config, es)

    code, said = _status(config, capsys)

    assert code == 3
    assert said["sources"][0]["without_time"] == 1
    assert (
        f"source auth: 1 document without the time field (in {index_name}), never read: "
        "have the shipper or an ingest pipeline set it"
    ) in said["concerns"]


@pytest.mark.usefixtures("agent_env")
def test_a_lease_and_checkpoint_written_by_a_clock_days_ahead_are_concerns(
    polled: tuple[Path, Store],
) -> None:
    # Their holder, its clock two days ahead, died: the lease looked live and the checkpoint
    # fresh (its age negative) for two days, and status said nothing needed attention.
    config, store = polled
    cfg = load_config(config)
    ahead = datetime.now(UTC) + timedelta(days=2)
    Lease(store, timedelta(minutes=2), lambda: ahead, host="siem-a").hold()
    checkpoint = store.get("state", "source-auth")
    assert checkpoint is not None
    store.put("state", "source-auth", {**checkpoint, "updated": ahead.isoformat()}, refresh=True)

    concerns = read_status(cfg, store, datetime.now(UTC)).concerns()

    assert len(concerns) == 2
    assert concerns[0].startswith(
        f"the lease of {store.index('state')} was renewed 48.0 h ahead of this machine's "
        "clock: the clock of siem-a (or this one) is wrong"
    )
    assert concerns[1].startswith(
        "source auth: its last checkpoint is dated 48.0 h ahead of this machine's clock"
    )


@pytest.mark.usefixtures("agent_env")
def test_a_lease_left_to_expire_is_said_as_its_holders_not_as_no_agent_running(
    polled: tuple[Path, Store],
) -> None:
    # An agent waiting 5 minutes on a frozen detector process let its 2-minute lease lapse
    # while it ran, and status said "none is running" (new-user run).
    config, store = polled
    cfg = load_config(config)
    then = datetime.now(UTC) - timedelta(minutes=3)
    Lease(store, timedelta(minutes=2), lambda: then, host="siem-a", pid=4242).hold()

    concerns = read_status(cfg, store, datetime.now(UTC)).concerns()

    assert concerns[0] == (
        f"the lease of {store.index('state')} expired at {show(then + timedelta(minutes=2))}, "
        "not renewed by process 4242 on siem-a: that agent died or is stuck (its log says "
        "which), and no agent holds the lease"
    )


@pytest.mark.usefixtures("agent_env")
def test_a_report_discharged_by_a_later_one_is_not_overdue(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # The incident notification sent within 24 hours discharges the early warning (Art.
    # 23(4)(b)): nothing is owed until the final report, so nothing is overdue a day on.
    config, sender, incident = with_incident(es, es_settings, index_name, tmp_path)
    assert incident.aware_at == T0
    sent = T0 + timedelta(hours=2)
    flow = IncidentFlow(load_config(config), Store(es, index_name), sender, lambda: sent)
    notification = BY_CLI["notification"]
    flow.reporter.queue(incident, notification, "analyst")
    flow.reporter.submitted(incident.id, notification, "analyst", "CCB-1", None, sent)

    status = read_status(load_config(config), Store(es, index_name), T0 + timedelta(hours=30))

    assert incident.id not in status.owed.overdue
    assert status.owed.next_due is not None
    assert status.owed.next_due[1] > T0 + timedelta(days=20)


@pytest.mark.usefixtures("agent_env")
def test_a_stale_next_due_saved_by_an_earlier_version_is_not_overdue(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # The version before kept the discharged early warning's 24 h mark as next_due; its
    # stored documents stay so until saved again, and status must not call them overdue.
    config, sender, incident = with_incident(es, es_settings, index_name, tmp_path)
    sent = T0 + timedelta(hours=2)
    flow = IncidentFlow(load_config(config), Store(es, index_name), sender, lambda: sent)
    notification = BY_CLI["notification"]
    flow.reporter.queue(incident, notification, "analyst")
    flow.reporter.submitted(incident.id, notification, "analyst", "CCB-1", None, sent)
    store = Store(es, index_name)
    stale = (T0 + timedelta(hours=24)).isoformat()
    es.update(index=store.index("incidents"), id=incident.id, doc={"next_due": stale},
              refresh=True)  # fmt: skip

    status = read_status(load_config(config), store, T0 + timedelta(hours=30))

    assert incident.id not in status.owed.overdue


@pytest.mark.usefixtures("agent_env")
def test_a_table_whose_reader_goes_away_ends_quietly_with_141(
    es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    # `nis2triage status | head -1`: rich's console ended the command with status 1, the
    # status of a failed command, where a cut-off `--json` ends with 141.
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        argv = [sys.executable, "-m", "nis2triage.cli", "status", "-c", str(config)]
        done = subprocess.run(argv, stdout=write_end, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)

    assert (done.returncode, done.stderr) == (141, "")


@pytest.mark.usefixtures("agent_env")
def test_an_agent_run_from_a_timer_needs_no_lease_until_its_passes_stop(
    polled: tuple[Path, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    # `run --once` from a timer releases the lease after each pass: `status` said "none
    # is running" and 3 after every clean pass (new-user run).
    config, store = polled
    cfg = load_config(config)

    plain, _ = _status(config, capsys)
    code = main(["status", "-c", str(config), "--json", "--every", "15m"])
    said = json.loads(capsys.readouterr().out)
    later = read_status(
        cfg, store, datetime.now(UTC) + timedelta(minutes=31), timedelta(minutes=15)
    )

    assert (plain, code, said["concerns"]) == (3, 0, [])
    [stale] = later.concerns()
    assert stale.startswith("source auth: last checkpoint 31 min ago, more than two runs")
