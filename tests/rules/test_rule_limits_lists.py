"""List files of blacklist and whitelist rules: regular files in the rule file's folder tree.

A FIFO hung the loader, /proc/self/environ validated (and its secret keys would have
gone to Elasticsearch as query terms), and a blacklist longer than one terms query
validated, then was refused by the node at every run.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from nis2triage.errors import ConfigError
from nis2triage.rules.loader import MAX_TERMS, load_rule, rule_from_dict
from nis2triage.rules.native import BlacklistRule

HEAD = "name: r\nindex: logs-*\n"


def blacklist(tmp_path: Path, *files: str) -> Path:
    path = tmp_path / "rule.yml"
    path.write_text(
        HEAD + f"type: blacklist\ncompare_key: p\nblacklist_files: [{', '.join(files)}]\n"
    )
    return path


def test_list_file_outside_the_rule_folder_is_refused(tmp_path: Path) -> None:
    path = blacklist(tmp_path, "/proc/self/environ")

    with pytest.raises(
        ConfigError,
        match=r"blacklist_files.0: list file /proc/self/environ is "
        r"outside the rule file's folder .*; put the list in that folder",
    ) as raised:
        load_rule(path)

    assert raised.value.line == 5


def test_list_file_above_the_rule_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("key\n")
    (tmp_path / "rules").mkdir()

    with pytest.raises(ConfigError, match=r"secret.txt is outside the rule file's folder"):
        load_rule(blacklist(tmp_path / "rules", "../secret.txt"))


def test_link_out_of_the_rule_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "tools.txt").symlink_to("/proc/self/environ")

    with pytest.raises(ConfigError, match=r"tools.txt is outside the rule file's folder"):
        load_rule(blacklist(tmp_path / "rules", "tools.txt"))


def test_list_file_in_a_subfolder_loads(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "tools.txt").write_text("mimikatz.exe\n")

    rule = load_rule(blacklist(tmp_path, "lists/tools.txt"))

    assert isinstance(rule, BlacklistRule) and rule.exact_values() == {"mimikatz.exe"}


def test_shipped_list_rule_loads() -> None:
    shipped = Path(__file__).resolve().parents[2] / "rules/detection/offensive-tools.yml"

    rule = load_rule(shipped)

    assert isinstance(rule, BlacklistRule) and "mimikatz.exe" in rule.exact_values()


def test_fifo_list_file_is_refused_without_waiting(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "tools.txt")
    path = blacklist(tmp_path, "tools.txt")
    raised: list[BaseException] = []

    def load() -> None:
        try:
            load_rule(path)
        except ConfigError as exc:
            raised.append(exc)

    # Before the fix the read waited for a writer for ever: a daemon thread lets the test end.
    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    loader.join(timeout=10)

    assert not loader.is_alive(), "loading a FIFO list file hangs"
    assert len(raised) == 1
    assert "tools.txt is not a regular file" in str(raised[0])


def test_blacklist_beyond_one_terms_query_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("\n".join(f"a{i}" for i in range(MAX_TERMS)) + "\n")
    (tmp_path / "b.txt").write_text("b0\nb1\n")

    with pytest.raises(
        ConfigError,
        match=r"blacklist_files: 65538 exact values in blacklist and blacklist_files together, "
        r"more than the 65536 Elasticsearch accepts in one terms query",
    ):
        load_rule(blacklist(tmp_path, "a.txt", "b.txt"))


def test_blacklist_of_exactly_one_terms_query_loads(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("\n".join(f"a{i}" for i in range(MAX_TERMS)) + "\n")

    rule = load_rule(blacklist(tmp_path, "a.txt"))

    assert isinstance(rule, BlacklistRule) and len(rule.exact_values()) == MAX_TERMS


def test_rule_from_dict_takes_list_files_anywhere(tmp_path: Path) -> None:
    # A mapping comes from code, which could read any file anyway; rule files are confined.
    (tmp_path / "tools.txt").write_text("nc.exe\n")

    rule = rule_from_dict(
        {
            "name": "r",
            "type": "blacklist",
            "index": "i",
            "compare_key": "p",
            "blacklist_files": [str(tmp_path / "tools.txt")],
        }
    )

    assert isinstance(rule, BlacklistRule) and rule.exact_values() == {"nc.exe"}
