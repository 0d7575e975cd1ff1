"""The regular expressions of native rules, matched by RE2 in time linear in the value.

`blacklist_regex` and `whitelist_regex` run against values pulled from the
monitored indices, which an attacker can fill. Python's `re` backtracks with no
time limit: `(a+)+$` against thirty `a` and a `!` already takes minutes, and the
agent's whole loop would stall behind it. RE2 (Google's engine, through the
`google-re2` package) never backtracks, so a match costs at most the length of
the value times the size of the pattern, whatever either holds.

RE2 leaves out what a linear-time engine cannot offer (backreferences,
lookaround, conditionals) and what only steers backtracking (atomic groups,
possessive quantifiers). A pattern using one is refused when the rule is loaded,
with what to write instead.
Syntax reference: https://github.com/google/re2/wiki/Syntax
"""

from __future__ import annotations

import re
from typing import Any

import re2
from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

_OPTIONS = re2.Options()
# RE2 also prints every refused pattern to stderr; the loader's message says it better.
_OPTIONS.log_errors = False
# Rules ask only whether the whole value matches, never for groups: without captures RE2
# answers from its DFA alone (four times faster on a 30,000-character match).
_OPTIONS.never_capture = True
# max_mem stays at its default, 8 MiB per pattern, which bounds the compiled program
# and its DFA cache; a pattern that needs more is refused at load ("pattern too large").

_FLAGS_RE2_KNOWS = set("imsU-")

_BACKREFERENCE_FIX = (
    "list the exact values instead (the rule's blacklist/whitelist or a list file), "
    "or spell the repetitions out, e.g. (aa|bb) for (a|b)\\1"
)
_LOOKAROUND_FIX = (
    "the pattern must match the whole value anyway, so write the wanted text itself "
    "(admin.* rather than (?=admin).*), and leave values out with the rule's filter "
    "(NOT field:value) or a whitelist rather than with (?!...)"
)
_NO_BACKTRACKING_FIX = (
    "RE2 never backtracks, so it is not needed to keep matching fast: write the plain "
    "quantifier (* + ? {n,m}) or group (?:...) and check it still matches what you mean"
)
_CONDITIONAL_FIX = "write the cases as alternatives, e.g. (a|b), or as two rules"


class RulePattern:
    """A rule's regular expression, compiled by RE2; equal when the pattern text is."""

    __slots__ = ("_compiled", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            self._compiled: Any = re2.compile(text, _OPTIONS)
        except re2.error as exc:
            raise ValueError(_refusal(text, _decoded(exc))) from None

    def fullmatch(self, value: str) -> bool:
        """Whether the whole of `value` matches, as `*_regex` lists require."""
        # Bytes, so that a lone surrogate in a pulled value is matched rather than an error.
        return self._compiled.fullmatch(value.encode("utf-8", "surrogatepass")) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RulePattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"RulePattern({self.text!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _from_yaml,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda p: p.text),
        )


def _from_yaml(value: Any) -> RulePattern:
    if isinstance(value, RulePattern):
        return value
    if not isinstance(value, str):
        raise ValueError(f"a regular expression is a text, got {value!r}; quote it")
    return RulePattern(value)


def _decoded(exc: re2.error) -> str:
    reason = exc.args[0] if exc.args else str(exc)
    text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    # RE2 quotes the rest of the pattern after some errors ("missing ): ..."); keep it short.
    return text if len(text) <= 160 else text[:160] + "…"


def _refusal(text: str, reason: str) -> str:
    """What RE2 refused in `text`, where, and what to write instead."""
    found = unsupported(text)
    if found is None:
        return f"bad regular expression {_shown(text)}: {reason}; {_syntax_fix(reason)}"
    at, construct, what, fix = found
    return (
        f"unsupported regular expression {_shown(text)}: {construct!r} at character {at + 1} "
        f"is {what}, which RE2 (the linear-time engine rules run on) does not support; {fix}"
    )


def _shown(text: str) -> str:
    """The pattern as a message quotes it: a long one is cut, the file has the rest."""
    return repr(text) if len(text) <= 120 else repr(text[:120]) + "…"


def _syntax_fix(reason: str) -> str:
    if "repetition size" in reason:
        return "RE2 counts repeats up to 1000: write a smaller count, or {n,} for 'n or more'"
    if "too large" in reason:
        return (
            "RE2 compiles a pattern in at most 8 MiB: split it into several patterns, "
            "shorten its counted repeats, or list the exact values instead"
        )
    return (
        "escape special characters such as ( [ * + ? with a backslash "
        "(RE2 syntax: https://github.com/google/re2/wiki/Syntax)"
    )


Unsupported = tuple[int, str, str, str]
"""Where (0-based), the construct as written, what it is, and how to rewrite it."""


def unsupported(text: str) -> Unsupported | None:
    """The first construct of Python's or PCRE's syntax in `text` that RE2 lacks, if any.

    Only consulted after RE2 refused `text`, to say why in the operator's terms;
    a single pass over the pattern, so hostile patterns cost nothing here either.
    """
    i = 0
    in_class = False
    while i < len(text):
        char = text[i]
        if char == "\\":
            found = None if in_class else _escape(text, i)
            if found:
                return found
            i += 2
            continue
        if in_class:
            in_class, i = _class_step(text, i)
            continue
        if char == "[":
            in_class, i = True, _class_start(text, i)
            continue
        found = _group(text, i) if char == "(" else _possessive(text, i)
        if found:
            return found
        i += 1
    return None


def _escape(text: str, i: int) -> Unsupported | None:
    after = text[i + 1 : i + 2]
    if after in set("123456789"):
        return i, text[i : i + 2], "a backreference", _BACKREFERENCE_FIX
    if after in ("g", "k") and text[i + 2 : i + 3] in ("<", "{", "'"):
        return i, text[i : i + 3], "a named backreference", _BACKREFERENCE_FIX
    if after == "Z":
        return i, "\\Z", "Python's end of text", "write \\z, or nothing: the whole value must match"
    return None


def _class_start(text: str, i: int) -> int:
    """The index after `[`, `[^` and a leading `]`, which is literal there."""
    j = i + 1
    if text[j : j + 1] == "^":
        j += 1
    return j + 1 if text[j : j + 1] == "]" else j


def _class_step(text: str, i: int) -> tuple[bool, int]:
    if text[i] == "]":
        return False, i + 1
    if text.startswith("[:", i):
        close = text.find(":]", i + 2)
        return True, (close + 2 if close != -1 else i + 1)
    return True, i + 1


_GROUPS: list[tuple[str, str, str]] = [
    ("(?<=", "a lookbehind", _LOOKAROUND_FIX),
    ("(?<!", "a negative lookbehind", _LOOKAROUND_FIX),
    ("(?=", "a lookahead", _LOOKAROUND_FIX),
    ("(?!", "a negative lookahead", _LOOKAROUND_FIX),
    ("(?>", "an atomic group", _NO_BACKTRACKING_FIX),
    ("(?P=", "a named backreference", _BACKREFERENCE_FIX),
    ("(?(", "a conditional group", _CONDITIONAL_FIX),
]
_FLAG_GROUP = re.compile(r"\(\?([a-zA-Z-]+)[:)]")


def _group(text: str, i: int) -> Unsupported | None:
    for opening, what, fix in _GROUPS:
        if text.startswith(opening, i):
            return i, opening, what, fix
    # A fixed pattern without nested repeats, matched at one place: linear in the flags.
    flags = _FLAG_GROUP.match(text, i)
    if flags and set(flags.group(1)) - _FLAGS_RE2_KNOWS:
        strange = "".join(sorted(set(flags.group(1)) - _FLAGS_RE2_KNOWS))
        return i, flags.group(), f"the flag {strange!r}", _flag_fix(strange)
    return None


def _flag_fix(flags: str) -> str:
    if "x" in flags:
        return "remove the x flag and the spaces and comments it allowed"
    return (
        "RE2 knows the flags i, m, s and U; its \\d \\w \\s \\b are ASCII only, "
        "so write \\pN or \\pL where Unicode digits or letters are meant"
    )


def _possessive(text: str, i: int) -> Unsupported | None:
    if text[i] in "*+?}" and text[i + 1 : i + 2] == "+" and i > 0:
        return i, text[i : i + 2], "a possessive quantifier", _NO_BACKTRACKING_FIX
    return None
