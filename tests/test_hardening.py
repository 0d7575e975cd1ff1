"""Regressions for what the break test found: each one must stay fixed."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch, helpers

from nis2triage import esclient
from nis2triage.demo import index_docs
from nis2triage.detectors import load_spec
from nis2triage.errors import ConfigError, SnapshotError
from nis2triage.notify.channel import RETRY_AFTER_MAX, retry_after
from nis2triage.notify.pseudonym import Pseudonymiser
from nis2triage.rules.alerts import is_user_field

from support import DETECTORS, real_log_docs, run_agent, write_agent_config

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def loose_index(es: Elasticsearch, name: str) -> None:
    """An index that keeps any _source, as one with ignore_malformed or dynamic: false does."""
    es.indices.create(
        index=name, mappings={"dynamic": False, "properties": {"@timestamp": {"type": "date"}}}
    )


@pytest.mark.usefixtures("agent_env")
def test_events_whose_address_is_not_an_address_do_not_stop_the_agent(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    loose_index(es, index_name)
    docs = real_log_docs()
    for doc in docs[::3]:
        if "source" in doc:
            doc["source"] = {"ip": "not-an-ip"}
    helpers.bulk(es, ({"_index": index_name, "_source": d} for d in docs), refresh=True)
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")

    report = run_agent(config, es)
    again = run_agent(config, es)

    assert report.events == 2000 and again.events == 0
    es.indices.refresh(index=f"{index_name}-st-alerts")
    assert es.count(index=f"{index_name}-st-alerts")["count"] == report.new_alerts > 0


@pytest.mark.usefixtures("agent_env")
def test_a_document_nested_990_deep_is_read(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    loose_index(es, index_name)
    deep: dict = {"leaf": 1}
    for _ in range(990):
        deep = {"a": deep}
    ts = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # this test's own client must encode it too
    try:
        es.index(index=index_name, document={"@timestamp": ts, "x": deep}, refresh=True)
    finally:
        sys.setrecursionlimit(limit)
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")

    done = subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", "run", "--config", str(config), "--once"],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 events")


def test_identifiers_leaving_are_keyed_and_sentence_ends_do_not_shield_values() -> None:
    p = Pseudonymiser(b"k" * 32)
    out = p.scrub(
        {"alert_id": "abc123", "summary": "tried root. Then from 203.0.113.7.", "v": "1.2.3"},
        users=["root"],
    )

    assert out["alert_id"].startswith("ref-") and "abc123" not in str(out)
    assert "203.0.113.7" not in out["summary"] and " root." not in out["summary"]
    assert out["summary"].endswith(".") and out["v"] == "1.2.3"
    assert is_user_field("user.target.name") and is_user_field("user.effective.name")
    assert not is_user_field("host.name")


@pytest.mark.parametrize("value", ["999999999999", "999999999", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_retry_after_is_capped(value: str) -> None:
    assert retry_after(value, NOW) == NOW + RETRY_AFTER_MAX


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("n_trees: 25", "n_trees: many"),
        ("height: 6", "height: {a: 1}"),
        ("bucket: 5m", "bucket: 0s"),
    ],
    ids=["string-trees", "object-height", "zero-bucket"],
)
def test_detector_parameters_that_would_fail_at_run_time_fail_at_load(
    tmp_path: Path, old: str, new: str
) -> None:
    path = tmp_path / "d.yml"
    text = (DETECTORS / "ssh-brute-force.yml").read_text()
    assert old in text
    path.write_text(text.replace(old, new))

    with pytest.raises(ConfigError, match=r"d\.yml:\d+"):
        load_spec(path)


def agent_that_ran(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> tuple[Path, str]:
    """The configuration and state prefix of an agent that read the real log once."""
    index_docs(es, index_name, real_log_docs())
    prefix = f"{index_name}-st"
    config = write_agent_config(tmp_path, es_settings, index_name, prefix)
    run_agent(config, es)
    return config, prefix


@pytest.mark.usefixtures("agent_env")
def test_a_state_without_its_signed_snapshot_is_refused_and_the_readable_cursor_is_ignored(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    config, prefix = agent_that_ran(es, es_settings, index_name, tmp_path)
    state = es.get(index=f"{prefix}-state", id="source-auth")["_source"]

    # Editing the readable copy of the cursor changes nothing: the sealed one rules.
    es.update(index=f"{prefix}-state", id="source-auth", doc={"cursor": {"watermark_ms": 1}})
    assert run_agent(config, es).events == 0
    es.index(index=f"{prefix}-state", id="source-auth", document={**state, "snapshot": None})
    with pytest.raises(SnapshotError, match="no signed snapshot"):
        run_agent(config, es)


@pytest.mark.usefixtures("agent_env")
def test_a_snapshot_signed_with_another_key_names_the_document_to_delete(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    config, prefix = agent_that_ran(es, es_settings, index_name, tmp_path)
    snapshot = es.get(index=f"{prefix}-state", id="source-auth")["_source"]["snapshot"]
    forged = {**snapshot, "sig": "0" * 64}
    es.update(index=f"{prefix}-state", id="source-auth", doc={"snapshot": forged}, refresh=True)

    with pytest.raises(SnapshotError, match=rf"source auth: .*source-auth in {prefix}-state") as e:
        run_agent(config, es)
    # The request that deletes it, on the node the configuration names.
    host = es_settings.hosts[0].rstrip("/")
    assert f"curl -u <administrator> -X DELETE '{host}/{prefix}-state/_doc/source-auth'" in str(
        e.value
    )


def test_deeply_nested_yaml_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yml"
    path.write_text("a: " + "[" * 3000 + "]" * 3000 + "\n")

    with pytest.raises(ConfigError, match=r"deep\.yml"):
        load_spec(path)
