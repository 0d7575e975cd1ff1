"""A converted Sigma rule run over a window on the real node: one alert per entity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch, helpers

from nis2triage.rules import winlog_mapping
from nis2triage.rules.sigma import LogSource, SigmaQuery
from nis2triage.rules.sigma_run import RuleExecutionError, RunSettings, run_rule

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
RULE = SigmaQuery(
    rule_id="r-1",
    title="Reg query",
    level="high",
    tags=("attack.t1082",),
    logsource=LogSource("windows", "process_creation"),
    query="process.executable.caseless:*\\\\reg.exe AND process.command_line:*query*",
    fields=(),
    path="rules/reg.yml",
    version="2025-01-01",
)


def event(minute: int, host: str | None, exe: str = "C:\\Windows\\REG.EXE") -> dict[str, object]:
    doc: dict[str, object] = {
        "@timestamp": (T0 + timedelta(minutes=minute)).isoformat(),
        "process": {"executable": exe, "command_line": f"{exe} QUERY HKLM"},
    }
    return doc | ({"host": {"name": host}} if host else {})


@pytest.fixture
def events(es: Elasticsearch, index_name: str) -> RunSettings:
    es.indices.create(index=index_name, **winlog_mapping.index_body())
    docs = [event(1, "ws1"), event(3, "ws1"), event(2, "ws2"), event(4, None)]
    docs += [event(2, "ws3", exe="C:\\Windows\\notepad.exe"), event(60, "ws1")]
    helpers.bulk(es, ({"_index": index_name, "_source": d} for d in docs), refresh=True)
    return RunSettings(index_name)


def test_one_alert_per_entity_with_counts_and_times(es: Elasticsearch, events: RunSettings) -> None:
    alerts = {a.entity: a for a in run_rule(es, RULE, events, T0, T0 + timedelta(minutes=60))}

    assert sorted(alerts) == ["(none)", "ws1", "ws2"]
    ws1 = alerts["ws1"]
    assert (ws1.evidence["matched"], ws1.evidence["first"], ws1.evidence["last"]) == (
        2,
        "2025-03-01T10:01:00+00:00",
        "2025-03-01T10:03:00+00:00",
    )
    assert (ws1.kind, ws1.name, ws1.severity, ws1.tags, ws1.query) == (
        "rule",
        "Reg query",
        "high",
        ("attack.t1082",),
        RULE.query,
    )
    assert ws1.message.startswith("Sigma rule 'Reg query' matched 2 event(s) on host.name ws1")
    assert len(ws1.evidence["sample_events"]) == 2


def test_same_window_gives_same_alert_ids(es: Elasticsearch, events: RunSettings) -> None:
    window = (T0, T0 + timedelta(minutes=60))

    first = sorted(a.id for a in run_rule(es, RULE, events, *window))
    again = sorted(a.id for a in run_rule(es, RULE, events, *window))

    assert first == again
    assert len(set(first)) == 3


def test_entity_field_is_configurable(es: Elasticsearch, events: RunSettings) -> None:
    settings = RunSettings(events.index_pattern, entity_field="process.executable")

    alerts = run_rule(es, RULE, settings, T0, T0 + timedelta(hours=2))

    assert [(a.entity, a.evidence["matched"]) for a in alerts] == [("c:\\windows\\reg.exe", 5)]


def test_naive_window_is_refused(es: Elasticsearch, events: RunSettings) -> None:
    with pytest.raises(ValueError, match="time zone"):
        run_rule(es, RULE, events, datetime(2025, 3, 1), datetime(2025, 3, 2))


def test_query_the_node_refuses_names_the_rule_and_reason(
    es: Elasticsearch, events: RunSettings
) -> None:
    bad = SigmaQuery(
        **{**RULE.__dict__, "query": "destination.ip:10.*", "path": str(Path("x.yml"))}
    )

    with pytest.raises(RuleExecutionError, match=r"'Reg query' \(x.yml\).*prefix queries.*\[ip\]"):
        run_rule(es, bad, events, T0, T0 + timedelta(hours=1))


def test_a_date_math_index_is_read_back_over_the_window(es: Elasticsearch, index_name: str) -> None:
    # Resolved at the request alone, `<x-{now/m}>` named this minute's index, and the
    # window of the minute before found nothing (per minute so that the test crosses
    # the boundary at once; the node resolves `now` by its own clock).
    before = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    earlier = f"{index_name}-{before:%Y.%m.%d.%H.%M}"
    es.indices.create(index=earlier, **winlog_mapping.index_body())
    doc = event(0, "ws1") | {"@timestamp": (before + timedelta(seconds=5)).isoformat()}
    es.index(index=earlier, document=doc, refresh=True)
    settings = RunSettings(f"<{index_name}-{{now/m{{yyyy.MM.dd.HH.mm}}}}>")

    alerts = run_rule(es, RULE, settings, before, before + timedelta(minutes=1))

    assert [(a.entity, a.evidence["matched"]) for a in alerts] == [("ws1", 1)]
    assert alerts[0].index_pattern == settings.index_pattern  # as written, for Kibana
