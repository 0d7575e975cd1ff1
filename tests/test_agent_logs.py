"""The agent's log: one line per condition, not one per event."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch

from nis2triage import esclient
from nis2triage.agent import Agent, CycleReport
from nis2triage.config import load_config
from nis2triage.detectors import Detector, DetectorSpec
from nis2triage.features import FeatureSpec
from nis2triage.records import Event

from support import write_agent_config


def broken_detector() -> Detector:
    """A real detector whose bucket table fails on every event it takes."""
    spec = DetectorSpec(
        name="broken",
        source="auth",
        entity="user.name",
        features=[FeatureSpec(name="n", kind="count")],
        model=[{"anomaly.HalfSpaceTrees": {}}],
    )
    detector = Detector(spec)

    def add(*_: object) -> None:
        raise ValueError("field user.name holds a list")

    detector.table.add = add  # type: ignore[method-assign]
    return detector


@pytest.mark.usefixtures("agent_env")
def test_a_batch_of_unusable_events_is_one_warning_and_one_dead_letter_each(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    agent = Agent(load_config(config), es, b"k" * 32, b"p" * 32)
    agent.store.ensure_indices()
    now = datetime.now(UTC)
    batch = [Event.at(index_name, str(i), now, {"user": {"name": "a"}}) for i in range(50)]
    # The source had nothing it could not hand on; only the detector fails.
    source = SimpleNamespace(take_unusable=list)
    run: Any = SimpleNamespace(detectors=[broken_detector()], source=source)
    report = CycleReport()

    with caplog.at_level(logging.WARNING, logger="nis2triage.agent"):
        agent._ingest(run, batch, report)

    assert report.dead_letters == 50
    # Other loggers may also be captured (an earlier test can leave INFO switched on).
    said = [
        r for r in caplog.records if r.name == "nis2triage.agent" and r.levelno >= logging.WARNING
    ]
    [line] = [r.getMessage() for r in said]
    assert line.startswith(f"50 events set aside in {index_name}-st-deadletter (first: broken:")


@pytest.mark.usefixtures("agent_env")
def test_a_checkpoint_is_announced_once_however_often_it_is_restored(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = load_config(write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st"))
    es.index(index=index_name, document={"@timestamp": "2026-12-01T10:00:00Z"}, refresh=True)
    first = Agent(config, es, b"k" * 32, b"p" * 32)
    first.start()
    first.run_once()  # leaves a checkpoint
    second = Agent(config, es, b"k" * 32, b"p" * 32)

    with caplog.at_level(logging.INFO, logger="nis2triage.agent"):
        second.start()
        second.restore_all()  # as the loop does when it takes the lease
        resumed = [r.getMessage() for r in caplog.records if "resumes from" in r.getMessage()]
        first.run_once()  # a newer checkpoint is news
        second.restore_all()

    lines = [r.getMessage() for r in caplog.records if "resumes from" in r.getMessage()]
    assert len(resumed) == 1
    assert resumed[0].startswith("source auth resumes from its checkpoint of 20")
    assert len(lines) == 2 and lines[1] != lines[0]


@pytest.mark.usefixtures("agent_env")
def test_a_source_without_a_checkpoint_says_once_that_it_reads_from_the_oldest_event(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = load_config(write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st"))
    es.index(index=index_name, document={"@timestamp": "2026-12-01T10:00:00Z"}, refresh=True)
    agent = Agent(config, es, b"k" * 32, b"p" * 32)

    with caplog.at_level(logging.INFO, logger="nis2triage.agent"):
        agent.start()
        agent.restore_all()  # as the loop does when it takes the lease

    said = [r.getMessage() for r in caplog.records if "no checkpoint" in r.getMessage()]
    assert said == [
        "source auth has no checkpoint: its first pass reads every event its indices hold, "
        "from the oldest (2 detectors)"
    ]


@pytest.mark.usefixtures("agent_env")
def test_a_source_says_which_of_its_detectors_run_in_a_process_of_their_own(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing said it, at any level: a misread configuration ran all in one process unseen.
    config = load_config(write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st"))
    config = config.model_copy(update={"detector_processes": ["auth-volume-per-user"]})
    es.index(index=index_name, document={"@timestamp": "2026-12-01T10:00:00Z"}, refresh=True)
    agent = Agent(config, es, b"k" * 32, b"p" * 32)

    with caplog.at_level(logging.INFO, logger="nis2triage.agent"):
        agent.start()

    said = [r.getMessage() for r in caplog.records if "no checkpoint" in r.getMessage()]
    assert said[0].endswith(
        "from the oldest (2 detectors; auth-volume-per-user in a process of its own)"
    )


@pytest.mark.usefixtures("agent_env")
def test_an_agent_with_no_detector_and_no_rule_says_it_judges_nothing(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    settings = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**settings, "detectors": []}))
    agent = Agent(load_config(config), es, snapshot_key=b"s" * 32, pseudonym_key=b"p" * 32)

    with caplog.at_level(logging.WARNING, logger="nis2triage.agent"):
        agent.start()

    said = [r.getMessage() for r in caplog.records if r.name == "nis2triage.agent"]
    assert said == [
        "no detector and no rule is loaded: the agent reads its sources and raises no alert; "
        "give `detectors:` patterns or `rules.native` / `rules.sigma` paths in the configuration"
    ]
