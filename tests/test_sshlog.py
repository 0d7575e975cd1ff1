"""The SSH log parser, on the real loghub sample."""

from __future__ import annotations

from collections import Counter
from datetime import date

from nis2triage import sshlog

from support import shared_data


def failed_passwords(docs: list[dict]) -> Counter[str]:
    return Counter(
        d["source"]["ip"]
        for d in docs
        if d.get("system", {}).get("auth", {}).get("ssh", {}).get("event") == "Failed"
        and d["system"]["auth"]["ssh"].get("method") == "password"
    )


def test_real_log_counts_match_the_data_readme() -> None:
    docs = sshlog.read_log(shared_data("loghub", "OpenSSH_2k.log"), 2016)
    per_ip = failed_passwords(docs)

    assert len(docs) == 2000
    assert sum(per_ip.values()) == 520
    # The issue says 25 addresses; the log itself has 23 distinct ones with a failed
    # password (25 counting addresses with other kinds of failure only).
    assert len(per_ip) == 23
    assert per_ip["183.62.140.253"] == 286
    assert per_ip["187.141.143.180"] == 80
    assert per_ip["103.99.0.122"] == 46


def test_failed_password_line_becomes_ecs_authentication_failure() -> None:
    line = (
        "Dec 10 09:12:35 LabSZ sshd[24501]: "
        "Failed password for invalid user admin from 187.141.143.180 port 34144 ssh2"
    )
    doc = sshlog.parse_line(line, 2016)

    assert doc is not None
    assert doc["@timestamp"] == "2016-12-10T09:12:35Z"
    assert doc["event"]["category"] == ["authentication"]
    assert doc["event"]["outcome"] == "failure"
    assert (doc["source"]["ip"], doc["source"]["port"]) == ("187.141.143.180", 34144)
    assert doc["user"]["name"] == "admin"
    assert doc["system"]["auth"]["ssh"] == {
        "event": "Failed",
        "method": "password",
        "invalid_user": True,
    }


def test_accepted_login_is_a_success() -> None:
    line = (
        "Dec 10 09:32:20 LabSZ sshd[24680]: "
        "Accepted password for fztu from 119.137.62.142 port 49116 ssh2"
    )
    doc = sshlog.parse_line(line, 2016)

    assert doc is not None
    assert doc["event"]["outcome"] == "success"
    assert doc["user"]["name"] == "fztu"


def test_non_syslog_line_is_skipped() -> None:
    assert sshlog.parse_line("garbage without a timestamp", 2016) is None


def test_move_keeps_time_of_day_and_lands_on_the_given_day() -> None:
    docs = [{"@timestamp": "2016-12-10T06:55:46Z"}, {"@timestamp": "2016-12-10T11:04:45Z"}]
    moved = list(sshlog.move_to(docs, date(2026, 12, 3)))

    assert [d["@timestamp"] for d in moved] == ["2026-12-03T06:55:46Z", "2026-12-03T11:04:45Z"]
