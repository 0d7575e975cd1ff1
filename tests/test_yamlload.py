"""Safe YAML: line numbers kept, tags and alias bombs refused quickly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nis2triage.errors import ConfigError
from nis2triage.yamlload import load_file, load_text

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_lines_of_nested_keys_are_remembered() -> None:
    loaded = load_text("a:\n  b: 1\n  c:\n    - x\n    - y: 2\n", "f.yml")

    assert loaded.data == {"a": {"b": 1, "c": ["x", {"y": 2}]}}
    assert loaded.line_of(("a", "c", 1, "y")) == 5
    assert loaded.line_of(("a", "missing")) == 1


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(
            "a: !!python/object:os.system x\n", r"t\.yml:1:4: .*constructor", id="python-tag"
        ),
        pytest.param("a: [1, 2\nb: 3\n", r"t\.yml:2:2: not valid YAML", id="unclosed-list"),
        pytest.param("a: &x [1, *x]\n", "recursive alias", id="recursive-alias"),
        pytest.param(BOMB, r"t\.yml:2: refused: expands to .* nodes", id="billion-laughs"),
        pytest.param(
            "a: 1\nb:\n" + "  " + "[" * 2000 + "]" * 2000 + "\n",
            r"t\.yml:3: refused: nested too deeply \(past 100 levels here\)",
            id="deep-flow-nesting",
        ),
        pytest.param(
            "a: 1\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(600)) + "  " * 600 + "v\n",
            r"t\.yml:102: refused: nested too deeply",
            id="deep-block-nesting",
        ),
        pytest.param(
            "features: [a]\nmodel: {}\nfeatures: [b]\n",
            r"t\.yml:3:1: key 'features' appears twice in the same mapping \(first at line 1\)",
            id="duplicate-key",
        ),
        pytest.param(
            "title: t\ndate: 2024-13-45\n",
            r"t\.yml:2:7: .*'2024-13-45' looks like a date but is none \(month must be in 1",
            id="impossible-date",
        ),
        pytest.param(
            "at: [2024-02-30T10:00:00]\n",
            r"t\.yml:1:6: .*day is out of range for month.*quote it",
            id="impossible-time",
        ),
        pytest.param(
            # A Sigma correlation is written so, with its rules; "not valid YAML" sent the
            # reader looking for a typo in a file any YAML tool reads.
            "title: base\n---\ntitle: corr\ncorrelation: {type: event_count}\n",
            r"t\.yml:2:1: holds a second YAML document from here \(after '---'\); each file "
            r"holds one \(one detector, rule or configuration\): split it",
            id="two-documents",
        ),
        pytest.param(
            "n:\n  limits: {x: 1, x: 2}\n",
            r"t\.yml:2:18: key 'x' appears twice",
            id="duplicate-nested-key",
        ),
    ],
)
def test_hostile_or_broken_yaml_is_refused_with_file_and_line(text: str, match: str) -> None:
    started = time.monotonic()

    with pytest.raises(ConfigError, match=match):
        load_text(text, "t.yml")
    assert time.monotonic() - started < 2.0


def test_oversized_file_is_refused() -> None:
    with pytest.raises(ConfigError, match="larger than"):
        load_text("a: " + "x" * 1_100_000, "big.yml")


def test_shared_anchor_within_limits_loads() -> None:
    assert load_text("a: &x {k: 1}\nb: *x\n", "ok.yml").data == {"a": {"k": 1}, "b": {"k": 1}}


def test_control_characters_are_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"nul\.yml: not valid YAML"):
        load_text("a: b\x00c\n", "nul.yml")


def test_the_same_key_in_two_mappings_is_no_duplicate() -> None:
    loaded = load_text("a: {x: 1}\nb: {x: 2}\nc: [{x: 3}, {x: 4}]\n", "f.yml")

    assert loaded.data == {"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 3}, {"x": 4}]}


def test_the_depth_refused_does_not_depend_on_the_recursion_limit() -> None:
    # A library may raise the limit (the full suite ran with a higher one): the same file
    # must be refused at the same line in any process.
    deep = "a: 1\nb:\n  " + "[" * 300 + "]" * 300 + "\n"
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        with pytest.raises(ConfigError, match=r"t\.yml:3: refused: nested too deeply"):
            load_text(deep, "t.yml")
    finally:
        sys.setrecursionlimit(before)
    # Within the bound (the mapping and 98 lists), a file still loads.
    assert load_text("a: " + "[" * 98 + "]" * 98 + "\n", "t.yml").data is not None


def test_a_path_naming_nothing_is_said_as_missing_not_as_a_wrong_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's paths are /etc/nis2triage/...; a user who copied the files elsewhere was
    # told "not a regular file", which reads as a file of the wrong kind.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dangling.yml").symlink_to(tmp_path / "gone.yml")
    (tmp_path / "conf.d").mkdir()

    with pytest.raises(ConfigError) as absolute:
        load_file(tmp_path / "nope.yml")
    with pytest.raises(ConfigError) as relative:
        load_file("nope.yml")
    with pytest.raises(ConfigError) as dangling:
        load_file("dangling.yml")
    with pytest.raises(ConfigError) as folder:
        load_file("conf.d")
    with pytest.raises(ConfigError) as device:
        load_file("/dev/null")

    assert str(absolute.value) == f"{tmp_path}/nope.yml: no such file: check the path"
    assert str(relative.value) == f"nope.yml: no such file (relative to {tmp_path}): check the path"
    assert str(dangling.value) == (
        f"dangling.yml: a symbolic link to {tmp_path}/gone.yml, which does not exist "
        f"(relative to {tmp_path})"
    )
    assert str(folder.value) == "conf.d: is a folder: name the YAML file inside it"
    assert str(device.value) == "/dev/null: not a regular file"


def test_validate_and_run_say_a_missing_configuration_is_missing(tmp_path: Path) -> None:
    missing = str(tmp_path / "nis2triage.yml")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "nis2triage.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    validated = cli("validate", missing)
    ran = cli("run", "-c", missing, "--once")

    assert validated.returncode == 1
    assert f"{missing}: no such file: check the path" in validated.stdout
    assert ran.returncode == 1
    # `run`'s stderr is a pipe here, so its log, and the error that ends it, is ECS JSON.
    [said] = [json.loads(line) for line in ran.stderr.splitlines()]
    assert (said["log.level"], said["message"]) == (
        "error",
        f"{missing}: no such file: check the path",
    )


def test_bytes_that_are_not_utf8_are_said_at_their_line_with_the_fix(tmp_path: Path) -> None:
    # Said as "not UTF-8 text (byte 34)": a count of bytes no editor shows, and no way out.
    path = tmp_path / "d.yml"
    path.write_bytes(b"name: ssh\nmessage: 'Fehlversuche f\xfcr {user}'\n")

    with pytest.raises(ConfigError) as raised:
        load_file(path)

    assert str(raised.value) == (
        f"{path}:2:25: not UTF-8 text (byte 0xfc): save the file as UTF-8 (the editor's "
        "encoding, or `iconv -f latin1 -t utf-8`)"
    )
