"""OpenSSH syslog lines as ECS documents, the way Filebeat's system module ships them.

Used by the demo and the tests on the real loghub sample. The fields follow
Filebeat's `system.auth` fileset: `event.category: authentication`,
`event.outcome`, `source.ip`, `user.name`, `system.auth.ssh.event`, plus
`related.*`. Syslog lines carry no year; the caller chooses the date the log
is moved to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

_LINE = re.compile(
    r"^(?P<month>\w{3})\s+(?P<day>\d+) (?P<time>\d\d:\d\d:\d\d) (?P<host>\S+) "
    r"(?P<process>[\w.-]+)(?:\[(?P<pid>\d+)\])?: (?P<message>.*)$"
)
_REPEATED = re.compile(r"^message repeated \d+ times: \[ ?(?P<inner>.*)\]$")
_AUTH = re.compile(
    r"^(?P<event>Accepted|Failed) (?P<method>\S+) for (?P<invalid>invalid user )?(?P<user>.*?) "
    r"from (?P<ip>[0-9a-fA-F.:]+) port (?P<port>\d+)"
)
_INVALID = re.compile(r"^Invalid user (?P<user>.*?) from (?P<ip>[0-9a-fA-F.:]+)")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}


def parse_line(line: str, year: int) -> dict[str, Any] | None:
    """One ECS document, or None for a line that is not syslog."""
    found = _LINE.match(line.rstrip("\n"))
    if not found:
        return None
    hh, mm, ss = (int(p) for p in found["time"].split(":"))
    ts = datetime(year, _MONTHS[found["month"]], int(found["day"]), hh, mm, ss, tzinfo=UTC)
    doc: dict[str, Any] = {
        "@timestamp": ts.isoformat().replace("+00:00", "Z"),
        "message": found["message"],
        "host": {"name": found["host"], "hostname": found["host"]},
        "process": {"name": found["process"]},
        "event": {"kind": "event", "dataset": "system.auth", "module": "system"},
        "log": {"syslog": {"appname": found["process"]}},
        "ecs": {"version": "8.11.0"},
    }
    if found["pid"]:
        doc["process"]["pid"] = int(found["pid"])
    message = found["message"]
    # syslog folds repeats into one line; Filebeat ships that line once, and so do we,
    # parsed as the message it repeats.
    repeated = _REPEATED.match(message)
    _add_ssh_fields(doc, repeated["inner"] if repeated else message)
    return doc


def _add_ssh_fields(doc: dict[str, Any], message: str) -> None:
    auth = _AUTH.match(message)
    if auth:
        outcome = "success" if auth["event"] == "Accepted" else "failure"
        ssh = {"event": auth["event"], "method": auth["method"]}
        _auth_event(doc, outcome, auth["user"], auth["ip"], ssh)
        doc["source"]["port"] = int(auth["port"])
        if auth["invalid"]:
            doc["system"]["auth"]["ssh"]["invalid_user"] = True
        return
    invalid = _INVALID.match(message)
    if invalid:
        _auth_event(doc, "failure", invalid["user"], invalid["ip"], {"event": "Invalid"})


def _auth_event(doc: dict[str, Any], outcome: str, user: str, ip: str, ssh: dict[str, Any]) -> None:
    doc["event"].update(
        category=["authentication"],
        type=["info"],
        action="ssh_login",
        outcome=outcome,
    )
    doc["user"] = {"name": user}
    doc["source"] = {"ip": ip}
    doc["related"] = {"ip": [ip], "user": [user]}
    doc["system"] = {"auth": {"ssh": ssh}}


def read_log(path: str | Path, year: int) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [doc for doc in (parse_line(line, year) for line in fh) if doc is not None]


def move_to(docs: Iterable[dict[str, Any]], last_day: date) -> Iterator[dict[str, Any]]:
    """Shift whole days so the log's last day becomes `last_day`, keeping times of day.

    Whole days keep every event in the same minute of the day, so time buckets
    cut the moved log exactly where they cut the original.
    """
    docs = list(docs)
    if not docs:
        return
    newest = max(_ts(d) for d in docs)
    shift = timedelta(days=(last_day - newest.date()).days)
    for doc in docs:
        moved = dict(doc)
        moved["@timestamp"] = (_ts(doc) + shift).isoformat().replace("+00:00", "Z")
        yield moved


def _ts(doc: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(doc["@timestamp"]).replace("Z", "+00:00"))
