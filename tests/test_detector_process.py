"""A detector judged in a process of its own gives what it gives in the agent's process.

The unit tests feed a real child process generated events; the last ones run the agent
against the real node on the real SSH log, with the shipped detectors in processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import signal
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_data import SPECS, documents

from nis2triage import agent as agent_module
from nis2triage import detector_process, esclient
from nis2triage.agent import Agent
from nis2triage.bench.stream import StreamSpec, generate
from nis2triage.config import load_config
from nis2triage.demo import index_docs
from nis2triage.detector_process import DetectorProcess, DetectorProcessFailed, fields_for
from nis2triage.detectors import Detector, load_spec
from nis2triage.errors import ConfigError
from nis2triage.records import Alert, Event

from support import DETECTORS, real_log_docs, run_agent, write_agent_config

PER_USER = DETECTORS / "auth-volume-per-user.yml"
PAGE = 500
KEYS = (b"test-snapshot-key-0123456789abcdef", b"pseudonym-key-0123456789")


@pytest.fixture(scope="module")
def logons() -> list[Event]:
    """The authentication events of a generated day of 60,000 events, as read from the node."""
    events = []
    for i, doc in enumerate(generate(StreamSpec(day=date(2026, 11, 30), events=60_000))):
        doc = json.loads(json.dumps(doc))
        if doc["event"]["category"] == "authentication":
            ts = datetime.fromisoformat(doc["@timestamp"].replace("Z", "+00:00"))
            events.append(Event("logs", str(i), int(ts.timestamp() * 1000), doc))
    return events


@pytest.fixture
def process() -> Any:
    started = DetectorProcess(Detector(load_spec(PER_USER)), "auth")
    yield started
    started.stop()


def pid_of(process: DetectorProcess) -> int:
    """The process's pid, started now if its first page has not started it."""
    return process._started().process.pid


def judged(detector: Detector | DetectorProcess, events: list[Event]) -> list[Alert]:
    """The agent's loop: a close after every page, then everything closed."""
    alerts = []
    for first in range(0, len(events), PAGE):
        page = events[first : first + PAGE]
        detector.ingest_many(page)
        alerts += detector.close(page[-1].ts_ms - 60_000, "logs")
    alerts += detector.close(10**14, "logs")
    if isinstance(detector, DetectorProcess):
        alerts += detector.settle()
    return alerts


def outcome(alerts: list[Alert]) -> list[tuple[str, float, float]]:
    return [(a.id, a.score, a.threshold) for a in alerts]


def test_a_process_judges_as_the_agents_own_detector(
    logons: list[Event], process: DetectorProcess
) -> None:
    here = Detector(load_spec(PER_USER))

    expected = judged(here, logons)
    got = judged(process, logons)

    assert len(expected) > 5  # the generated attacks alert
    assert outcome(got) == outcome(expected)
    assert process.stats() == here.stats()
    assert process.stats()["scored"] > 10_000
    assert process.next_bucket_end_ms() == here.next_bucket_end_ms()


def test_its_state_resumes_in_the_agents_process(
    logons: list[Event], process: DetectorProcess
) -> None:
    half = len(logons) // 2
    here = Detector(load_spec(PER_USER))
    judged(here, logons[:half])
    judged(process, logons[:half])

    # As a checkpoint takes it: a copy of the detector the process holds.
    resumed = pickle.loads(pickle.dumps(process.detector()))
    assert resumed.stats() == here.stats()
    assert outcome(judged(resumed, logons[half:])) == outcome(judged(here, logons[half:]))


def test_a_process_starts_at_its_first_page(logons: list[Event], process: DetectorProcess) -> None:
    # A checkpoint before any page (a start, a standby) takes the state it was given.
    assert process.detector().stats() == Detector(load_spec(PER_USER)).stats()
    assert process.pid is None

    process.ingest_many(logons[:PAGE])
    assert process.pid is not None
    assert Path(f"/proc/{process.pid}").exists()
    process.settle()
    process.stop()
    with pytest.raises(AssertionError, match="after stop"):  # a programming error
        process.detector()


def test_alerts_come_closes_later_and_all_with_settle(
    logons: list[Event], process: DetectorProcess
) -> None:
    here = Detector(load_spec(PER_USER))
    here.ingest_many(logons)
    process.ingest_many(logons)

    first = process.close(10**14, "logs")
    expected = here.close(10**14, "logs")

    assert first == []  # still being judged
    assert outcome(process.settle()) == outcome(expected)
    assert process.settle() == []
    assert len(expected) > 5


def test_no_checkpoint_with_closes_in_flight(logons: list[Event], process: DetectorProcess) -> None:
    process.ingest_many(logons[:PAGE])
    process.close(10**14, "logs")

    with pytest.raises(RuntimeError, match="settle first"):
        process.detector()


def test_an_event_whose_fields_cannot_be_read_goes_to_failed(
    logons: list[Event], process: DetectorProcess
) -> None:
    # A body that is no object (the source sets those aside itself; here as if one slipped).
    broken = Event("logs-broken", "doc-7", logons[0].ts_ms, ["not", "an", "object"])  # type: ignore[arg-type]
    failed: list[tuple[Event, Exception]] = []

    process.ingest_many([logons[0], broken, *logons[1:PAGE]], lambda e, x: failed.append((e, x)))
    process.close(logons[PAGE].ts_ms, "logs")
    process.settle()

    [(event, error)] = failed
    assert (event.index, event.id) == ("logs-broken", "doc-7")
    assert isinstance(error, AttributeError)
    assert process.stats()["events"] == PAGE  # every other event counted
    assert process.take_set_aside() == []
    with pytest.raises(AttributeError):  # without `failed`, raised as the detector does
        process.ingest_many([broken])


def test_events_the_process_fails_on_come_back_to_be_set_aside(
    logons: list[Event], process: DetectorProcess
) -> None:
    # Sent as the agent's side would never send it (every body is read before it goes),
    # so that the detector itself fails on it in the process.
    page = [(e.index, e.id, e.ts_ms, e.doc) for e in logons[:PAGE]]
    process._send(("ingest", [*page, ("logs-broken", "doc-7", logons[0].ts_ms, ["x"])]))
    process.settle()
    assert process.take_set_aside() == []  # nothing before the close answers

    process.close(logons[PAGE].ts_ms, "logs")
    process.settle()
    [set_aside] = process.take_set_aside()
    assert (set_aside.index, set_aside.id) == ("logs-broken", "doc-7")
    assert set_aside.reason.startswith("AttributeError")
    assert process.stats()["events"] == PAGE
    assert process.take_set_aside() == []


def test_a_large_page_sent_while_a_large_answer_comes_back_does_not_hang(
    logons: list[Event], process: DetectorProcess
) -> None:
    # The answer to the first close holds 20,000 set-aside events (about 1.5 MB), the page
    # sent after it every logon (about 5 MB): each more than a socket's buffer.
    broken = [("logs-broken", f"doc-{i}", logons[0].ts_ms, ["x"]) for i in range(20_000)]
    process._send(("ingest", broken))
    process.close(logons[0].ts_ms, "logs")

    def next_page() -> None:
        process.ingest_many(logons)
        process.close(10**14, "logs")
        process.settle()

    sender = threading.Thread(target=next_page, daemon=True)
    sender.start()
    sender.join(60)
    hung = sender.is_alive()
    if hung:
        os.kill(process.pid, signal.SIGKILL)  # lets the sender's write fail, and the test end

    assert not hung
    assert len(process.take_set_aside()) == 20_000
    assert process.stats()["events"] == len(logons)


def test_its_warnings_reach_the_agents_log(
    logons: list[Event], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    process = DetectorProcess(Detector(load_spec(PER_USER)), "auth")
    try:
        # Logons without the account's name: the detector warns after a run of them.
        nameless = [Event(e.index, e.id, e.ts_ms, {**e.doc, "user": {}}) for e in logons[:300]]
        process.ingest_many(nameless)
        assert "have no field user.name" not in caplog.text  # not before the answer
        process.close(nameless[-1].ts_ms, "logs")
        process.settle()
    finally:
        process.stop()

    [record] = [r for r in caplog.records if "have no field user.name" in r.getMessage()]
    assert record.name == "nis2triage.detectors"
    assert record.levelno == logging.WARNING
    assert "auth-volume-per-user" in record.getMessage()


def test_a_killed_process_stops_the_pass_saying_which(
    logons: list[Event], process: DetectorProcess
) -> None:
    process.ingest_many(logons[:PAGE])
    process.settle()
    assert process._child is not None
    os.kill(process._child.process.pid, signal.SIGKILL)
    process._child.process.wait()

    with pytest.raises(DetectorProcessFailed) as failed:
        process.ingest_many(logons[PAGE : 2 * PAGE])
        process.close(10**14, "logs")
        process.settle()
    said = str(failed.value)
    assert "detector auth-volume-per-user of source auth" in said
    assert "restart resumes from the last" in said


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_to_the_whole_group_leaves_it_judging(
    logons: list[Event], process: DetectorProcess, signum: int
) -> None:
    # Ctrl-C reaches the agent's whole process group, systemd's stop every process of the
    # service; the agent then finishes its batch and saves, with the process's answers.
    here = Detector(load_spec(PER_USER))
    expected = judged(here, logons[:PAGE])
    process.ingest_many(logons[:PAGE])
    alerts = process.close(logons[PAGE].ts_ms - 60_000, "logs") + process.settle()  # running

    os.kill(process.pid, signum)
    alerts += process.close(10**14, "logs") + process.settle()

    assert outcome(alerts) == outcome(expected)
    assert process.detector().stats() == here.stats()
    process.stop()
    assert process._child is not None
    assert process._child.process.returncode == 0  # stopped when asked


def test_a_frozen_process_is_said_then_given_up_on(
    logons: list[Event],
    process: DetectorProcess,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(detector_process, "WAIT_STEP_S", 0.1)
    monkeypatch.setattr(detector_process, "ANSWER_WARN_S", 0.3)
    monkeypatch.setattr(detector_process, "ANSWER_LIMIT_S", 1.0)
    os.kill(pid_of(process), signal.SIGSTOP)
    try:
        process.ingest_many(logons[:PAGE])
        process.close(10**14, "logs")
        with pytest.raises(DetectorProcessFailed, match="it has not answered for 1 s"):
            process.settle()
    finally:
        os.kill(process.pid, signal.SIGCONT)

    [said] = [r.getMessage() for r in caplog.records if "has not answered" in r.getMessage()]
    assert f"auth-volume-per-user of source auth: its process (pid {process.pid})" in said


def test_a_stop_waits_for_a_silent_process_no_longer_than_for_its_exit(
    logons: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detector_process, "WAIT_STEP_S", 0.1)
    monkeypatch.setattr(detector_process, "STOP_WAIT_S", 0.5)
    stopping = [False]
    process = DetectorProcess(Detector(load_spec(PER_USER)), "auth", lambda: stopping[0])
    try:
        os.kill(pid_of(process), signal.SIGSTOP)
        process.ingest_many(logons[:PAGE])
        process.close(10**14, "logs")
        stopping[0] = True
        started = time.monotonic()
        with pytest.raises(DetectorProcessFailed, match="has not answered"):
            process.settle()
        # Well before ANSWER_LIMIT_S (300 s): as long as a stop gives a process to exit.
        assert time.monotonic() - started < 5
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.stop()


def test_an_error_in_the_process_is_said_with_its_place(
    logons: list[Event], process: DetectorProcess
) -> None:
    process.ingest_many(logons[:PAGE])
    said = r"it failed: TypeError: .* \(in close_until, features.py:\d+\)"
    with pytest.raises(DetectorProcessFailed, match=said):
        process.close("not a time", "logs")  # type: ignore[arg-type]
        process.settle()


def test_an_error_in_the_process_is_said_when_the_next_page_finds_it_gone(
    logons: list[Event], process: DetectorProcess
) -> None:
    # The agent sends the next pages before it reads the answer to a close: the process
    # had said why it stopped, and the agent said only "Broken pipe".
    process.ingest_many(logons[:PAGE])
    process.close("not a time", "logs")  # type: ignore[arg-type]
    assert process._child is not None
    assert process._child.process.wait(10) == 0  # it stops once it has said why

    said = r"it failed: TypeError: .* \(in close_until, features.py:\d+\)"
    with pytest.raises(DetectorProcessFailed, match=said):
        process.ingest_many(logons[PAGE : 2 * PAGE])


def test_a_value_too_deep_to_pickle_is_judged_as_in_the_agents_process(
    logons: list[Event], process: DetectorProcess
) -> None:
    # 600 levels: within what the agent's JSON decoding reads from the node (about 990),
    # beyond what pickle writes (about 499). The agent's own detector ignores such a value.
    deep: Any = "x"
    for _ in range(600):
        deep = {"a": deep}
    page = [*logons[:PAGE]]
    page[7] = Event(
        page[7].index, page[7].id, page[7].ts_ms, {**page[7].doc, "user": {"name": deep}}
    )
    here = Detector(load_spec(PER_USER))

    expected = judged(here, page)
    got = judged(process, page)

    assert outcome(got) == outcome(expected)
    assert process.stats() == here.stats()
    assert process.stats()["events"] == PAGE
    assert process.take_set_aside() == []


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents, min_size=1, max_size=6))
def test_the_fields_sent_judge_as_the_whole_documents(docs: list[dict[str, Any]]) -> None:
    # Hostile bodies (nulls, lists, objects where values go, flat and nested keys mixed):
    # every shipped detector takes from the fields it is sent what it takes from the whole.
    start = logons_start()
    for spec in SPECS:
        whole, sent = Detector(spec), Detector(spec)
        fields = fields_for(spec)
        for i, doc in enumerate(docs):
            whole.ingest(Event("logs", str(i), start + i * 1000, doc))
            sent.ingest(Event("logs", str(i), start + i * 1000, fields(doc)))

        assert sent.stats() == whole.stats()
        assert detail(sent.close(10**14, "logs")) == detail(whole.close(10**14, "logs"))


def logons_start() -> int:
    return int(datetime(2026, 12, 3, 9, 0, tzinfo=UTC).timestamp() * 1000)


def detail(alerts: list[Alert]) -> list[tuple[Any, ...]]:
    """What an alert says, evidence included."""
    return [
        (a.id, a.score, a.message, a.evidence, a.related_ips, a.related_users, a.related_hosts)
        for a in alerts
    ]


# --- the agent, against the real node -------------------------------------------------


def with_processes(config: Path, names: list[str]) -> Path:
    settings = yaml.safe_load(config.read_text())
    settings["detector_processes"] = names
    config.write_text(yaml.safe_dump(settings))
    return config


def config_apart(
    tmp_path: Path, es_settings: esclient.ESSettings, index: str, prefix: str, names: list[str]
) -> Path:
    """An agent configuration over `index` with the detectors `names` in processes."""
    return with_processes(write_agent_config(tmp_path, es_settings, index, prefix), names)


def agent_of(config: Path, es: Elasticsearch) -> Agent:
    return Agent(load_config(config), es, *KEYS)


def saved_stats(es: Elasticsearch, prefix: str) -> dict[str, Any]:
    """The detectors' counters in the auth source's checkpoint."""
    stats: dict[str, Any] = es.get(index=f"{prefix}-state", id="source-auth")["_source"]["stats"]
    return stats


@pytest.fixture
def ssh_index(es: Elasticsearch, index_name: str) -> str:
    index_docs(es, index_name, real_log_docs())
    return index_name


@pytest.mark.usefixtures("agent_env")
def test_the_agent_with_its_detectors_in_processes(
    es: Elasticsearch, es_settings: esclient.ESSettings, ssh_index: str, tmp_path: Path
) -> None:
    names = ["auth-volume-per-user", "ssh-brute-force"]
    alone = write_agent_config(tmp_path / "alone", es_settings, ssh_index, f"{ssh_index}-a")
    apart = config_apart(tmp_path / "apart", es_settings, ssh_index, f"{ssh_index}-p", names)

    expected = run_agent(alone, es)
    got = run_agent(apart, es)

    # The same alerts, in another order: those of the processes come back some pages
    # later, though before the same checkpoint (incidents file them by time).
    assert sorted(outcome(got.alerts)) == sorted(outcome(expected.alerts))
    assert "ssh-brute-force" in {a.name for a in got.alerts}
    assert got.events == expected.events > 0
    stats = saved_stats(es, f"{ssh_index}-p")
    expected_stats = saved_stats(es, f"{ssh_index}-a")
    assert stats == expected_stats
    assert stats["auth-volume-per-user"]["scored"] > 0

    # The checkpoint holds the processes' detectors as plain ones: an agent running them
    # in its own process resumes from it, with every event already seen.
    resumed = write_agent_config(tmp_path / "resumed", es_settings, ssh_index, f"{ssh_index}-p")
    after = run_agent(resumed, es)
    assert (after.events, after.alerts) == (0, [])
    resumed_stats = saved_stats(es, f"{ssh_index}-p")
    assert resumed_stats == expected_stats


@pytest.mark.usefixtures("agent_env")
def test_a_detector_process_killed_mid_pass_loses_nothing(
    es: Elasticsearch, es_settings: esclient.ESSettings, ssh_index: str, tmp_path: Path
) -> None:
    prefix = f"{ssh_index}-k"
    config = config_apart(tmp_path, es_settings, ssh_index, prefix, ["ssh-brute-force"])
    agent = agent_of(config, es)
    agent.start()
    [process] = agent.runs[0].processes()
    # Started as its first page would start it, then killed before any.
    os.kill(pid_of(process), signal.SIGKILL)

    with pytest.raises(DetectorProcessFailed, match="ssh-brute-force of source auth"):
        agent.run_once()
    agent.stop_processes()
    # Nothing was checkpointed past what the dead process held.
    assert not es.exists(index=f"{prefix}-state", id="source-auth")

    again = run_agent(config, es)
    assert "ssh-brute-force" in {a.name for a in again.alerts}
    assert again.events > 0


@pytest.mark.usefixtures("agent_env")
def test_a_name_listed_twice_in_detector_processes_is_refused(
    es: Elasticsearch, es_settings: esclient.ESSettings, tmp_path: Path, index_name: str
) -> None:
    config = config_apart(
        tmp_path,
        es_settings,
        index_name,
        f"{index_name}-st",
        ["ssh-brute-force", "auth-volume-per-user", "ssh-brute-force"],
    )
    agent = agent_of(config, es)

    with pytest.raises(ConfigError, match="detector_processes: 'ssh-brute-force' listed more"):
        agent.start()


@pytest.mark.usefixtures("agent_env")
def test_an_unknown_name_in_detector_processes_is_refused(
    es: Elasticsearch, es_settings: esclient.ESSettings, tmp_path: Path, index_name: str
) -> None:
    config = config_apart(
        tmp_path, es_settings, index_name, f"{index_name}-st", ["auth-volume-per-usr"]
    )
    agent = agent_of(config, es)

    with pytest.raises(ConfigError) as refused:
        agent.start()
    said = str(refused.value)
    assert "detector_processes: no loaded detector is named 'auth-volume-per-usr'" in said
    assert "auth-volume-per-user" in said  # the names it could have meant


# --- kills, restores and standby, against the real node ----------------------------


def day_docs(events: int) -> list[dict[str, Any]]:
    """A generated day (yesterday), as JSON-clean documents."""
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    return [json.loads(json.dumps(d)) for d in generate(StreamSpec(day=yesterday, events=events))]


def written(es: Elasticsearch, prefix: str, kind: str) -> list[str]:
    index = f"{prefix}-{kind}"
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=10_000, _source=False, sort=["_doc"])["hits"]["hits"]
    return sorted(h["_id"] for h in hits)


@pytest.mark.usefixtures("agent_env")
def test_a_process_killed_while_its_state_is_asked_mid_catch_up_loses_nothing(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index_docs(es, index_name, day_docs(40_000))
    # A checkpoint every 10 pages: a catch-up of many checkpoints.
    monkeypatch.setattr(agent_module, "SAVE_EVERY_BATCHES", 10)
    monkeypatch.setattr(agent_module, "SAVE_EVERY_SECONDS", 0.0)
    names = ["auth-volume-per-user", "ssh-brute-force"]
    alone = write_agent_config(tmp_path / "alone", es_settings, index_name, f"{index_name}-a")
    apart = config_apart(tmp_path / "apart", es_settings, index_name, f"{index_name}-p", names)
    expected = run_agent(alone, es)

    asked = 0
    state_of = DetectorProcess.detector

    def killed_on_the_third_ask(self: DetectorProcess) -> Detector:
        nonlocal asked
        asked += 1
        if asked == 3:
            os.kill(self.pid, signal.SIGKILL)
        return state_of(self)

    monkeypatch.setattr(DetectorProcess, "detector", killed_on_the_third_ask)
    agent = agent_of(apart, es)
    agent.start()
    with pytest.raises(DetectorProcessFailed):
        agent.run_once()
    agent.stop_processes()
    monkeypatch.setattr(DetectorProcess, "detector", state_of)
    saved = es.get(index=f"{index_name}-p-state", id="source-auth")["_source"]
    assert saved["cursor"] != {}
    again = run_agent(apart, es)

    # Read again from the last checkpoint, and judged as the agent's own detectors judge.
    assert 0 < again.events < expected.events
    assert written(es, f"{index_name}-p", "alerts") == written(es, f"{index_name}-a", "alerts")
    assert written(es, f"{index_name}-p", "alerts")
    assert written(es, f"{index_name}-p", "deadletter") == written(
        es, f"{index_name}-a", "deadletter"
    )
    stats = saved_stats(es, f"{index_name}-p")
    expected_stats = saved_stats(es, f"{index_name}-a")
    assert stats == expected_stats


@pytest.mark.usefixtures("agent_env")
def test_restores_leave_no_descriptor_or_process_behind(
    es: Elasticsearch, es_settings: esclient.ESSettings, ssh_index: str, tmp_path: Path
) -> None:
    config = config_apart(
        tmp_path,
        es_settings,
        ssh_index,
        f"{ssh_index}-fd",
        ["auth-volume-per-user", "ssh-brute-force"],
    )
    agent = agent_of(config, es)
    agent.start()
    agent.run_once()
    agent.restore_all()
    before = len(os.listdir("/proc/self/fd"))
    pids = set()
    for _ in range(10):
        agent.restore_all()
        agent.run_once()
        pids |= {p.pid for r in agent.runs for p in r.processes()}
    agent.stop_processes()
    after = len(os.listdir("/proc/self/fd"))

    assert after <= before
    assert len(pids) == 20
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} left behind"


@pytest.mark.usefixtures("agent_env")
def test_a_standby_runs_no_detector_process(
    es: Elasticsearch, es_settings: esclient.ESSettings, ssh_index: str, tmp_path: Path
) -> None:
    config = config_apart(
        tmp_path, es_settings, ssh_index, f"{ssh_index}-sb", ["auth-volume-per-user"]
    )
    leader = agent_of(config, es)
    leader.start()
    assert leader._lead()
    standby = agent_of(config, es)
    standby.start()

    assert not standby._lead()
    # Started at the first page only: a standby reads none, so none ever ran.
    assert [p.pid for r in standby.runs for p in r.processes()] == [None]

    leader.stop_processes()
    leader._release_lease()
    # Taking over restores, which starts the processes afresh.
    assert standby._lead() and standby.resume
    standby.restore_all()
    report = standby.run_once()
    [process] = standby.runs[0].processes()
    assert process._child is not None and process._child.process.poll() is None
    assert report.events > 0
    standby.stop_processes()


def test_a_frozen_process_sent_more_than_its_socket_holds_is_given_up_on(
    logons: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detector_process, "ANSWER_LIMIT_S", 1.0)
    process = DetectorProcess(Detector(load_spec(PER_USER)), "auth")
    failed: list[Exception] = []

    def send() -> None:
        try:
            # Megabytes of fields: more than the socket's buffer, so a send waits for reads.
            for _ in range(20):
                process.ingest_many(logons)
        except DetectorProcessFailed as exc:
            failed.append(exc)

    os.kill(pid_of(process), signal.SIGSTOP)
    sender = threading.Thread(target=send, daemon=True)
    try:
        sender.start()
        sender.join(10)
        # It waited for ever: a stop unheard, the lease unrenewed.
        assert not sender.is_alive(), "a send to a frozen process never returned"
    finally:
        os.kill(process.pid, signal.SIGCONT)
        sender.join(30)
        process.stop()
    [exc] = failed
    assert "it has not read what was sent for 1 s" in str(exc)


def test_a_process_frozen_mid_answer_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detector_process, "WAIT_STEP_S", 0.1)
    process = DetectorProcess(Detector(load_spec(PER_USER)), "auth")
    # An answer of 50,000 set-aside events (megabytes): the process writes part of it and
    # waits for the agent to read the rest, and is frozen (SIGSTOP, a swapping machine).
    start = logons_start()
    broken = [("logs-broken", f"doc-{i}", start, ["x"]) for i in range(50_000)]
    process._send(("ingest", broken))
    process.close(start, "logs")
    written_part_of_it(process)
    os.kill(process.pid, signal.SIGSTOP)
    monkeypatch.setattr(detector_process, "ANSWER_LIMIT_S", 1.0)  # not while it starts
    failed: list[Exception] = []

    def settle() -> None:
        try:
            process.settle()
        except DetectorProcessFailed as exc:
            failed.append(exc)

    waiter = threading.Thread(target=settle, daemon=True)
    try:
        waiter.start()
        waiter.join(15)
        # It read the first part of the answer, then waited for the rest for ever.
        assert not waiter.is_alive(), "an answer cut by a frozen process was waited for ever"
    finally:
        os.kill(process.pid, signal.SIGCONT)
        waiter.join(30)
        process.stop()
    [exc] = failed
    assert "it has not answered for 1 s" in str(exc)


def written_part_of_it(process: DetectorProcess) -> None:
    """Until the process waits on a full socket to write the rest of its answer."""
    for _ in range(300):
        if Path(f"/proc/{process.pid}/wchan").read_text() == "sock_alloc_send_pskb":
            return
        time.sleep(0.1)
    raise AssertionError("the process never waited to write its answer")


def test_a_stop_leaves_a_frozen_process_sent_more_than_its_socket_holds_at_once(
    logons: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A frozen process under a stop (Ctrl-C, systemd's): the send waited the whole answer
    # limit (300 s, 30 s here), each part of the message again, and the process's end as
    # long once more to send it "stop", past systemd's 90 s before it kills the service.
    monkeypatch.setattr(detector_process, "WAIT_STEP_S", 0.1)
    monkeypatch.setattr(detector_process, "STOP_WAIT_S", 0.5)
    monkeypatch.setattr(detector_process, "ANSWER_LIMIT_S", 30.0)
    stopping = [False]
    process = DetectorProcess(Detector(load_spec(PER_USER)), "auth", lambda: stopping[0])
    failed: list[Exception] = []

    def send() -> None:
        try:
            for _ in range(20):
                process.ingest_many(logons)
        except DetectorProcessFailed as exc:
            failed.append(exc)

    os.kill(pid_of(process), signal.SIGSTOP)
    sender = threading.Thread(target=send, daemon=True)
    try:
        sender.start()
        time.sleep(1)  # the socket is full: the send waits
        stopping[0] = True
        started = time.monotonic()
        sender.join(10)
        assert not sender.is_alive(), "a send to a frozen process went on after the stop"
        process.stop()
        took = time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):  # not killed if the test failed first
            os.kill(process.pid, signal.SIGCONT)
        sender.join(60)
        process.stop()
    assert took < 5
    [exc] = failed
    assert "it has not read what was sent for" in str(exc)
