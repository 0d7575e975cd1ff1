"""The early warning keeps the attacker's address as an indicator the CSIRT can act on,
while the entity's own addresses stay pseudonyms; an operator can pseudonymise both."""

from __future__ import annotations

import dataclasses
from typing import Any

from .conftest import LAB, MakeFlow, alert

ATTACKER = "185.190.58.151"
# An address of the entity's own network, which the alert also relates.
OWN = "10.20.0.7"


def early_warning(make_flow: MakeFlow, **notifier: Any) -> dict[str, Any]:
    flow = make_flow(notifier=notifier)
    on = dataclasses.replace(alert(entity=ATTACKER), related_ips=(ATTACKER, OWN))
    flow.take([(on, LAB)])
    incident = flow.desk.book.find({"match_all": {}})[0]
    entry = flow.reporter.notifier.entry(incident.reports["early_warning"].outbox_id)
    assert entry is not None
    return dict(entry["payload"])


def test_the_attackers_address_stays_and_the_entitys_own_is_a_pseudonym(
    make_flow: MakeFlow,
) -> None:
    payload = early_warning(make_flow)

    ips = payload["indicators"]["ip"]
    assert ATTACKER in ips and OWN not in str(payload)
    assert [i for i in ips if i != ATTACKER] == [i for i in ips if i.startswith("ip-")] != []
    assert payload["pseudonymised"] is True


def test_an_operator_can_have_the_attackers_address_pseudonymised_too(
    make_flow: MakeFlow,
) -> None:
    payload = early_warning(make_flow, keep_attacker_addresses=False)

    assert ATTACKER not in str(payload) and OWN not in str(payload)
    assert all(i.startswith("ip-") for i in payload["indicators"]["ip"])
