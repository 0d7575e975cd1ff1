"""Names a rule's alert quotes reach the early warning as pseudonyms, wherever they came
from: a `change` rule's previous value is in no document it pulled."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from .conftest import LAB, MakeFlow
from native_support import CaseIndex, case_index, ev, run


@pytest.fixture(scope="module")
def cases(es: Elasticsearch) -> Iterator[CaseIndex]:
    yield from case_index(es, "names")


@pytest.mark.parametrize(
    ("query_key", "compare_key", "events"),
    [
        pytest.param(
            "user.name", "host.name",
            [ev(0, user="jan.peeters", host="jan-laptop"),
             ev(1, user="jan.peeters", host="srv-payroll")],
            id="host-per-user",
        ),
        pytest.param(
            "host.name", "user.name",
            [ev(0, user="jan.peeters", host="srv-payroll"),
             ev(1, user="marie.dubois", host="srv-payroll")],
            id="user-per-host",
        ),
    ],
)  # fmt: skip
def test_a_change_rules_previous_value_leaves_as_a_pseudonym(
    es: Elasticsearch,
    cases: CaseIndex,
    make_flow: MakeFlow,
    query_key: str,
    compare_key: str,
    events: list[dict[str, object]],
) -> None:
    case = cases.add(events)
    rule = case.rule("change", query_key=query_key, compare_key=compare_key, realert="0s")
    [found] = run(es, rule, 0, 10)
    routed = dataclasses.replace(found, route="early_warning", route_reason="test")
    flow = make_flow()

    flow.take([(routed, LAB)])

    incident = flow.desk.book.find({"match_all": {}})[0]
    entry = flow.reporter.notifier.entry(incident.reports["early_warning"].outbox_id)
    assert entry is not None
    sent = json.dumps(entry["payload"])
    assert "changed from" in sent
    named = ["jan-laptop", "srv-payroll", "jan.peeters", "marie.dubois"]
    assert [n for n in named if n in sent] == []
