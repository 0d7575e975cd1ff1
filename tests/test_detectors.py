"""The shipped detector specs, run by the real Detector on small hand-made streams."""

from __future__ import annotations

import logging
import pickle
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch
from river import anomaly, compose, preprocessing

from nis2triage import esclient
from nis2triage.bench.stream import StreamSpec, generate
from nis2triage.demo import index_docs
from nis2triage.detectors import Detector, DetectorSpec, load_spec
from nis2triage.errors import ConfigError
from nis2triage.features import FeatureSpec
from nis2triage.models.hst import HalfSpaceTrees
from nis2triage.models.pipeline import MultivariateScorer
from nis2triage.records import Alert, Event

from support import DETECTORS, run_agent, write_agent_config

NETWORK = DETECTORS / "network" / "outbound-bytes-per-host.yml"
AUTH = DETECTORS / "auth-volume-per-user.yml"
VOLUME = DETECTORS / "volume" / "events-per-host.yml"
FIVE = timedelta(minutes=5)
T0 = datetime(2026, 11, 2, tzinfo=UTC)
QUARTER = timedelta(minutes=15)


def flow(host: int, size: int, direction: str = "outbound") -> dict[str, Any]:
    return {
        "event": {"category": "network", "action": "connection"},
        "source": {"ip": f"10.0.0.{host}", "bytes": size},
        "destination": {"ip": "192.0.2.1" if direction == "outbound" else "10.0.1.1"},
        "network": {"direction": direction},
    }


def logon(user: str, ip: str, failed: bool) -> dict[str, Any]:
    return {
        "event": {"category": "authentication", "outcome": "failure" if failed else "success"},
        "user": {"name": user},
        "source": {"ip": ip},
    }


def steady_flows(quarters: int, rng: random.Random) -> Iterator[tuple[int, dict[str, Any]]]:
    """Forty hosts, each one to five outbound flows of log-normal size (median 22 kB) a quarter."""
    for quarter in range(quarters):
        for host in range(40):
            for _ in range(rng.randint(1, 5)):
                yield quarter, flow(host, int(rng.lognormvariate(10, 1.5)))


def run(
    spec: DetectorSpec, docs: Iterator[tuple[int, dict[str, Any]]], detector: Detector | None = None
) -> list[Alert]:
    """Feed (quarter, document) pairs in order, closing each quarter once the next begins."""
    detector = detector or Detector(spec)
    alerts: list[Alert] = []
    for i, (quarter, doc) in enumerate(docs):
        at = T0 + quarter * QUARTER + timedelta(seconds=i % 900)
        detector.ingest(Event.at("logs-x", str(i), at, doc))
        alerts += detector.close(int((T0 + quarter * QUARTER).timestamp() * 1000), "logs-x")
    return alerts + detector.close(int((T0 + timedelta(days=30)).timestamp() * 1000), "logs-x")


def test_steady_outbound_traffic_raises_no_alert() -> None:
    alerts = run(load_spec(NETWORK), steady_flows(48, random.Random(1)))

    assert alerts == []


def test_a_burst_of_large_uploads_alerts_on_its_host_and_bucket_only() -> None:
    def stream() -> Iterator[tuple[int, dict[str, Any]]]:
        yield from steady_flows(32, random.Random(2))
        # Host 7 uploads twenty files of 100 MB in quarter 32, amid the usual traffic.
        yield from ((32, flow(7, 100_000_000)) for _ in range(20))
        for quarter, doc in steady_flows(8, random.Random(3)):
            yield 32 + quarter, doc

    [alert] = run(load_spec(NETWORK), stream())

    assert (alert.entity, alert.start) == ("10.0.0.7", T0 + 32 * QUARTER)
    assert alert.score > 5.0
    assert alert.evidence["features"]["bytes_out"] > 2_000_000_000


def test_bytes_summing_past_the_largest_float_do_not_blind_the_detector() -> None:
    # Each value is finite (a double field can hold 1.7e308); their sum is not.
    detector = Detector(load_spec(NETWORK))

    def stream() -> Iterator[tuple[int, dict[str, Any]]]:
        yield from steady_flows(30, random.Random(2))
        yield from ((30, flow(5, 1.7e308)) for _ in range(3))  # type: ignore[arg-type]
        for quarter, doc in steady_flows(10, random.Random(3)):
            yield 31 + quarter, doc
        yield 40, flow(8, 5_000_000_000_000)

    alerts = run(detector.spec, stream(), detector)

    assert detector.stats()["unscorable"] == 1
    assert [(a.entity, a.start) for a in alerts] == [("10.0.0.8", T0 + 40 * QUARTER)]


def test_a_host_sending_far_less_than_usual_is_no_exfiltration() -> None:
    def stream() -> Iterator[tuple[int, dict[str, Any]]]:
        yield from steady_flows(32, random.Random(4))
        yield 32, flow(7, 1)

    assert run(load_spec(NETWORK), stream()) == []


def test_internal_and_inbound_flows_are_not_counted_as_leaving() -> None:
    def stream() -> Iterator[tuple[int, dict[str, Any]]]:
        yield from steady_flows(32, random.Random(5))
        yield from ((32, flow(7, 100_000_000, "internal")) for _ in range(20))
        yield from ((32, flow(8, 100_000_000, "inbound")) for _ in range(20))

    assert run(load_spec(NETWORK), stream()) == []


def ordinary_logons(quarter: int, rng: random.Random) -> Iterator[tuple[int, dict[str, Any]]]:
    """Sixty people logging on from their own desk, 3% mistyped, and one busy service."""
    for user in range(60):
        for _ in range(rng.randint(0, 3)):
            yield quarter, logon(f"user{user}", f"10.0.0.{user}", rng.random() < 0.03)
    for _ in range(100):
        yield quarter, logon("svc-backup", "10.0.9.9", rng.random() < 0.03)


def test_an_account_tried_from_forty_addresses_alerts_and_a_busy_one_does_not() -> None:
    rng = random.Random(6)

    def stream() -> Iterator[tuple[int, dict[str, Any]]]:
        for quarter in range(40):
            yield from ordinary_logons(quarter, rng)
        yield from ((40, logon("user3", f"100.64.0.{i}", True)) for i in range(40))
        yield from ordinary_logons(40, rng)

    alerts = run(load_spec(AUTH), stream())

    # The service account alerts at most while its level is new (its first hour).
    assert [a.entity for a in alerts if a.start >= T0 + 4 * QUARTER] == ["user3"]
    assert alerts[-1].evidence["features"]["sources"] >= 40


def test_an_account_guessed_at_all_day_alerts_when_the_guessing_starts_only() -> None:
    rng = random.Random(7)

    def stream() -> Iterator[tuple[int, dict[str, Any]]]:
        for quarter in range(48):
            yield from ordinary_logons(quarter, rng)
            if quarter >= 16:
                scanners = (f"100.100.{quarter}.{i}" for i in range(rng.randint(50, 70)))
                yield from ((quarter, logon("root", ip, True)) for ip in scanners)

    rooted = [a.start for a in run(load_spec(AUTH), stream()) if a.entity == "root"]

    # The rise halves every hour (the half-life): news for about two hours, then root's
    # own level, for the 30 quarters of guessing that follow.
    assert rooted, "the start of the guessing is news"
    assert max(rooted) < T0 + 16 * QUARTER + timedelta(hours=3)


@pytest.mark.parametrize("path", [AUTH, NETWORK, VOLUME], ids=lambda p: p.stem)
def test_shipped_specs_load_and_name_their_features_in_the_message(path: Any) -> None:
    spec = load_spec(path)

    assert {f.name for f in spec.features if f.in_model}
    assert "{entity}" in spec.message


def host_events(buckets: range, rng: random.Random) -> Iterator[tuple[int, dict[str, Any]]]:
    """Three hosts logging 20 to 30 events each per 5 minutes."""
    for bucket in buckets:
        for host in ("web-1", "db-1", "dc-1"):
            for _ in range(rng.randint(20, 30)):
                yield bucket, {"host": {"name": host}, "event": {"category": "process"}}


def run_buckets(spec: DetectorSpec, docs: Iterator[tuple[int, dict[str, Any]]]) -> list[Alert]:
    """Feed (bucket, document) pairs in order, closing each 5-minute bucket once the next begins."""
    detector = Detector(spec)
    alerts: list[Alert] = []
    for i, (bucket, doc) in enumerate(docs):
        detector.ingest(
            Event.at("logs-x", str(i), T0 + bucket * FIVE + timedelta(seconds=i % 300), doc)
        )
        alerts += detector.close(int((T0 + bucket * FIVE).timestamp() * 1000), "logs-x")
    return alerts + detector.close(int((T0 + timedelta(days=30)).timestamp() * 1000), "logs-x")


def test_steady_log_volume_raises_no_alert() -> None:
    assert run_buckets(load_spec(VOLUME), host_events(range(600), random.Random(3))) == []


def test_a_host_bursting_alerts_on_that_host_and_bucket_only() -> None:
    rng = random.Random(4)
    docs = [*host_events(range(300), rng)]
    docs += [(300, {"host": {"name": "db-1"}}) for _ in range(400)]
    docs += [*host_events(range(301, 320), rng)]

    alerts = run_buckets(load_spec(VOLUME), iter(docs))

    assert [(a.entity, a.start) for a in alerts] == [("db-1", T0 + 300 * FIVE)]
    assert alerts[0].score == 1.0 and alerts[0].threshold == 0.5
    assert alerts[0].evidence["features"] == {"events": 400}


def test_a_host_going_nearly_quiet_alerts() -> None:
    rng = random.Random(5)
    docs = [*host_events(range(300), rng)]
    docs += [(b, {"host": {"name": "dc-1"}}) for b in range(300, 303)]

    alerts = run_buckets(load_spec(VOLUME), iter(docs))

    # The seen range now reaches down to 1, so the two quiet buckets after are no news.
    assert [(a.entity, a.start, a.evidence["features"]) for a in alerts] == [
        ("dc-1", T0 + 300 * FIVE, {"events": 1.0})
    ]


SPEC_HEAD = """name: volume
source: logs
entity: host.name
features:
  - {name: events, kind: count}
"""
FORECAST = "target: events\nmodel: [{forecast.HoltWintersError: {}}]\nper_entity: true\n"


@pytest.mark.parametrize(
    ("rest", "match"),
    [
        pytest.param(
            "target: events\nmodel: [{forecast.HoltWintersError: {alpha: 2}}]\n",
            r"bad\.yml:7:\d+: model: forecast.HoltWintersError: alpha must lie in \(0, 1\]",
            id="alpha",
        ),
        pytest.param(
            FORECAST + "postprocess:\n  likelihood: {short_window: 0}\n",
            r"bad\.yml:10:\d+: postprocess\.likelihood\.short_window: .*greater than or equal to 1",
            id="short-window",
        ),
        pytest.param(
            FORECAST + "postprocess:\n  range_rule:\n    margin: -0.1\n",
            r"bad\.yml:11:\d+: postprocess\.range_rule\.margin: -0\.1 is outside the allowed range",
            id="negative-margin",
        ),
        pytest.param(
            FORECAST + "postprocess:\n  range_rule: {margin: .inf}\n",
            r"bad\.yml:10:\d+: postprocess\.range_rule\.margin: inf is outside the allowed "
            r"range: write a number from 0 to 100",
            id="infinite-margin",
        ),
        pytest.param(
            FORECAST + "postprocess:\n  range_rule: {margin: 1.0e+30}\n",
            r"postprocess\.range_rule\.margin: 1e\+30 is outside the allowed range",
            id="huge-margin",
        ),
        pytest.param(
            FORECAST + "postprocess:\n  likelihood: {min_variance: .inf}\n",
            r"bad\.yml:10:\d+: postprocess\.likelihood\.min_variance: inf is outside the "
            r"allowed range: write a number above 0",
            id="infinite-variance-floor",
        ),
        pytest.param(
            FORECAST + "postprocess:\n  likelihood: {long_window: 99999999999999999999}\n",
            r"bad\.yml:10:\d+: postprocess\.likelihood\.long_window: .*less than or equal "
            r"to 1000000",
            id="window-past-any-size",
        ),
        pytest.param(
            FORECAST + "postprocess:\n  range_rule: {warmup: 99999999999999999999}\n",
            r"postprocess\.range_rule\.warmup: .*less than or equal to 1000000",
            id="endless-warmup",
        ),
        pytest.param(
            FORECAST + "postprocess:\n  range_rule: {width: 3}\n",
            r"bad\.yml:10:\d+: postprocess\.range_rule\.width: .*known keys: margin, warmup",
            id="unknown-key",
        ),
        pytest.param(
            FORECAST + "postprocess:\n  likelihood: {red_tail: 0.01}\n",
            r"bad\.yml:10:\d+: postprocess\.likelihood: .*red_tail \(0\.01\) must be below",
            id="tails",
        ),
        pytest.param(
            "target: events\nmodel: [{forecast.HoltWintersError: {}}]\n"
            "postprocess: {range_rule: {}}\n",
            r"bad\.yml:8:\d+: postprocess: .*set `per_entity: true`",
            id="shared-model",
        ),
        pytest.param(
            "model: [{anomaly.HalfSpaceTrees: {}}]\nper_entity: true\n"
            "postprocess: {range_rule: {}}\n",
            r"bad\.yml:8:\d+: postprocess: .*needs `target`",
            id="no-target",
        ),
    ],
)
def test_bad_post_processing_is_refused_with_file_and_line(
    tmp_path: Path, rest: str, match: str
) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(SPEC_HEAD + rest)

    with pytest.raises(ConfigError, match=match):
        load_spec(path)


def test_half_space_trees_too_large_to_build_are_refused_with_file_and_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(SPEC_HEAD + "model: [{anomaly.HalfSpaceTrees: {height: 40}}]\n")

    with pytest.raises(ConfigError, match=r"bad\.yml:6:\d+: .*lower n_trees or height"):
        load_spec(path)


def config_with_source(
    tmp_path: Path,
    es_settings: esclient.ESSettings,
    index: str,
    source: dict[str, Any],
    folder: str,
) -> Path:
    """The test agent's configuration plus `source` and the detectors in detectors/`folder`."""
    config = write_agent_config(tmp_path, es_settings, index, f"{index}-st")
    settings = yaml.safe_load(config.read_text())
    settings["sources"].append(source)
    settings["detectors"].append(str(DETECTORS / folder / "*.yml"))
    config.write_text(yaml.safe_dump(settings))
    return config


@pytest.mark.usefixtures("agent_env")
def test_the_agent_runs_the_network_detector_from_a_network_source(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    pairs = list(steady_flows(32, random.Random(8)))
    pairs += [(32, flow(7, 100_000_000)) for _ in range(20)]
    docs = [
        {**doc, "@timestamp": (start + q * QUARTER + timedelta(seconds=i % 900)).isoformat()}
        for i, (q, doc) in enumerate(pairs)
    ]
    index_docs(es, index_name, docs)
    network = {"name": "network", "indices": [index_name], "query": "event.category:network"}
    config = config_with_source(tmp_path, es_settings, index_name, network, "network")

    report = run_agent(config, es)

    # Only the network source reads them: the auth detectors' filters want none of them.
    assert report.events == len(docs)
    assert [(a.name, a.entity) for a in report.alerts] == [("outbound-bytes-per-host", "10.0.0.7")]


@pytest.mark.usefixtures("agent_env")
def test_the_agent_runs_the_volume_detector_from_a_logs_source(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    pairs = list(host_events(range(130), random.Random(9)))
    pairs += [(130, {"host": {"name": "db-1"}, "event": {"category": "process"}})] * 400
    docs = [
        {**doc, "@timestamp": (start + b * FIVE + timedelta(seconds=i % 300)).isoformat()}
        for i, (b, doc) in enumerate(pairs)
    ]
    index_docs(es, index_name, docs)
    logs = {"name": "logs", "indices": [index_name]}
    config = config_with_source(tmp_path, es_settings, index_name, logs, "volume")

    report = run_agent(config, es)

    alerts = [(a.name, a.entity, a.start, a.score) for a in report.alerts]
    assert alerts == [("events-per-host", "db-1", start + 130 * FIVE, 1.0)]


def test_per_host_models_survive_a_snapshot_and_go_on_scoring_alike() -> None:
    detector = Detector(load_spec(VOLUME))
    for i in range(150):
        detector.judge_vector("web-1", {"events": 20.0 + i % 3})
    restored = pickle.loads(pickle.dumps(detector))

    after = [restored.judge_vector("web-1", {"events": v}).score for v in (21.0, 90.0)]

    assert after == [detector.judge_vector("web-1", {"events": v}).score for v in (21.0, 90.0)]
    assert after[1] == 1.0 and after[0] < 0.5


def test_specs_without_the_new_keys_keep_their_fingerprint_and_their_saved_models() -> None:
    # The agent reuses a saved model only while the spec's dump is unchanged.
    assert {"per_entity", "postprocess"}.isdisjoint(load_spec(AUTH).model_dump())
    assert load_spec(VOLUME).model_dump()["per_entity"] is True


def judge_day(detector: Detector, events: list[Event]) -> list[Alert]:
    """The agent's rhythm: pages of 500 events, closing what the lateness margin allows."""
    alerts: list[Alert] = []
    for start in range(0, len(events), 500):
        page = events[start : start + 500]
        for event in page:
            detector.ingest(event)
        alerts += detector.close(page[-1].ts_ms - 300_000, "logs-day")
    return alerts + detector.close(events[-1].ts_ms + 10**9, "logs-day")


def rivers_trees(spec: DetectorSpec) -> anomaly.HalfSpaceTrees:
    return anomaly.HalfSpaceTrees(**(spec.model[0]["anomaly.HalfSpaceTrees"] or {}))


def with_rivers_trees(spec: DetectorSpec) -> Detector:
    """The detector with River's own HalfSpaceTrees, judged one bucket at a time (inside a
    River pipeline, which the detector neither batches nor converts)."""
    detector = Detector(spec)
    detector.scorer = MultivariateScorer(compose.Pipeline(rivers_trees(spec)))
    return detector


def generated_day(events: int = 60_000) -> list[Event]:
    stream = generate(StreamSpec(day=T0.date(), events=events, hosts=300, users=1_000))
    return [
        Event.at("logs-day", str(i), datetime.fromisoformat(doc["@timestamp"]), doc)
        for i, doc in enumerate(stream)
    ]


def alert_keys(alerts: list[Alert]) -> list[tuple[str, datetime, float, float]]:
    return [(a.entity, a.start, a.score, a.threshold) for a in alerts]


@pytest.mark.parametrize("path", [AUTH, DETECTORS / "ssh-brute-force.yml"], ids=lambda p: p.stem)
def test_batched_trees_alert_exactly_as_rivers_on_a_generated_day(path: Path) -> None:
    spec = load_spec(path)
    events = generated_day()

    ours, rivers = Detector(spec), with_rivers_trees(spec)
    batched, one_by_one = judge_day(ours, events), judge_day(rivers, events)

    assert alert_keys(batched) == alert_keys(one_by_one)
    assert ours.stats() == rivers.stats()
    assert len(batched) > 0 and ours.stats()["scored"] > 1_000


def test_a_scaler_before_the_trees_is_judged_one_bucket_at_a_time_as_in_river() -> None:
    spec = load_spec(DETECTORS / "ssh-brute-force.yml")
    params = spec.model[0]["anomaly.HalfSpaceTrees"] or {}
    scaled = spec.model_copy(
        update={"model": [{"preprocessing.MinMaxScaler": {}}, {"anomaly.HalfSpaceTrees": params}]}
    )
    events = generated_day(20_000)
    river = Detector(scaled)
    river.scorer = MultivariateScorer(
        compose.Pipeline(preprocessing.MinMaxScaler(), rivers_trees(spec))
    )

    ours = judge_day(Detector(scaled), events)

    assert alert_keys(ours) == alert_keys(judge_day(river, events))
    assert ours


def test_rivers_trees_from_an_older_snapshot_go_on_as_river_would_in_batches() -> None:
    spec = load_spec(AUTH)
    events = generated_day()
    half = len(events) // 2
    restored = Detector(spec)
    restored.scorer = MultivariateScorer(rivers_trees(spec))  # as unpickled from before
    first = judge_day(restored, events[:half])

    later = judge_day(restored, events[half:])

    reference = with_rivers_trees(spec)
    expected = judge_day(reference, events[:half]) + judge_day(reference, events[half:])
    assert alert_keys(first + later) == alert_keys(expected)
    assert type(restored.scorer.pipeline) is HalfSpaceTrees  # type: ignore[attr-defined]


def test_an_entity_field_no_event_has_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    spec = load_spec(AUTH).model_copy(update={"entity": "user.nmae"})
    detector = Detector(spec)
    batch = [Event.at("logs-x", str(i), T0, logon("alice", "10.0.0.1", True)) for i in range(60)]

    with caplog.at_level(logging.WARNING, logger="nis2triage.detectors"):
        detector.ingest_many(batch[:5])  # a few stray events are no reason to warn
        quiet = list(caplog.records)
        detector.ingest_many(batch)
        detector.ingest_many(batch)

    [said] = [r.getMessage() for r in caplog.records if r.name == "nis2triage.detectors"]
    assert quiet == []
    assert said.startswith("detector auth-volume-per-user: the last 125 events its filter took")
    assert "user.nmae" in said and detector.stats()["missing_entity"] == 125


def test_entities_past_the_cap_of_one_event_are_counted_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An event listing 12 addresses opened buckets for the first 8; the other 4 went into
    # no bucket without a word or a count.
    detector = Detector(load_spec(DETECTORS / "ssh-brute-force.yml"))
    doc = {
        "event": {"category": "authentication", "outcome": "failure"},
        "system": {"auth": {"ssh": {"event": "Failed", "method": "password"}}},
        "source": {"ip": [f"10.0.0.{i}" for i in range(12)]},
    }

    with caplog.at_level(logging.WARNING, logger="nis2triage.detectors"):
        detector.ingest_many([Event.at("logs-x", str(i), T0, doc) for i in range(2)])

    [said] = [r.getMessage() for r in caplog.records if r.name == "nis2triage.detectors"]
    assert said.startswith("detector ssh-brute-force: an event listed more than 8 values of ")
    assert "the 8 beyond were counted for no entity" in said
    assert detector.stats()["cut_entities"] == 8 and len(detector.table.open) == 8


def test_an_event_with_the_entity_starts_the_count_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    detector = Detector(load_spec(AUTH))
    lacking = {"event": {"category": "authentication"}}
    docs = [lacking] * 99 + [logon("alice", "10.0.0.1", True)] + [lacking] * 99

    with caplog.at_level(logging.WARNING, logger="nis2triage.detectors"):
        detector.ingest_many([Event.at("logs-x", str(i), T0, d) for i, d in enumerate(docs)])

    assert [r for r in caplog.records if r.name == "nis2triage.detectors"] == []
    assert detector.stats()["missing_entity"] == 198


def test_some_events_without_the_entity_are_only_counted(caplog: pytest.LogCaptureFixture) -> None:
    detector = Detector(load_spec(AUTH))
    docs = [logon("alice", "10.0.0.1", True), {"event": {"category": "authentication"}}]

    with caplog.at_level(logging.WARNING, logger="nis2triage.detectors"):
        detector.ingest_many([Event.at("logs-x", str(i), T0, d) for i, d in enumerate(docs)])

    assert [r for r in caplog.records if r.name == "nis2triage.detectors"] == []
    assert detector.stats()["missing_entity"] == 1


def test_an_event_for_a_bucket_already_judged_is_counted_late_not_judged_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    detector = Detector(load_spec(AUTH))
    tries = [
        Event.at(
            "logs-x", str(i), T0 + timedelta(seconds=10 * i), logon("alice", "192.0.2.9", True)
        )
        for i in range(30)
    ]
    bucket_end = int((T0 + QUARTER).timestamp() * 1000)

    detector.ingest_many(tries[:15])
    detector.close(bucket_end + 60_000, "logs-x")
    first = detector.scored
    with caplog.at_level(logging.WARNING, logger="nis2triage.detectors"):
        detector.ingest_many(tries[15:])  # the same bucket's second half, after it was judged
        detector.ingest_many(tries[15:16])
    detector.close(bucket_end + 600_000, "logs-x")

    [said] = [r.getMessage() for r in caplog.records if r.name == "nis2triage.detectors"]
    assert (first, detector.scored) == (1, 1)
    assert detector.stats()["late_events"] == 16
    assert detector.table.open == {} and detector.table.starts == {}
    assert said.startswith(
        "detector auth-volume-per-user: 15 events came after their 15-minute bucket was judged"
    )


def test_the_judged_mark_survives_a_snapshot() -> None:
    detector = Detector(load_spec(AUTH))
    detector.ingest_many([Event.at("logs-x", "1", T0, logon("alice", "192.0.2.9", True))])
    detector.close(int((T0 + QUARTER).timestamp() * 1000), "logs-x")

    restored = pickle.loads(pickle.dumps(detector))
    restored.ingest_many([Event.at("logs-x", "2", T0, logon("alice", "192.0.2.9", True))])

    assert restored.stats()["late_events"] == 1 and restored.table.open == {}


def test_an_alerts_query_names_the_sources_time_field() -> None:
    detector = Detector(load_spec(AUTH))
    detector.time_field = "event.created"
    burst = [
        Event.at("logs-x", str(i), T0, logon("alice", f"192.0.2.{i}", True)) for i in range(40)
    ]
    detector.ingest_many(burst)
    # The alert itself does not matter here, only the query it would carry.
    query = detector._query("alice", T0, T0 + QUARTER)

    assert query.endswith("event.created:[2026-11-02T00:00:00+00:00 TO 2026-11-02T00:15:00+00:00}")
    assert "@timestamp" not in query


HST = "model: [{anomaly.HalfSpaceTrees: {}}]\n"


def hst_limits(limits: str) -> str:
    return SPEC_HEAD + f"model: [{{anomaly.HalfSpaceTrees: {{limits: {limits}}}}}]\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            SPEC_HEAD + "model: [{anomaly.GaussianScorer: {window_size: 99999999999999999999}}]\n",
            r"bad\.yml:6:\d+: .*GaussianScorer: a size too large to allocate \(OverflowError",
            id="window-past-any-size",
        ),
        pytest.param(
            SPEC_HEAD + "model: [{anomaly.HalfSpaceTrees: {window_size: 99999999999999999999}}]\n",
            r"bad\.yml:6:\d+: model: anomaly\.HalfSpaceTrees: window_size 99999999999999999999 "
            r"is more than 1,000,000 buckets: the first window would never end",
            id="endless-first-window",
        ),
        pytest.param(SPEC_HEAD + HST + "threshold: {floor: .nan}\n",
                     r"bad\.yml:7:\d+: .*threshold.floor: .*finite", id="nan-floor"),
        pytest.param(SPEC_HEAD + HST + "threshold: {floor: .inf}\n",
                     r"bad\.yml:7:\d+: .*threshold.floor: .*finite", id="infinite-floor"),
        pytest.param(hst_limits("{events: [5, 1]}"),
                     r"limits of events must be finite with low < high", id="reversed-limits"),
        pytest.param(hst_limits("{events: [-1.0e308, 1.0e308]}"),
                     r"two numbers .* write 1\.0e\+308", id="limits-yaml-text"),
        pytest.param(hst_limits("{events: [1]}"), r"limits of events must be two numbers",
                     id="one-limit"),
        pytest.param(SPEC_HEAD.replace("entity: host.name", 'entity: ""') + HST,
                     r"bad\.yml:\d+:\d+: entity: a field name is needed", id="empty-entity"),
        pytest.param(SPEC_HEAD.replace("entity: host.name", 'entity: "host.name "') + HST,
                     r"bad\.yml:3:\d+: entity: 'host\.name ' has a space or a control "
                     r"character around it: write 'host\.name'", id="spaced-entity"),
        pytest.param(SPEC_HEAD.replace("kind: count}", "kind: distinct, field: ' user.name'}")
                     + HST,
                     r"bad\.yml:5:\d+: features\.0\.field: ' user\.name' has a space",
                     id="spaced-feature-field"),
        pytest.param(
            SPEC_HEAD + "filter: {all_of: {event.outcome: {b: c}}}\n" + HST,
            r"bad\.yml:6:\d+: filter.all_of: .*event.outcome: \{'b': 'c'\} is not a value a "
            r"field can hold",
            id="object-filter-value",
        ),
        pytest.param(SPEC_HEAD + 'filter: {all_of: {"event.outcome ": failure}}\n' + HST,
                     r"bad\.yml:6:\d+: filter\.all_of\.event\.outcome : 'event\.outcome ' "
                     r"has a space or a control character around it: write 'event\.outcome'",
                     id="spaced-filter-field"),
        pytest.param(SPEC_HEAD + 'filter: {exists: ["source.ip "]}\n' + HST,
                     r"bad\.yml:6:\d+: filter\.exists\.0: 'source\.ip ' has a space",
                     id="spaced-exists-field"),
        pytest.param(SPEC_HEAD + 'filter: {none_of: {"source.*": x}}\n' + HST,
                     r"bad\.yml:6:\d+: .*'source\.\*' is a pattern", id="pattern-filter-field"),
        pytest.param(SPEC_HEAD + "filter: {all_of: {event..outcome: failure}}\n" + HST,
                     r"bad\.yml:6:\d+: .*'event\.\.outcome' has an empty part between its "
                     r"dots", id="empty-part-filter-field"),
        pytest.param(SPEC_HEAD + "filter: {all_of: {event.outcome: []}}\n" + HST,
                     r"bad\.yml:6:\d+: filter\.all_of: .*event\.outcome: an empty list names no "
                     r"value; give at least one, or leave the condition out",
                     id="empty-filter-values"),
    ],
)  # fmt: skip
def test_detector_files_that_cannot_work_are_refused_with_file_and_line(
    tmp_path: Path, text: str, match: str
) -> None:
    # Models that cannot be built, bars no score passes, limits, entities and filters that
    # can never match: each named where it is written.
    path = tmp_path / "bad.yml"
    path.write_text(text)

    with pytest.raises(ConfigError, match=match):
        load_spec(path)


def test_a_hint_the_assessment_does_not_know_is_refused_with_the_known_ones(
    tmp_path: Path,
) -> None:
    spec = yaml.safe_load(AUTH.read_text())
    spec["hints"] = {"malicous": True}
    path = tmp_path / "typo.yml"
    path.write_text(yaml.safe_dump(spec))

    with pytest.raises(
        ConfigError,
        match="unknown hint malicous; the hints are: data_compromised, malicious, unauthorised_acc",
    ):
        load_spec(path)


@pytest.mark.usefixtures("agent_env")
def test_a_triage_route_naming_no_loaded_rule_is_said_at_start(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    triage = tmp_path / "triage.yml"
    triage.write_text(
        "routes:\n  - name: brute\n    when: {names: [ssh-brute-forse]}\n    route: soc\n"
        "default: soc\n"
    )
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    settings = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**settings, "triage": str(triage)}))

    with caplog.at_level(logging.WARNING, logger="nis2triage.triage"):
        run_agent(config, es)

    assert (
        "triage route 'brute': no rule or detector is named 'ssh-brute-forse' (did you mean "
        "'ssh-brute-force'?), so this condition never holds"
    ) in caplog.text


def test_a_detector_with_more_hosts_than_its_cap_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Three hosts, two of them in each bucket, against a cap of two: a host's chain is
    # evicted before its next bucket, so it never learns; only the log and counters say so.
    spec = load_spec(VOLUME).model_copy(update={"max_entities": 2})
    detector = Detector(spec)
    five = timedelta(minutes=5)

    with caplog.at_level(logging.WARNING, logger="nis2triage.detectors"):
        for b in range(6):
            hosts = [f"h{b % 3}", f"h{(b + 1) % 3}"]
            detector.ingest_many(
                [Event.at("logs-x", f"{b}-{h}", T0 + b * five, {"host.name": h}) for h in hosts]
            )
            detector.close(int((T0 + (b + 1) * five).timestamp() * 1000), "logs-x")

    said = [r.getMessage() for r in caplog.records if r.name == "nis2triage.detectors"]
    assert detector.evictions() == {"open_buckets": 0, "models": 5, "baselines": 0}
    assert detector.stats()["evicted_models"] == 5
    assert said == [
        "detector events-per-host: more entities than its max_entities (2); dropped so far: "
        "1 per-entity models. An entity dropped starts learning afresh when it comes back: "
        "raise max_entities if memory allows, or narrow the detector's filter "
        "(nis2triage_evictions counts them)"
    ]


def test_open_buckets_dropped_at_the_cap_are_said_with_their_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    detector = Detector(load_spec(AUTH).model_copy(update={"max_entities": 2}))
    tries = [
        Event.at("logs-x", f"{u}-{i}", T0 + timedelta(seconds=i), logon(u, "192.0.2.9", True))
        for i, u in enumerate(["ann", "ann", "bob", "cy", "cy"])
    ]

    with caplog.at_level(logging.WARNING, logger="nis2triage.detectors"):
        detector.ingest_many(tries)

    [said] = [r.getMessage() for r in caplog.records if r.name == "nis2triage.detectors"]
    assert detector.evictions()["open_buckets"] == 1
    assert "dropped so far: 1 open buckets (2 events not counted)." in said


def test_a_detector_under_its_cap_says_nothing_of_evictions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    detector = Detector(load_spec(VOLUME))
    five = timedelta(minutes=5)
    events = [
        Event.at("logs-x", f"{b}-{h}", T0 + b * five, {"host.name": f"h{h}"})
        for b in range(4)
        for h in range(3)
    ]

    with caplog.at_level(logging.WARNING, logger="nis2triage.detectors"):
        detector.ingest_many(events)
        detector.close(int((T0 + 5 * five).timestamp() * 1000), "logs-x")

    assert detector.evictions() == {"open_buckets": 0, "models": 0, "baselines": 0}
    assert detector.scored == 12
    assert [r for r in caplog.records if r.name == "nis2triage.detectors"] == []


def test_a_negative_volume_cannot_cancel_an_exfiltration_and_is_counted_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = load_spec(Path(__file__).parents[1] / "detectors/network/outbound-bytes-per-host.yml")
    spec = spec.model_copy(update={"warmup": 5})
    start = 1_700_000_100_000 - 1_700_000_100_000 % 900_000

    def flow(at: int, host: str, sent: float, n: str) -> Event:
        doc = {
            "event": {"category": "network"},
            "network": {"direction": "outbound"},
            "source": {"ip": host, "bytes": sent},
        }
        return Event(index="x", id=n, ts_ms=start + at, doc=doc)

    def alerts(cancelling: list[float]) -> tuple[list[str], int]:
        detector = Detector(spec)
        normal = [
            flow(b * 900_000 + 1000, f"10.0.0.{h}", 10_000 + 37 * h + b, f"{b}-{h}")
            for b in range(200)
            for h in range(20)
        ]
        burst = [flow(200 * 900_000 + 1000, "10.0.0.99", 50e9, "exfil")]
        burst += [
            flow(200 * 900_000 + 2000, "10.0.0.99", v, f"c{i}") for i, v in enumerate(cancelling)
        ]
        detector.ingest_many([*normal, *burst])
        closed = detector.close(start + 202 * 900_000, "x")
        return [a.entity for a in closed], detector.stats()["negative_values"]

    with caplog.at_level(logging.WARNING, logger="nis2triage.detectors"):
        plain, cancelled = alerts([]), alerts([-50e9, -1e300])

    assert plain == (["10.0.0.99"], 0)
    assert cancelled == (["10.0.0.99"], 2)
    [said] = [r.getMessage() for r in caplog.records if "negative" in r.getMessage()]
    assert said.startswith("detector outbound-bytes-per-host: 2 negative values of source.bytes")


def test_a_negative_value_is_counted_once_per_event_under_its_own_field() -> None:
    # Two features on source.bytes, a third on another field, an event for three entities.
    features = [
        FeatureSpec(name="bytes", kind="sum", field="source.bytes", transform="log1p"),
        FeatureSpec(name="largest", kind="max", field="source.bytes", transform="log1p"),
        FeatureSpec(name="took", kind="sum", field="event.duration", transform="log1p"),
    ]
    spec = DetectorSpec(
        name="flows", source="net", entity="source.ip", features=features,
        model=[{"anomaly.HalfSpaceTrees": {}}],
    )  # fmt: skip
    detector = Detector(spec)
    doc = {
        "source": {"ip": ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "bytes": -50e9},
        "event": {"duration": 5},
    }

    detector.ingest_many([Event(index="x", id="1", ts_ms=1_700_000_000_000, doc=doc)])

    assert detector.stats()["negative_values"] == 1
    assert detector.negative_fields == ["source.bytes"]


def test_values_that_are_no_number_are_counted_once_per_event_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    features = [
        FeatureSpec(name="bytes", kind="sum", field="source.bytes"),
        FeatureSpec(name="largest", kind="max", field="source.bytes", transform="log1p"),
        FeatureSpec(name="took", kind="sum", field="event.duration"),
    ]
    spec = DetectorSpec(
        name="flows", source="net", entity="source.ip", features=features,
        model=[{"anomaly.HalfSpaceTrees": {}}],
    )  # fmt: skip
    detector = Detector(spec)
    docs = [
        {"source": {"ip": ["10.0.0.1", "10.0.0.2"], "bytes": "50 GB"}, "event": {"duration": 5}},
        {"source": {"ip": "10.0.0.1", "bytes": "5e10"}, "event": {"duration": True}},
        {"source": {"ip": "10.0.0.1", "bytes": 7}},  # a field left out is no error
    ]
    events = [
        Event(index="x", id=str(i), ts_ms=1_700_000_000_000, doc=d) for i, d in enumerate(docs)
    ]

    with caplog.at_level(logging.WARNING, logger="nis2triage.detectors"):
        detector.ingest_many(events)

    assert detector.stats()["not_numbers"] == 2
    assert detector.not_number_fields == ["event.duration", "source.bytes"]
    [said] = [r.getMessage() for r in caplog.records if "no number" in r.getMessage()]
    assert said.startswith("detector flows: 2 events held values of event.duration, source.bytes")


def test_a_whole_number_past_the_largest_double_is_no_number_not_a_failed_event() -> None:
    # The node keeps it in _source under ignore_malformed (logs-* indices set it); float()
    # raised OverflowError, the event went to the dead letters and its bucket kept a part.
    spec = load_spec(NETWORK)
    detector = Detector(spec)
    doc = flow(1, 0) | {"source": {"ip": "10.0.0.1", "bytes": int("9" * 400)}}
    failed: list[Exception] = []

    detector.ingest_many([Event.at("x", "1", T0, doc)], lambda _, exc: failed.append(exc))

    assert failed == []
    assert detector.stats()["not_numbers"] == 1
    [(_, bucket)] = detector.table.close_until(int((T0 + QUARTER).timestamp() * 1000))
    raw = bucket.raw(detector.measured)
    assert raw == {"bytes_out": 0.0, "connections": 1.0, "destinations": 1.0}


def test_an_entity_listed_twice_in_one_event_counts_the_event_once() -> None:
    # As the node counts a document once whatever its array repeats (a terms aggregation's
    # doc_count); related.ip lists often repeat an address, and two values past 1,024
    # characters that share their start are cut to one entity.
    spec = load_spec(AUTH).model_copy(update={"entity": "related.user"})
    detector = Detector(spec)
    long_name = "x" * 1024
    docs = [
        logon("bob", "203.0.113.9", failed=True) | {"related": {"user": ["bob", "bob"]}},
        logon("eve", "203.0.113.9", failed=True)
        | {"related": {"user": [long_name + "a", long_name + "b"]}},
    ]

    detector.ingest_many(Event.at("x", str(i), T0, d) for i, d in enumerate(docs))

    closed = detector.table.close_until(int((T0 + timedelta(days=1)).timestamp() * 1000))
    assert sorted((e[:3], b.events) for e, b in closed) == [("bob", 1), ("xxx", 1)]
    assert detector.stats()["cut_entities"] == 0
