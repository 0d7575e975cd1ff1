"""Which asset an alert's hosts and addresses touch, and the inventories refused because
they would match the wrong asset (from the break run on the inventory)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from nis2triage import yamlload
from nis2triage.assets import Asset, Inventory, load_inventory
from nis2triage.errors import ConfigError
from nis2triage.records import Alert
from nis2triage.triage import load_rules, route

from support import REPO

T = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def alert(hosts: tuple[str, ...] = (), ips: tuple[str, ...] = (), entity: str = "-") -> Alert:
    return Alert(
        kind="rule",
        name="r",
        version="1",
        severity="critical",
        timestamp=T,
        start=T,
        end=T,
        score=0.99,
        threshold=0.8,
        entity_field="source.ip",
        entity=entity,
        message="m",
        index_pattern="logs-*",
        query="*",
        related_ips=ips,
        related_hosts=hosts,
    )


def inventory(tmp_path: Path, text: str) -> Inventory:
    path = tmp_path / "assets.yml"
    path.write_text(text)
    return load_inventory(path)


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        inventory(tmp_path, text)
    return str(caught.value)


DC = """\
assets:
  - name: dc
    hosts: [dc01.corp.example, 10.20.1.1]
    criticality: critical
  - name: print
    hosts: [print01]
    criticality: low
"""


@pytest.mark.parametrize(
    "host", ["dc01.corp.example", "DC01.CORP.EXAMPLE", "dc01.corp.example.", "DC01", "dc01."]
)
def test_a_host_matches_whatever_its_case_and_a_trailing_dot_and_by_its_short_name(
    tmp_path: Path, host: str
) -> None:
    found = inventory(tmp_path, DC).for_alert(alert(hosts=(host,)))

    assert found is not None and found.name == "dc"


@pytest.mark.parametrize("host", ["PRINT01", "print01.corp.example", "Print01.Lab.Example."])
def test_a_short_entry_matches_the_full_names_that_start_with_it(tmp_path: Path, host: str) -> None:
    found = inventory(tmp_path, DC).for_alert(alert(hosts=(host,)))

    assert found is not None and found.name == "print"


@pytest.mark.parametrize("host", ["dc01.lab.example", "dc0", "dc01-old", "corp.example"])
def test_other_full_names_and_prefixes_do_not_match(tmp_path: Path, host: str) -> None:
    assert inventory(tmp_path, DC).for_alert(alert(hosts=(host,))) is None


def test_a_short_name_touches_every_full_name_it_starts_and_takes_the_most_critical(
    tmp_path: Path,
) -> None:
    inv = inventory(
        tmp_path,
        "assets:\n"
        "  - {name: lab, hosts: [dc01.lab.example], criticality: low}\n"
        "  - {name: dc, hosts: [dc01.corp.example], criticality: critical}\n",
    )

    found = inv.for_alert(alert(hosts=("DC01",)))

    assert found is not None and found.name == "dc"


@pytest.mark.parametrize(
    "address", ["::ffff:10.20.1.1", "::FFFF:10.20.1.1", "::ffff:a14:101", "10.20.1.1"]
)
def test_an_ipv4_mapped_address_is_the_ipv4_address_it_carries(
    tmp_path: Path, address: str
) -> None:
    # 10.20.1.1 is listed under hosts: an address there matches as an address.
    found = inventory(tmp_path, DC).for_alert(alert(ips=(address,)))

    assert found is not None and found.name == "dc"


@pytest.mark.parametrize(
    ("listed", "seen"),
    [("fe80::1%eth0", "fe80::1"), ("fe80::1", "fe80::1%25"), ("FE80::1%eth0", "fe80::1%eth1")],
)
def test_an_ipv6_address_matches_whatever_zone_it_is_written_with(
    tmp_path: Path, listed: str, seen: str
) -> None:
    # A zone (%eth0) says which interface reached the address, not which host it is: the
    # entry was taken and never matched an alert, whose addresses carry none.
    inv = inventory(
        tmp_path, f"assets:\n  - {{name: gw, hosts: ['{listed}'], criticality: high}}\n"
    )

    found = inv.for_alert(alert(ips=(seen,)))

    assert found is not None and found.name == "gw"


def test_an_ipv4_mapped_entity_falls_in_an_ipv4_network(tmp_path: Path) -> None:
    inv = inventory(
        tmp_path, "assets:\n  - {name: erp, networks: [10.20.0.0/24], criticality: high}\n"
    )

    found = inv.for_alert(alert(entity="::ffff:10.20.0.7"))

    assert found is not None and found.name == "erp"


def test_a_host_name_that_is_an_address_matches_the_networks(tmp_path: Path) -> None:
    inv = inventory(
        tmp_path, "assets:\n  - {name: erp, networks: [10.20.0.0/24], criticality: high}\n"
    )

    found = inv.for_alert(alert(hosts=("10.20.0.7",)))

    assert found is not None and found.name == "erp"


def test_the_alert_entity_is_a_host_when_its_field_is_a_host_name(tmp_path: Path) -> None:
    a = alert(entity="DC01.corp.example")
    a = Alert(**{**a.__dict__, "entity_field": "host.name"})

    found = inventory(tmp_path, DC).for_alert(a)

    assert found is not None and found.name == "dc"


def test_dc01_in_capitals_takes_the_critical_assets_route(tmp_path: Path) -> None:
    rules = load_rules(REPO / "rules" / "triage.yml")

    routed, asset = route(alert(hosts=("DC01",)), rules, inventory(tmp_path, DC))

    assert asset is not None and asset.name == "dc"
    assert routed.route == "contain"


def test_a_wildcard_host_is_refused_with_how_to_list_hosts(tmp_path: Path) -> None:
    said = refusal(tmp_path, 'assets:\n  - name: corp\n    hosts:\n      - "*.corp.example"\n')

    assert said.startswith(f"{tmp_path / 'assets.yml'}:4:")
    assert "'*.corp.example': wildcards are not supported" in said
    assert "list each host" in said and "networks" in said


def test_a_host_with_spaces_around_it_is_refused_with_the_name_to_write(tmp_path: Path) -> None:
    said = refusal(tmp_path, 'assets:\n  - name: mail\n    hosts: [" mail01 "]\n')

    assert said.startswith(f"{tmp_path / 'assets.yml'}:3:")
    assert "' mail01 ' has spaces around it: write 'mail01'" in said


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ("", "'' is empty"),
        ("mail 01", "'mail 01' has a space or control character"),
        ("mail..corp", "'mail..corp' has an empty label"),
        (".corp.example", "'.corp.example' has an empty label"),
        ("10.20.0.0/24", "'10.20.0.0/24' is an address range: list it under networks"),
    ],
)
def test_host_names_that_match_nothing_are_refused(tmp_path: Path, host: str, said: str) -> None:
    assert said in refusal(tmp_path, f'assets:\n  - name: x\n    hosts: ["{host}"]\n')


def test_two_assets_with_one_name_are_refused_naming_both_lines(tmp_path: Path) -> None:
    said = refusal(
        tmp_path,
        "assets:\n"
        "  - name: dc\n"
        "    hosts: [dc01.corp.example]\n"
        "    criticality: critical\n"
        "  - name: DC\n"
        "    hosts: [dc02]\n"
        "    criticality: critical\n",
    )

    assert said == (
        f"{tmp_path / 'assets.yml'}:5:5: assets.1.name: 'DC' is also the name of the asset "
        "at line 2: give each asset its own name"
    )


def test_one_host_under_assets_of_different_criticality_is_refused_naming_both(
    tmp_path: Path,
) -> None:
    said = refusal(
        tmp_path,
        "assets:\n"
        "  - name: dc\n"
        "    hosts: [dc01.corp.example]\n"
        "    criticality: critical\n"
        "  - name: dc-legacy\n"
        "    hosts: [DC01]\n"
        "    criticality: low\n",
    )

    assert said == (
        f"{tmp_path / 'assets.yml'}:6:13: assets.1.hosts.0: 'DC01' (asset 'dc-legacy', low) "
        "names the same host as 'dc01.corp.example' (asset 'dc', critical, line 3): an "
        "alert on it would take the most critical; list the host under one asset only"
    )


def test_one_address_under_two_criticalities_is_refused(tmp_path: Path) -> None:
    said = refusal(
        tmp_path,
        "assets:\n"
        "  - {name: a, hosts: [10.20.1.1], criticality: critical}\n"
        "  - {name: b, hosts: ['::ffff:10.20.1.1'], criticality: low}\n",
    )

    assert said.startswith(f"{tmp_path / 'assets.yml'}:3:23: assets.1.hosts.0: '::ffff:10.20.1.1'")
    assert "names the same host as '10.20.1.1' (asset 'a', critical, line 2)" in said


def test_full_names_sharing_a_short_name_and_one_host_at_one_criticality_are_kept(
    tmp_path: Path,
) -> None:
    inv = inventory(
        tmp_path,
        "assets:\n"
        "  - {name: dc, hosts: [dc01.corp.example], criticality: critical}\n"
        "  - {name: lab, hosts: [dc01.lab.example], criticality: low}\n"
        "  - {name: ad, hosts: [DC01.CORP.EXAMPLE.], criticality: critical}\n",
    )

    assert [a.name for a in inv.assets] == ["dc", "lab", "ad"]


def test_every_clash_is_said(tmp_path: Path) -> None:
    said = refusal(
        tmp_path,
        "assets:\n"
        "  - {name: a, hosts: [x1, y1], criticality: critical}\n"
        "  - {name: a, hosts: [X1, Y1.corp], criticality: low}\n",
    )

    assert len(said.splitlines()) == 3


def test_clashes_are_refused_without_a_file_too() -> None:
    with pytest.raises(ValueError, match=r"'dc01' .* names the same host as 'DC01\.corp'"):
        Inventory(
            assets=[
                Asset(name="a", hosts=["DC01.corp"], criticality="critical"),
                Asset(name="b", hosts=["dc01"], criticality="low"),
            ]
        )


def test_a_network_with_host_bits_set_is_refused_with_the_network_it_would_mean(
    tmp_path: Path,
) -> None:
    said = refusal(
        tmp_path, "assets:\n  - name: erp\n    networks: [10.20.30.0/8]\n    criticality: high\n"
    )

    assert said == (
        f"{tmp_path / 'assets.yml'}:3:16: assets.0.networks.0: '10.20.30.0/8' has host bits "
        "set: it would mean 10.0.0.0/8 (16777216 addresses); write 10.0.0.0/8 if that is "
        "meant, else correct the prefix length"
    )


def test_an_ipv4_network_written_as_ipv6_is_refused_with_its_ipv4_form(tmp_path: Path) -> None:
    said = refusal(tmp_path, "assets:\n  - name: erp\n    networks: ['::ffff:10.20.0.0/112']\n")

    assert "'::ffff:10.20.0.0/112' is IPv4 written as IPv6: write 10.20.0.0/16" in said


def test_an_oversized_inventory_says_what_to_do_instead_of_splitting(tmp_path: Path) -> None:
    path = tmp_path / "assets.yml"
    path.write_text("assets:\n" + "#" * yamlload.MAX_BYTES + "\n")

    with pytest.raises(ConfigError) as caught:
        load_inventory(path)

    said = str(caught.value)
    assert "split it" not in said
    assert "`assets` names one file" in said and "networks" in said


def test_the_shipped_inventories_load() -> None:
    for path in (REPO / "deploy" / "assets.example.yml", REPO / "deploy" / "demo" / "assets.yml"):
        assert load_inventory(path).assets


IDN = Inventory.model_validate(
    {
        "assets": [
            {"name": "unicode", "hosts": ["dc01.société.example"], "criticality": "critical"},
            {"name": "ace", "hosts": ["mail.xn--mnchen-3ya.example"], "criticality": "high"},
        ]
    }
)


@pytest.mark.parametrize(
    ("host", "asset"),
    [
        ("dc01.société.example", "unicode"),
        ("DC01.SOCIÉTÉ.EXAMPLE", "unicode"),  # non-ASCII letters in upper case
        ("dc01.xn--socit-esab.example", "unicode"),  # the same name as DNS carries it
        ("DC01.XN--SOCIT-ESAB.EXAMPLE.", "unicode"),
        ("mail.münchen.example", "ace"),
        ("MAIL.MÜNCHEN.EXAMPLE", "ace"),
        ("ｍａｉｌ．ｍüｎｃｈｅｎ．ｅｘａｍｐｌｅ", "ace"),  # full-width, as IDNA maps it
    ],
)
def test_an_internationalised_name_matches_in_either_spelling_and_any_case(
    host: str, asset: str
) -> None:
    found = IDN.for_alert(alert((host,)))

    assert found is not None and found.name == asset


def test_the_same_internationalised_host_under_two_criticalities_is_refused(
    tmp_path: Path,
) -> None:
    said = refusal(
        tmp_path,
        "assets:\n  - name: a\n    hosts: [dc01.société.example]\n    criticality: low\n"
        "  - name: b\n    hosts: [DC01.XN--SOCIT-ESAB.EXAMPLE]\n    criticality: critical\n",
    )

    assert "names the same host as 'dc01.société.example'" in said


RANGES = Inventory.model_validate(
    {
        "assets": [
            {"name": "campus", "networks": ["10.0.0.0/8", "2001:db8::/32"], "criticality": "low"},
            {"name": "servers", "networks": ["10.20.0.0/16"], "criticality": "high"},
            {
                "name": "scada",
                "networks": ["10.20.30.0/24", "2001:db8:5::/48"],
                "criticality": "critical",
            },
            {"name": "one host", "networks": ["10.20.30.7/32"], "criticality": "medium"},
            {"name": "everything", "networks": ["0.0.0.0/0"], "criticality": "low"},
            *(
                {
                    "name": f"branch {i}",
                    "networks": [f"172.{16 + i // 256}.{i % 256}.0/24"],
                    "criticality": "medium",
                }
                for i in range(3000)
            ),
        ]
    }
)


@pytest.mark.parametrize(
    ("address", "asset"),
    [
        ("10.20.30.7", "scada"),  # inside four nested ranges: the most critical
        ("10.20.99.1", "servers"),
        ("10.99.0.1", "campus"),  # before `everything`, of equal criticality
        ("::ffff:10.20.30.8", "scada"),
        ("2001:db8:5::1", "scada"),
        ("2001:db8:6::1", "campus"),
        ("172.27.183.9", "branch 2999"),
        ("192.0.2.1", "everything"),
        ("2001:db9::1", None),  # no IPv6 range holds it: 0.0.0.0/0 is IPv4 only
    ],
)
def test_an_address_takes_the_most_critical_of_the_ranges_holding_it(
    address: str, asset: str | None
) -> None:
    found = RANGES.for_alert(alert(ips=(address,)))

    assert (found.name if found else None) == asset
