"""The generated day: exact size, time order, and attacks recorded where they were injected."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from nis2triage.bench.stream import ATTACK_KINDS, StreamSpec, generate, per_minute, plan_attacks

SPEC = StreamSpec(day=date(2026, 11, 2), events=6_000, hosts=50, users=400, attacks_per_kind=2)


def stamp(doc: dict) -> datetime:
    return datetime.fromisoformat(doc["@timestamp"].replace("Z", "+00:00"))


def members(doc: dict, field: str) -> object:
    head, _, tail = field.partition(".")
    return doc.get(head, {}).get(tail)


def test_the_stream_holds_exactly_the_asked_number_of_events_in_time_order() -> None:
    times = [stamp(d) for d in generate(SPEC)]

    assert len(times) == SPEC.events
    assert times == sorted(times)
    assert times[0].date() == times[-1].date() == SPEC.day


def test_every_kind_of_attack_is_planned_and_the_plan_is_deterministic() -> None:
    attacks = plan_attacks(SPEC)

    assert sorted(a.kind for a in attacks) == sorted(ATTACK_KINDS * 2)
    assert attacks == plan_attacks(SPEC)


@pytest.mark.parametrize("kind", ATTACK_KINDS)
def test_an_attack_s_events_lie_in_its_recorded_span_and_name_its_entities(kind: str) -> None:
    attack = next(a for a in plan_attacks(SPEC) if a.kind == kind)
    field, wanted = next(iter(attack.entities.items()))
    ours = [d for d in generate(SPEC) if members(d, field) in wanted and stamp(d) >= attack.start]
    ours = [d for d in ours if stamp(d) <= attack.end]

    assert len(ours) >= attack.events
    assert min(stamp(d) for d in ours) == attack.start
    assert max(stamp(d) for d in ours) == attack.end


def test_a_brute_force_is_failed_ssh_passwords_from_one_address() -> None:
    attack = next(a for a in plan_attacks(SPEC) if a.kind == "brute_force")
    [ip] = attack.entities["source.ip"]
    docs = [d for d in generate(SPEC) if d.get("source", {}).get("ip") == ip]

    assert len(docs) == attack.events == 150
    assert {d["event"]["outcome"] for d in docs} == {"failure"}
    assert {d["system"]["auth"]["ssh"]["method"] for d in docs} == {"password"}


def test_minutes_share_the_events_exactly() -> None:
    counts = per_minute(1_000, [1.0, 2.0, 1.0])

    assert counts == [250, 500, 250]
    assert sum(per_minute(997, [0.3] * 7)) == 997


def test_too_few_events_for_the_attacks_is_refused() -> None:
    small = StreamSpec(day=date(2026, 11, 2), events=100, attacks_per_kind=1)

    with pytest.raises(ValueError, match="cannot hold the"):
        list(generate(small))


def test_the_spread_stays_within_the_day() -> None:
    start = datetime(2026, 11, 2, tzinfo=UTC)
    assert all(start <= a.start < a.end for a in plan_attacks(SPEC))
