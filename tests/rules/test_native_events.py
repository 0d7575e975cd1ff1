"""any, blacklist and whitelist: events judged one by one, pulled with search_after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from nis2triage.rules import search

from native_support import CaseIndex, case_index, ev, run, summary


@pytest.fixture(scope="module")
def cases(es: Elasticsearch) -> Iterator[CaseIndex]:
    yield from case_index(es, "events")


ANY = [
    pytest.param([ev(1, user="a"), ev(2, user="b")], None, [("a", 1.0), ("b", 1.0)], id="each"),
    pytest.param([ev(1, user="a"), ev(1, user="a")], None, [("a", 2.0)], id="same-instant-one"),
    pytest.param([ev(1, user="a"), ev(2)], None, [("a", 1.0)], id="event-without-key-ignored"),
    pytest.param([ev(1), ev(2)], "0s", [("*", 1.0), ("*", 1.0)], id="no-key-every-event"),
    pytest.param([ev(1), ev(1.5)], "1m", [("*", 1.0)], id="no-key-realert-suppresses"),
    pytest.param([ev(11, user="a")], None, [], id="after-window-not-seen"),
    pytest.param([], None, [], id="empty-window"),
]


@pytest.mark.parametrize(("events", "realert", "expected"), ANY)
def test_any(
    es: Elasticsearch,
    cases: CaseIndex,
    events: list[dict[str, object]],
    realert: str | None,
    expected: list[object],
) -> None:
    case = cases.add(events)
    key = {"query_key": "user.name"} if any("user.name" in e for e in events) else {}
    rule = case.rule("any", realert=realert or "0s", **key)

    assert summary(run(es, rule, 0, 10)) == expected


def test_any_pages_through_more_than_one_page(es: Elasticsearch, cases: CaseIndex) -> None:
    case = cases.add([ev(i * 0.001, user=f"u{i}") for i in range(search.PAGE + 5)])
    rule = case.rule("any", query_key="user.name", realert="0s")

    alerts = run(es, rule, 0, 10)

    assert len({a.entity for a in alerts}) == search.PAGE + 5


def test_any_alert_names_users_and_addresses(es: Elasticsearch, cases: CaseIndex) -> None:
    case = cases.add([ev(1, user="root", ip="198.51.100.7")])

    (alert,) = run(es, case.rule("any"), 0, 10)

    assert (alert.related_users, alert.related_ips) == (("root",), ("198.51.100.7",))
    assert alert.evidence["documents"][0]["index"] == case.index


TOOLS = [ev(1, process="mimikatz.exe"), ev(2, process="notepad.exe"), ev(3, process="PsExec64.exe")]

BLACKLIST = [
    pytest.param({"blacklist": ["mimikatz.exe"]}, ["mimikatz.exe"], id="listed-value"),
    pytest.param({"blacklist_regex": ["(?i)psexec(64)?\\.exe"]}, ["PsExec64.exe"], id="regex"),
    pytest.param({"blacklist_regex": ["psexec"]}, [], id="regex-must-match-whole-value"),
    pytest.param(
        {"blacklist": ["mimikatz.exe"], "blacklist_regex": ["(?i)psexec.*"]},
        ["mimikatz.exe", "PsExec64.exe"],
        id="listed-or-regex",
    ),
    pytest.param({"blacklist": ["calc.exe"]}, [], id="nothing-listed"),
]


@pytest.mark.parametrize(("lists", "expected"), BLACKLIST)
def test_blacklist_of_process_names(
    es: Elasticsearch, cases: CaseIndex, lists: dict[str, list[str]], expected: list[str]
) -> None:
    case = cases.add(TOOLS)
    rule = case.rule("blacklist", compare_key="process.name", realert="0s", **lists)

    assert [a.entity for a in run(es, rule, 0, 10)] == expected


def test_blacklist_from_list_file(es: Elasticsearch, cases: CaseIndex, tmp_path: Path) -> None:
    listed = tmp_path / "tools.txt"
    listed.write_text("# offensive tools\nmimikatz.exe\n\nPsExec64.exe\n")
    case = cases.add(TOOLS)
    rule = case.rule("blacklist", compare_key="process.name", blacklist_files=[str(listed)])

    assert [a.entity for a in run(es, rule, 0, 10)] == ["mimikatz.exe", "PsExec64.exe"]


def test_blacklist_of_networks_on_an_ip_field(es: Elasticsearch, cases: CaseIndex) -> None:
    case = cases.add([ev(1, ip="203.0.113.9"), ev(2, ip="198.51.100.1")])
    rule = case.rule("blacklist", compare_key="source.ip", blacklist=["203.0.113.0/24"])

    (alert,) = run(es, rule, 0, 10)

    assert (alert.entity, alert.entity_field, alert.related_ips) == (
        "203.0.113.9",
        "source.ip",
        ("203.0.113.9",),
    )


WHITELIST = [
    pytest.param(
        {"whitelist": ["notepad.exe"]}, True, ["mimikatz.exe", "PsExec64.exe"], id="not-listed"
    ),
    pytest.param({"whitelist_regex": ["(?i).*\\.exe"]}, True, [], id="all-match-regex"),
    pytest.param(
        {"whitelist": ["notepad.exe"]},
        False,
        ["(missing)", "mimikatz.exe", "PsExec64.exe"],
        id="missing-value-judged",
    ),
]


@pytest.mark.parametrize(("lists", "ignore_null", "expected"), WHITELIST)
def test_whitelist_of_process_names(
    es: Elasticsearch,
    cases: CaseIndex,
    lists: dict[str, list[str]],
    ignore_null: bool,
    expected: list[str],
) -> None:
    case = cases.add([*TOOLS, ev(4, user="svc")])
    rule = case.rule(
        "whitelist", compare_key="process.name", ignore_null=ignore_null, realert="0s", **lists
    )

    assert sorted(a.entity for a in run(es, rule, 0, 10)) == sorted(expected)


# A field with several values (an array in the document): every value is judged, and the
# alert names the value that offends, not whichever came first.
SEVERAL = [
    pytest.param("whitelist", {"whitelist": ["alice"]},
                 ["evil", "evil2", "bob1", "admin", "admin"], id="whitelist-list"),
    pytest.param("whitelist", {"whitelist_regex": ["bob.*"], "whitelist": ["alice"]},
                 ["evil", "evil2", "evil3", "admin", "admin"], id="whitelist-regex"),
    pytest.param("blacklist", {"blacklist": ["admin"]}, ["admin", "admin"], id="blacklist-list"),
    pytest.param("blacklist", {"blacklist_regex": ["adm.*"]}, ["admin", "admin"],
                 id="blacklist-regex"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "lists", "expected"), SEVERAL)
def test_every_value_of_a_multi_valued_field_is_judged(
    es: Elasticsearch,
    cases: CaseIndex,
    kind: str,
    lists: dict[str, list[str]],
    expected: list[str],
) -> None:
    users = ["evil", ["alice", "evil2"], ["bob1", "evil3"], "admin", ["alice", "admin"], "alice"]
    case = cases.add([ev(i + 1, user=u) for i, u in enumerate(users)])
    rule = case.rule(kind, compare_key="user.name", realert="0s", **lists)

    alerts = run(es, rule, 0, 10)

    assert sorted(a.entity for a in alerts) == sorted(expected)
    assert all(a.entity in a.message for a in alerts)
