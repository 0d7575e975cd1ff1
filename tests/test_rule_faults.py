"""A fault inside one rule's own code pauses that rule; the others run on, the agent too."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta

import pytest
from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch
from faultproxy import fault_proxy

from nis2triage import esclient
from nis2triage.config import RulesConfig
from nis2triage.records import Alert
from nis2triage.rulerunner import RuleRunner
from nis2triage.rules.native import NativeRule
from nis2triage.rules.sigma import LogSource, SigmaQuery
from nis2triage.rules.state import RuleState
from tests.rules.native_support import at, ev, index_events, make_rule


class FaultyOnce(RuleRunner):
    """The runner, with one rule's code failing as a bug would: on its first window only."""

    faulty = "test frequency"
    failed = 0

    def _native(
        self, rule: NativeRule, start: datetime, end: datetime, st: RuleState
    ) -> list[Alert]:
        if rule.name == self.faulty and not self.failed:
            self.failed += 1
            st.counted_until["half-done"] = start
            raise ValueError("year 14645 is out of range")
        return super()._native(rule, start, end, st)


def test_a_rule_failing_inside_is_paused_and_the_others_go_on(
    es: Elasticsearch, index_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    index_events(es, index_name, [ev(m, user="a", process="mimikatz.exe") for m in (1, 2, 3)])
    listed = make_rule(
        "blacklist", index_name, compare_key="process.name", blacklist=["mimikatz.exe"]
    )
    counted = make_rule("frequency", index_name, num_events=3, timeframe="5m")
    config = RulesConfig(max_lateness=timedelta(seconds=1), initial_lookback=timedelta(minutes=10))
    runner = FaultyOnce(
        es, config, [listed, counted], [], clock=lambda: at(10) + timedelta(seconds=1)
    )

    with caplog.at_level(logging.ERROR, logger="nis2triage.rulerunner"):
        alerts = runner.run_due()

    assert {a.name for a in alerts} == {"test blacklist"}
    progress = runner.progress["test frequency"]
    assert progress.paused == "failed: ValueError('year 14645 is out of range')"
    # What the failed run changed of its state is undone.
    assert progress.state.counted_until == {}
    assert "rule test frequency paused after an internal error" in caplog.text
    # Paused until a restart, which gives it another chance at the same window.
    assert runner.run_due() == []
    runner.restore(runner.to_dict())
    assert [a.name for a in runner.run_due()] == ["test frequency"]


SIGMA = SigmaQuery(
    rule_id="r-m",
    title="Mimikatz by name",
    level="high",
    tags=(),
    logsource=LogSource("windows", "process_creation"),
    query="process.name:mimikatz.exe",
    fields=(),
    path="rules/m.yml",
    version="",
)


@pytest.mark.parametrize("fault", ["http429", "refuse"])
@pytest.mark.parametrize("kind", ["native", "sigma"])
def test_an_overloaded_or_unreachable_node_pauses_no_rule(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, fault: str, kind: str
) -> None:
    index_events(es, index_name, [ev(m, user="a", process="mimikatz.exe") for m in (1, 2, 3)])
    listed = make_rule(
        "blacklist", index_name, compare_key="process.name", blacklist=["mimikatz.exe"]
    )
    native, sigma = ([listed], []) if kind == "native" else ([], [SIGMA])
    config = RulesConfig(
        max_lateness=timedelta(seconds=1),
        initial_lookback=timedelta(minutes=10),
        sigma_indices=[index_name],
        sigma_entity_field="user.name",
    )
    with fault_proxy(es_settings.hosts[0]) as proxy:
        through = dataclasses.replace(es_settings, hosts=(proxy.url,), request_timeout=3)
        clock = lambda: at(10) + timedelta(seconds=1)  # noqa: E731
        client = esclient.connect(through).options(retry_on_status=())  # 429 as it comes
        runner = RuleRunner(client, config, native, sigma, clock)
        proxy.mode = fault

        # Raised to the agent, whose loop waits the outage out, for every rule at once.
        with pytest.raises((ApiError, TransportError)):
            runner.run_due()
        proxy.mode = "pass"
        alerts = runner.run_due()

    assert {a.name for a in alerts} == {"test blacklist" if kind == "native" else SIGMA.name}
    assert [p.paused for p in runner.progress.values()] == [None]
