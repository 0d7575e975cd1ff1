"""Blacklist and whitelist values as Elasticsearch returns them: the alert names the value
that offends, and addresses and numbers are compared as such, not as text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from native_support import CaseIndex, case_index, ev, run


@pytest.fixture(scope="module")
def cases(es: Elasticsearch) -> Iterator[CaseIndex]:
    yield from case_index(es, "lists")


# query_key is another field than compare_key: the alert is per host, and names the value.
NAMED = [
    pytest.param(
        "blacklist",
        {"blacklist": ["mallory"]},
        {"user": ["alice", "mallory"]},
        "user.name",
        "test blacklist: user.name=mallory is on the blacklist",
        id="blacklist-second-value",
    ),
    pytest.param(
        "whitelist",
        {"whitelist": ["alice", "bob"]},
        {"user": ["bob", "mallory"]},
        "user.name",
        "test whitelist: user.name=mallory is not on the whitelist",
        id="whitelist-second-value",
    ),
    pytest.param(
        "whitelist",
        {"whitelist": ["10.0.0.0/8"]},
        {"ip": ["10.1.2.3", "8.8.8.8"]},
        "source.ip",
        "test whitelist: source.ip=8.8.8.8 is not on the whitelist",
        id="whitelist-network",
    ),
    pytest.param(
        "blacklist",
        {"blacklist_regex": ["mal.*"]},
        {"user": ["alice", "mallory"]},
        "user.name",
        "test blacklist: user.name=mallory is on the blacklist",
        id="blacklist-regex",
    ),
]


@pytest.mark.parametrize(("kind", "lists", "fields", "compare", "message"), NAMED)
def test_alert_names_the_offending_value_when_query_key_is_another_field(
    es: Elasticsearch,
    cases: CaseIndex,
    kind: str,
    lists: dict[str, list[str]],
    fields: dict[str, object],
    compare: str,
    message: str,
) -> None:
    case = cases.add([ev(1, host="ws1", **fields)])
    rule = case.rule(kind, compare_key=compare, query_key="host.name", realert="0s", **lists)

    (alert,) = run(es, rule, 0, 10)

    assert (alert.entity, alert.message) == ("ws1", message)


def test_whitelisted_addresses_in_another_notation_do_not_alert(
    es: Elasticsearch, cases: CaseIndex
) -> None:
    # Elasticsearch returns 2001:db8::1 and 2001:db8::2, in canonical form.
    listed = ["2001:DB8::1", "2001:db8:0:0:0:0:0:2", "10.0.0.1"]
    ips = ["2001:db8::1", "2001:DB8:0::2", "10.0.0.1", "2001:db8::3"]
    case = cases.add([ev(i + 1, ip=ip) for i, ip in enumerate(ips)])
    rule = case.rule("whitelist", compare_key="source.ip", whitelist=listed, realert="0s")

    alerts = run(es, rule, 0, 10)

    assert [a.message for a in alerts] == [
        "test whitelist: source.ip=2001:db8::3 is not on the whitelist"
    ]


def test_blacklisted_address_in_another_notation_names_it(
    es: Elasticsearch, cases: CaseIndex
) -> None:
    case = cases.add([ev(1, host="ws1", ip=["10.0.0.9", "2001:db8::1"])])
    rule = case.rule(
        "blacklist", compare_key="source.ip", query_key="host.name", blacklist=["2001:DB8::1"]
    )

    (alert,) = run(es, rule, 0, 10)

    assert alert.message == "test blacklist: source.ip=2001:db8::1 is on the blacklist"


@pytest.mark.parametrize(
    ("listed", "values", "expected"),
    [
        pytest.param(["5"], [5.0, 7.5], ["p.ratio=7.5"], id="double-listed-as-integer"),
        pytest.param(["5.0", "7.50"], [5.0, 7.5], [], id="double-listed-as-decimals"),
        pytest.param(["5"], [50.0], ["p.ratio=50.0"], id="no-prefix-match"),
    ],
)
def test_whitelisted_numbers_compare_as_numbers(
    es: Elasticsearch,
    cases: CaseIndex,
    listed: list[str],
    values: list[float],
    expected: list[str],
) -> None:
    # `p.ratio` is not in the shared mapping: Elasticsearch maps 5.0 as a float.
    case = cases.add([{**ev(i + 1), "p.ratio": v} for i, v in enumerate(values)])
    rule = case.rule("whitelist", compare_key="p.ratio", whitelist=listed, realert="0s")

    alerts = run(es, rule, 0, 10)

    assert [a.message.split(": ", 1)[1].split(" ")[0] for a in alerts] == expected


def test_whitelist_on_a_long_field_takes_a_decimal_listing(
    es: Elasticsearch, cases: CaseIndex
) -> None:
    case = cases.add([ev(1, status=200), ev(2, status=500)])
    rule = case.rule(
        "whitelist", compare_key="http.response.status_code", whitelist=["200.0"], realert="0s"
    )

    (alert,) = run(es, rule, 0, 10)

    assert alert.message == "test whitelist: http.response.status_code=500 is not on the whitelist"


def test_text_values_stay_text(es: Elasticsearch, cases: CaseIndex) -> None:
    # A keyword holding "5.0" is not the listed "5": only numbers compare as numbers.
    case = cases.add([ev(1, user="5.0"), ev(2, user="5")])
    rule = case.rule("whitelist", compare_key="user.name", whitelist=["5"], realert="0s")

    (alert,) = run(es, rule, 0, 10)

    assert alert.message == "test whitelist: user.name=5.0 is not on the whitelist"


def test_whitelisted_booleans_compare_as_booleans(es: Elasticsearch, cases: CaseIndex) -> None:
    # A boolean field comes back as true or false, which "true" lists (and "True").
    case = cases.add([{**ev(1), "flag": True}, {**ev(2), "flag": False}])
    rule = case.rule("whitelist", compare_key="flag", whitelist=["true"], realert="0s")

    alerts = run(es, rule, 0, 10)

    assert [a.message for a in alerts] == ["test whitelist: flag=False is not on the whitelist"]


def test_a_whitelisted_ipv4_mapped_address_holds_its_ipv4_form(
    es: Elasticsearch, cases: CaseIndex
) -> None:
    # An ip field stores ::ffff:10.0.0.1 as 10.0.0.1, and returns it so.
    case = cases.add([ev(1, ip="::ffff:10.0.0.1"), ev(2, ip="10.0.0.2")])
    listed = ["::ffff:10.0.0.1", "::ffff:a00:3"]
    rule = case.rule("whitelist", compare_key="source.ip", whitelist=listed, realert="0s")

    alerts = run(es, rule, 0, 10)

    assert [a.message for a in alerts] == [
        "test whitelist: source.ip=10.0.0.2 is not on the whitelist"
    ]
