"""change and new_term: values compared with the past, from the state or from the node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from nis2triage.rules.state import RuleState

from native_support import CaseIndex, case_index, ev, run, summary


@pytest.fixture(scope="module")
def cases(es: Elasticsearch) -> Iterator[CaseIndex]:
    yield from case_index(es, "terms")


def logins(*hosts: str | None, user: str = "alice") -> list[dict[str, object]]:
    """One login of `user` per minute, from the given hosts (None: no host field)."""
    return [ev(m, user=user, **({"host": h} if h else {})) for m, h in enumerate(hosts)]


CHANGE = [
    pytest.param(logins("pc1", "pc2"), {}, [("pc1", "pc2")], id="changed"),
    pytest.param(logins("pc1", "pc1", "pc1"), {}, [], id="same-value"),
    pytest.param(logins("pc1", "pc2", "pc1"), {}, [("pc1", "pc2"), ("pc2", "pc1")], id="back"),
    pytest.param(logins("pc1", None, "pc1"), {}, [], id="missing-value-ignored"),
    pytest.param(
        logins("pc1", None), {"ignore_null": False}, [("pc1", None)], id="missing-value-judged"
    ),
    pytest.param([ev(0, user="a", host="pc1"), ev(1, user="b", host="pc2")], {}, [], id="per-key"),
    pytest.param([ev(0, host="pc1"), ev(1, host="pc2")], {}, [], id="documents-without-key"),
    pytest.param(logins("pc1", "pc2"), {"timeframe": "30s"}, [], id="previous-too-old"),
    pytest.param([], {}, [], id="empty-window"),
]


@pytest.mark.parametrize(("events", "options", "expected"), CHANGE)
def test_change_of_host_per_user(
    es: Elasticsearch,
    cases: CaseIndex,
    events: list[dict[str, object]],
    options: dict[str, object],
    expected: list[tuple[str, str]],
) -> None:
    case = cases.add(events)
    rule = case.rule(
        "change", query_key="user.name", compare_key="host.name", realert="0s", **options
    )

    alerts = run(es, rule, 0, 10)

    assert [(a.evidence["previous_value"], a.evidence["new_value"]) for a in alerts] == expected


@pytest.mark.parametrize("keep_state", [True, False], ids=["state-kept", "state-lost"])
def test_change_across_runs(es: Elasticsearch, cases: CaseIndex, keep_state: bool) -> None:
    # With the state lost, the previous value comes from the node instead.
    case = cases.add(logins("pc1", "pc1", "pc1", "pc9"))
    rule = case.rule("change", query_key="user.name", compare_key="host.name")
    state = RuleState()

    first = run(es, rule, 0, 2, state)
    second = run(es, rule, 2, 10, state if keep_state else RuleState())

    assert (first, summary(second)) == ([], [("alice", 1.0)])


def users(*names: str, minute: float = 0) -> list[dict[str, object]]:
    return [ev(minute + i * 0.1, user=n) for i, n in enumerate(names)]


NEW_TERM = [
    pytest.param(users("ann", minute=1) + users("eve", "eve", minute=12), [("eve", 2.0)], id="new"),
    pytest.param(users("ann", minute=1) + users("ann", minute=12), [], id="seen-in-look-back"),
    pytest.param(
        users("ann", minute=0) + users("ann", minute=12), [("ann", 1.0)], id="seen-too-long-ago"
    ),
    pytest.param([ev(12, host="pc")], [], id="events-without-field"),
    pytest.param([], [], id="empty-window"),
]


@pytest.mark.parametrize(("events", "expected"), NEW_TERM)
def test_new_user_name(
    es: Elasticsearch, cases: CaseIndex, events: list[dict[str, object]], expected: list[object]
) -> None:
    case = cases.add(events)
    rule = case.rule("new_term", fields=["user.name"], terms_window="9m")

    assert summary(run(es, rule, 10, 20)) == expected


def test_new_term_alerts_once_across_runs(es: Elasticsearch, cases: CaseIndex) -> None:
    case = cases.add(users("eve", minute=12) + users("eve", minute=22))
    rule = case.rule("new_term", fields=["user.name"], terms_window="30d")
    state = RuleState()

    first, second = run(es, rule, 10, 20, state), run(es, rule, 20, 30, state)

    assert (summary(first), second) == ([("eve", 1.0)], [])
    assert "eve" in state.seen_terms["user.name"]


def test_new_term_in_each_field(es: Elasticsearch, cases: CaseIndex) -> None:
    case = cases.add([ev(1, user="ann", host="pc1"), ev(12, user="ann", host="pc7")])
    rule = case.rule("new_term", fields=["user.name", "host.name"], terms_window="30d")

    (alert,) = run(es, rule, 10, 20)

    assert (alert.entity_field, alert.entity, alert.query.count("pc7")) == ("host.name", "pc7", 1)
