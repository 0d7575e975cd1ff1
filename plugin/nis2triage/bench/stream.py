"""A synthetic day of ECS security events, with injected attacks whose times and entities are kept.

Background traffic: authentication (SSH and Windows logons, 3% failures, plus
low-rate password guessing from internet scanners, as the real loghub sshd log
shows), network connections and cloud audit calls, for thousands of hosts and
users, following a daytime curve. Attacks are planned first, so the record of
each (kind, entities, first and last event) is exact whatever the scale, and
their events are laid into the same time-ordered stream.

Addresses come from documentation and shared ranges (RFC 5737, RFC 6598) and
10/8: they are data only, nothing is ever sent to them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

MINUTES_PER_DAY = 1440
MS_PER_MINUTE = 60_000
ATTACK_KINDS = ("brute_force", "password_spray", "credential_stuffing", "exfiltration")
Doc = dict[str, Any]


@dataclass(frozen=True)
class Attack:
    """One injected attack: its kind, who took part (per ECS field), first and last event."""

    kind: str
    entities: dict[str, tuple[str, ...]]
    start: datetime
    end: datetime
    events: int


@dataclass(frozen=True)
class StreamSpec:
    """What to generate; the same spec always gives the same stream."""

    day: date
    events: int = 2_000_000
    hosts: int = 3_000
    users: int = 10_000
    seed: int = 7
    attacks_per_kind: int = 4


@dataclass(frozen=True)
class _Planned:
    attack: Attack
    docs: list[tuple[int, Doc]] = field(compare=False)


def day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def iso_ms(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def host_ip(host: int) -> str:
    return f"10.{1 + host // 65536}.{host // 256 % 256}.{host % 256}"


def minute_weights() -> list[float]:
    """Office hours: a trough of 0.2 at 03:00, a peak of 1.0 at 15:00."""
    return [0.6 - 0.4 * math.cos(2 * math.pi * (m - 180) / MINUTES_PER_DAY) for m in range(1440)]


def per_minute(total: int, weights: list[float]) -> list[int]:
    """`total` split over the minutes in proportion to `weights`, summing exactly to `total`."""
    scale = total / sum(weights)
    counts, carried, given = [], 0.0, 0
    for weight in weights:
        carried += weight * scale
        counts.append(math.floor(carried + 1e-9) - given)
        given += counts[-1]
    counts[-1] += total - given
    return counts


def plan_attacks(spec: StreamSpec) -> list[Attack]:
    """The attacks of `spec`, in time order (their events are made by `generate`)."""
    return [p.attack for p in _plan(spec)]


def _plan(spec: StreamSpec) -> list[_Planned]:
    rng = random.Random(f"attacks-{spec.seed}")
    base = day_start_ms(spec.day)
    # Spread over the day, away from its edges, one slot per attack so none overlap.
    slots = spec.attacks_per_kind * len(ATTACK_KINDS)
    minutes = [60 + i * (1320 // slots) for i in range(slots)]
    rng.shuffle(minutes)
    planned = []
    for i, kind in enumerate(k for k in ATTACK_KINDS for _ in range(spec.attacks_per_kind)):
        start = base + minutes[i] * MS_PER_MINUTE + rng.randrange(MS_PER_MINUTE)
        planned.append(_MAKERS[kind](spec, rng, i, start))
    return sorted(planned, key=lambda p: p.attack.start)


def _attack(
    kind: str, entities: dict[str, tuple[str, ...]], docs: list[tuple[int, Doc]]
) -> _Planned:
    docs.sort(key=lambda item: item[0])
    first, last = docs[0][0], docs[-1][0]
    moment = datetime.fromtimestamp
    attack = Attack(kind, entities, moment(first / 1000, UTC), moment(last / 1000, UTC), len(docs))
    return _Planned(attack, docs)


def _brute_force(spec: StreamSpec, rng: random.Random, i: int, start: int) -> _Planned:
    """One address guesses passwords for a few accounts on one host: 150 failures in 10 min."""
    ip, host = f"203.0.113.{10 + i}", rng.randrange(spec.hosts)
    users = ("root", "admin", f"user{rng.randrange(spec.users)}")
    docs = [
        (t, _ssh(rng, host, rng.choice(users), ip, failed=True))
        for t in _spread(rng, start, 10, 150)
    ]
    return _attack("brute_force", {"source.ip": (ip,), "user.name": users}, docs)


def _password_spray(spec: StreamSpec, rng: random.Random, i: int, start: int) -> _Planned:
    """One address tries one password on 200 real accounts, one attempt each, over 20 min."""
    ip, host = f"198.51.100.{10 + i}", rng.randrange(spec.hosts)
    users = tuple(f"user{u}" for u in rng.sample(range(spec.users), 200))
    times = _spread(rng, start, 20, len(users))
    docs = [(t, _ssh(rng, host, u, ip, failed=True)) for t, u in zip(times, users, strict=True)]
    return _attack("password_spray", {"source.ip": (ip,)}, docs)


def _credential_stuffing(spec: StreamSpec, rng: random.Random, i: int, start: int) -> _Planned:
    """One account tried from 40 addresses (a leaked password list) within 15 min."""
    user = f"user{rng.randrange(spec.users)}"
    ips = tuple(f"100.{64 + i}.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(40))
    docs = [
        (
            t,
            _logon(
                rng, rng.randrange(spec.hosts), user, rng.choice(ips), failed=rng.random() < 0.9
            ),
        )
        for t in _spread(rng, start, 15, 80)
    ]
    return _attack("credential_stuffing", {"user.name": (user,), "source.ip": ips}, docs)


def _exfiltration(spec: StreamSpec, rng: random.Random, i: int, start: int) -> _Planned:
    """One internal host sends 40 transfers of 50-200 MB to one outside address in 15 min."""
    host = rng.randrange(spec.hosts)
    target = f"192.0.2.{10 + i}"
    docs = [
        (t, _connection(host, target, 443, rng.randint(50, 200) * 1_000_000, "outbound"))
        for t in _spread(rng, start, 15, 40)
    ]
    entities: dict[str, tuple[str, ...]] = {
        "source.ip": (host_ip(host),),
        "host.name": (f"host{host}",),
    }
    return _attack("exfiltration", entities, docs)


_MAKERS = {
    "brute_force": _brute_force,
    "password_spray": _password_spray,
    "credential_stuffing": _credential_stuffing,
    "exfiltration": _exfiltration,
}


def _spread(rng: random.Random, start: int, minutes: int, count: int) -> list[int]:
    return sorted(start + rng.randrange(minutes * MS_PER_MINUTE) for _ in range(count))


def generate(spec: StreamSpec) -> Iterator[Doc]:
    """Every document of the stream, in time order: exactly `spec.events` of them."""
    planned = _plan(spec)
    injected = sorted((item for p in planned for item in p.docs), key=lambda item: item[0])
    if spec.events < len(injected):
        raise ValueError(f"{spec.events} events cannot hold the {len(injected)} attack events")
    background = per_minute(spec.events - len(injected), minute_weights())
    rng = random.Random(f"background-{spec.seed}")
    base = day_start_ms(spec.day)
    next_attack = 0
    for minute, count in enumerate(background):
        low, high = base + minute * MS_PER_MINUTE, base + (minute + 1) * MS_PER_MINUTE
        docs = [(rng.randrange(low, high), _background(spec, rng)) for _ in range(count)]
        while next_attack < len(injected) and injected[next_attack][0] < high:
            docs.append(injected[next_attack])
            next_attack += 1
        docs.sort(key=lambda item: item[0])
        for ts, doc in docs:
            doc["@timestamp"] = iso_ms(ts)
            yield doc


def _background(spec: StreamSpec, rng: random.Random) -> Doc:
    roll = rng.random()
    if roll < 0.02:
        # Internet scanners: a few guesses each, from a large pool (the loghub sshd pattern).
        ip = f"100.{100 + rng.randrange(20)}.{rng.randrange(256)}.{rng.randrange(256)}"
        guess = rng.choice(("root", "admin", "test", "oracle", "git", "ubuntu"))
        return _ssh(rng, rng.randrange(spec.hosts), guess, ip, failed=True, invalid=guess != "root")
    user = int(spec.users * rng.random() ** 2)  # a few busy accounts, a long quiet tail
    host = (user * 7 + rng.randrange(3)) % spec.hosts
    name, address = f"user{user}", host_ip(user % spec.hosts)
    if roll < 0.30:
        return _ssh(rng, host, name, address, rng.random() < 0.03)
    if roll < 0.50:
        return _logon(rng, host, name, address, rng.random() < 0.03)
    if roll < 0.85:
        return _background_connection(spec, rng, host)
    return _cloud(rng, name, address)


def _ssh(
    rng: random.Random, host: int, user: str, ip: str, failed: bool, invalid: bool = False
) -> Doc:
    outcome, verb = ("failure", "Failed") if failed else ("success", "Accepted")
    method = "password" if failed or rng.random() < 0.3 else "publickey"
    return {
        "event": {
            "category": "authentication",
            "action": "ssh_login",
            "outcome": outcome,
            "dataset": "system.auth",
        },
        "host": {"name": f"host{host}"},
        "user": {"name": user},
        "source": {"ip": ip, "port": rng.randint(30000, 60999)},
        "system": {"auth": {"ssh": {"event": verb, "method": method, "invalid_user": invalid}}},
    }


def _logon(rng: random.Random, host: int, user: str, ip: str, failed: bool) -> Doc:
    return {
        "event": {
            "category": "authentication",
            "action": "logged-in",
            "outcome": "failure" if failed else "success",
            "code": "4625" if failed else "4624",
            "dataset": "windows.security",
        },
        "host": {"name": f"host{host}"},
        "user": {"name": user},
        "source": {"ip": ip},
    }


def _background_connection(spec: StreamSpec, rng: random.Random, host: int) -> Doc:
    if rng.random() < 0.4:
        target, direction = f"192.0.2.{rng.randrange(200, 256)}", "outbound"
    else:
        target, direction = host_ip(rng.randrange(spec.hosts)), "internal"
    size = int(rng.lognormvariate(10, 1.5))  # median about 22 kB, rarely past 10 MB
    return _connection(host, target, rng.choice((443, 443, 80, 53, 445, 22)), size, direction)


def _connection(host: int, target: str, port: int, size: int, direction: str) -> Doc:
    return {
        "event": {"category": "network", "action": "connection", "dataset": "network.flow"},
        "host": {"name": f"host{host}"},
        "source": {"ip": host_ip(host), "bytes": size},
        "destination": {"ip": target, "port": port},
        "network": {"direction": direction, "transport": "tcp"},
    }


def _cloud(rng: random.Random, user: str, ip: str) -> Doc:
    action = rng.choice(
        ("GetObject", "GetObject", "ListBuckets", "DescribeInstances", "AssumeRole")
    )
    return {
        "event": {
            "category": "configuration" if action == "AssumeRole" else "web",
            "action": action,
            "outcome": "success",
            "dataset": "aws.cloudtrail",
        },
        "cloud": {"provider": "aws", "region": "eu-west-1"},
        "user": {"name": user},
        "source": {"ip": ip},
    }
