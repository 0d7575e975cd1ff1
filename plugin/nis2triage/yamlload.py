"""Safe YAML loading that remembers where each key came from.

Every file an operator writes (configuration, rules, detectors, triage) is
read through here so that errors can name the file and line. Loading is safe:
no tag constructs an object, and oversized or alias-bomb documents are
refused before they can exhaust memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nis2triage.errors import ConfigError

MAX_BYTES = 1_000_000
MAX_NODES = 200_000


@dataclass(frozen=True)
class Located:
    """A loaded document plus the line of every key path in it (1-based)."""

    path: str
    data: Any
    lines: dict[tuple[str | int, ...], int]
    columns: dict[tuple[str | int, ...], int] = field(default_factory=dict)

    def _nearest(self, loc: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in self.lines:
                return loc[:cut]
        return None

    def line_of(self, loc: tuple[str | int, ...]) -> int | None:
        """The line of `loc`, or of its nearest parent that has one."""
        found = self._nearest(loc)
        return None if found is None else self.lines[found]

    def column_of(self, loc: tuple[str | int, ...]) -> int | None:
        found = self._nearest(loc)
        return None if found is None else self.columns.get(found)

    def error(self, loc: tuple[str | int, ...], message: str) -> ConfigError:
        key = ".".join(str(p) for p in loc)
        text = f"{key}: {message}" if key else message
        return ConfigError(text, path=self.path, line=self.line_of(loc), column=self.column_of(loc))


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes the document has once every alias is expanded (memoised per node)."""
    key = id(node)
    if memo.get(key) == -1:
        raise yaml.YAMLError(f"recursive alias at line {node.start_mark.line + 1}")
    if key not in memo:
        memo[key] = -1  # on the stack: meeting it again below means recursion
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        memo[key] = 1 + sum(_expanded_size(c, memo) for c in children)
    return memo[key]


class _Loader(yaml.SafeLoader):
    """The safe loader, with dates that do not exist (2024-13-45) said where they are."""

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError) as exc:
            # The resolver took it for a date by its shape; the calendar then refused it.
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{node.value!r} looks like a date but is none ({exc}); "
                "quote it to keep it as text",
                node.start_mark,
            ) from exc


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


class _Duplicate(Exception):
    """A key given twice in one mapping: YAML keeps the last without a word."""

    def __init__(self, name: str, first_line: int, mark: yaml.Mark) -> None:
        super().__init__(name)
        self.name, self.first_line, self.mark = name, first_line, mark


def _collect(
    node: yaml.Node,
    loc: tuple[str | int, ...],
    out: dict[Any, int],
    cols: dict[Any, int],
    seen: set[int],
) -> None:
    out.setdefault(loc, node.start_mark.line + 1)
    cols.setdefault(loc, node.start_mark.column + 1)
    # An aliased node is walked once: its lines are those of the anchor.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark)
            if name in first and name != "<<":
                raise _Duplicate(name, first[name], key.start_mark)
            first[name] = key.start_mark.line + 1
            out[(*loc, name)] = key.start_mark.line + 1
            cols[(*loc, name)] = key.start_mark.column + 1
            _collect(value, (*loc, name), out, cols, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _collect(item, (*loc, i), out, cols, seen)


def load_text(text: str, path: str) -> Located:
    """Parse one YAML document; any problem becomes a ConfigError naming `path` and line."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise ConfigError(f"file is larger than {MAX_BYTES} bytes; split it", path=path)
    try:
        # The reader checks for control characters as soon as the loader is built.
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=path) from exc
    # Checked before composing, which recurses per level: where it failed depended on the
    # interpreter's recursion limit (a library may raise it), so a file refused in one
    # process loaded in another.
    too_deep = _too_deep_at(text)
    if too_deep is not None:
        loader.dispose()
        raise ConfigError(
            f"refused: nested too deeply (past {SAID_DEPTH} levels here): flatten it",
            path=path,
            line=too_deep,
        )
    try:
        node = loader.get_single_node()
        if node is None:
            return Located(path, None, {})
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise ConfigError(
                f"refused: expands to {size} nodes through aliases (limit {MAX_NODES}): "
                "write the repeated parts out, or repeat them fewer times",
                path=path,
                line=_first_line(text, (yaml.AliasToken,)),
            )
        lines: dict[Any, int] = {}
        columns: dict[Any, int] = {}
        _collect(node, (), lines, columns, set())
        data = loader.construct_document(node)
    except _Duplicate as exc:
        raise ConfigError(
            f"key {exc.name!r} appears twice in the same mapping (first at line "
            f"{exc.first_line}); YAML would keep only the last: keep one",
            path=path,
            line=exc.mark.line + 1,
            column=exc.mark.column + 1,
        ) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError(_yaml_problem(exc), path=path, line=line, column=column) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"refused: {exc}", path=path) from exc
    except RecursionError as exc:
        # Behind the depth check above: a structure it does not count that still recursed
        # past the interpreter's limit.
        raise ConfigError("refused: nested too deeply: flatten it", path=path) from exc
    finally:
        loader.dispose()
    return Located(path, data, lines, columns)


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """What is wrong, in words that lead to the fix. A second document is valid YAML (a
    Sigma correlation is written so, after its rules), and "not valid YAML" sent the
    reader looking for a typo that is not there."""
    if isinstance(exc, yaml.composer.ComposerError) and "another document" in str(exc.problem):
        return (
            "holds a second YAML document from here (after '---'); each file holds one "
            "(one detector, rule or configuration): split it, one document per file"
        )
    return f"not valid YAML: {exc.problem or exc}"


# A depth no configuration needs: a refused file's error points at where it is passed.
SAID_DEPTH = 100
_INDENTS = re.compile(r"(?m)^ +")
_OPENS = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_CLOSES = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def _first_line(text: str, kinds: tuple[type[yaml.Token], ...]) -> int | None:
    """The line of the first token of `kinds` (the scanner expands and recurses into
    nothing, so it is safe on the files the loader refuses)."""
    try:
        return next((t.start_mark.line + 1 for t in yaml.scan(text) if isinstance(t, kinds)), None)
    except yaml.YAMLError:
        return None


def _too_deep_at(text: str) -> int | None:
    """The line where nesting first passes SAID_DEPTH levels."""
    # Each level opens with a bracket, a `- `, a `? ` or one more column of indentation: a file
    # with fewer of them in all cannot be that deep, and skips the scan (most files).
    indent = max((len(m) for m in _INDENTS.findall(text)), default=0)
    opens = sum(text.count(mark) for mark in ("[", "{", "- ", "? "))
    if opens + indent < SAID_DEPTH:
        return None
    depth = 0
    try:
        for token in yaml.scan(text):
            if isinstance(token, _OPENS):
                depth += 1
                if depth > SAID_DEPTH:
                    return int(token.start_mark.line) + 1
            elif isinstance(token, _CLOSES):
                depth -= 1
    except yaml.YAMLError:
        return None
    return None


def load_file(path: str | Path) -> Located:
    p = Path(path)
    try:
        # A path mistyped, or left at the README's /etc/nis2triage/ while the files were
        # copied elsewhere, was said as "not a regular file", which reads as a wrong kind.
        if not p.exists():
            raise ConfigError(_missing(p), path=str(p))

        if p.is_dir():
            raise ConfigError("is a folder: name the YAML file inside it", path=str(p))

        # Checked before reading: /dev/zero or a FIFO must not be read without end.
        if not p.is_file():
            raise ConfigError("not a regular file", path=str(p))
        if p.stat().st_size > MAX_BYTES:
            raise ConfigError(f"file is larger than {MAX_BYTES} bytes; split it", path=str(p))
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(p)) from exc
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"file is larger than {MAX_BYTES} bytes; split it", path=str(p))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(raw, exc.start, str(p)) from exc
    return load_text(text, str(p))


def _not_utf8(raw: bytes, start: int, path: str) -> ConfigError:
    """The first byte that is not UTF-8, at its line and column (a byte offset is no place
    an editor shows)."""
    line_start = raw.rfind(b"\n", 0, start) + 1
    return ConfigError(
        f"not UTF-8 text (byte 0x{raw[start]:02x}): save the file as UTF-8 (the editor's "
        "encoding, or `iconv -f latin1 -t utf-8`)",
        path=path,
        line=raw.count(b"\n", 0, start) + 1,
        column=start - line_start + 1,
    )


def _missing(p: Path) -> str:
    """What to say of a path that names nothing, with the folder it is read from when
    relative (a command run from another folder is the usual cause)."""
    where = "" if p.is_absolute() else f" (relative to {Path.cwd()})"
    if p.is_symlink():
        return f"a symbolic link to {os.readlink(p)}, which does not exist{where}"
    return f"no such file{where}: check the path"


def once_each(files: Iterable[Path]) -> list[Path]:
    """The files in order, one reached twice (a folder and a file in it, a symbolic link)
    kept at its first place: loaded twice, a rule would clash with its own name, or run
    twice and raise every alert twice (a detector file, as one detector)."""
    kept: dict[Path, Path] = {}
    for file in files:
        kept.setdefault(file.resolve(), file)
    return list(kept.values())
