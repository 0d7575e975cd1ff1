"""Sigma regular expressions rewritten in the dialect of Lucene's RegExp.

Sigma's `re` modifier means a PCRE-style search: unanchored, `^`/`$` anchors,
`(?i)` flags, `(?:...)` groups. Lucene (the `/.../` of a query string) matches
the whole term, knows no anchors, flags or non-capturing groups, and gives
`@ & ~ < > #` a meaning of their own. Fields here carry the `lowercase`
normalizer, which lowercases the pattern too: so `\\S` would turn into `\\s`,
and is written `[^\\s]` instead. A construct Lucene cannot express (lookaround,
back-reference, word boundary) is refused rather than silently changed.
Reference: Lucene's RegExp syntax (org.apache.lucene.util.automaton.RegExp).

Nothing here matches event data, and no Sigma pattern is compiled with `re`
(pySigma compiles each once, for its syntax only): the `re` patterns below are
fixed, without nested repeats, and read the rule's pattern in one pass. The
translation runs in Elasticsearch as an automaton, which never backtracks and
which Elasticsearch bounds (`index.max_regex_length`, determinization work);
a refused query pauses the rule (`sigma_run`).
"""

from __future__ import annotations

import re

from sigma.exceptions import SigmaFeatureNotSupportedByBackendError

# Lucene operators that are plain characters in PCRE, plus the query-string delimiter.
_LUCENE_SPECIAL = set('@&~<>#"/')
_NEGATED_CLASSES = {"D": r"[^\d]", "S": r"[^\s]", "W": r"[^\w]"}
_CONTROL = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v"}
_LEADING_FLAGS = re.compile(r"^\(\?[imsx]+\)")
_QUANTIFIER = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_NAMED_GROUP = re.compile(r"\?P?<([A-Za-z_]\w*)>")
_FLAGGED_GROUP = re.compile(r"\?[imsx]+:")
WIDE_REPEAT = 32
_START, _END = "\x00start", "\x00end"


class UnsupportedRegex(SigmaFeatureNotSupportedByBackendError):
    """The regular expression uses a construct Lucene's RegExp cannot express."""


def translate(pattern: str) -> str:
    """A Lucene RegExp matching the terms in which `pattern` finds a match."""
    pattern = _LEADING_FLAGS.sub("", pattern)
    branches = _split_branches(_fill_empty_branches(_tokens(pattern)))
    return "|".join(_anchor(branch) for branch in branches)


def _anchor(tokens: list[str]) -> str:
    """Unanchored ends get `.*`, since Lucene matches the whole term."""
    starts = bool(tokens) and tokens[0] == _START
    ends = bool(tokens) and tokens[-1] == _END
    body = tokens[int(starts) : len(tokens) - int(ends)]
    if _START in body or _END in body:
        raise UnsupportedRegex("an anchor ('^' or '$') inside the pattern has no Lucene form")
    return ("" if starts else ".*") + "".join(body) + ("" if ends else ".*")


def _fill_empty_branches(tokens: list[str]) -> list[str]:
    """`(a|)` is 'a or nothing' in PCRE; Lucene refuses the empty branch but accepts `()`."""
    out: list[str] = []
    for token in tokens:
        if token in ("|", ")") and out and out[-1] in ("(", "|"):
            out.append("()")
        out.append(token)
    return out


def _split_branches(tokens: list[str]) -> list[list[str]]:
    branches: list[list[str]] = [[]]
    depth = 0
    for token in tokens:
        depth += {"(": 1, ")": -1}.get(token, 0)
        if token == "|" and depth == 0:
            branches.append([])
        else:
            branches[-1].append(token)
    return branches


def _tokens(pattern: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            token, i = _escape(pattern, i, in_class=False)
        elif char == "[":
            token, i = _char_class(pattern, i)
        elif char == "(":
            token, i = _group_open(pattern, i)
        elif char == "{":
            token, i = _brace(pattern, i)
        elif char in "*+?" and i + 1 < len(pattern) and pattern[i + 1] in "?+":
            # Lazy and possessive quantifiers match the same terms as greedy ones here.
            token, i = char, i + 2
        else:
            token, i = _plain(char), i + 1
        out.append(token)
    return out


def _plain(char: str) -> str:
    if char == "^":
        return _START
    if char == "$":
        return _END
    return "\\" + char if char in _LUCENE_SPECIAL else char


def _escape(pattern: str, i: int, in_class: bool) -> tuple[str, int]:
    if i + 1 >= len(pattern):
        raise UnsupportedRegex("the pattern ends with a lone backslash")
    char = pattern[i + 1]
    if char in "dsw":
        return "\\" + char, i + 2
    if char in _NEGATED_CLASSES and not in_class:
        return _NEGATED_CLASSES[char], i + 2
    if char in _CONTROL:
        return _CONTROL[char], i + 2
    if char == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", pattern[i + 2 : i + 4]):
        return _literal(chr(int(pattern[i + 2 : i + 4], 16))), i + 4
    if char.isalnum():
        raise UnsupportedRegex(f"'\\{char}' has no Lucene RegExp equivalent")
    return "\\" + char, i + 2


def _literal(char: str) -> str:
    return "\\" + char if not char.isalnum() else char


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    out = ["["]
    j = i + 1
    if pattern[j : j + 1] == "^":
        out.append("^")
        j += 1
    if pattern[j : j + 1] == "]":
        out.append("\\]")
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        if pattern[j] == "\\":
            token, j = _escape(pattern, j, in_class=True)
            out.append(token)
        elif pattern[j] == "[" and pattern[j + 1 : j + 2] == ":":
            raise UnsupportedRegex("POSIX character classes ([:alpha:]) have no Lucene form")
        else:
            out.append(_literal_in_class(pattern[j]))
            j += 1
    if j >= len(pattern):
        raise UnsupportedRegex("a character class is not closed")
    return "".join(out) + "]", j + 1


def _literal_in_class(char: str) -> str:
    return "\\" + char if char in _LUCENE_SPECIAL or char == "[" else char


def _group_open(pattern: str, i: int) -> tuple[str, int]:
    if pattern[i + 1 : i + 2] != "?":
        return "(", i + 1
    head = pattern[i + 2 : i + 4]
    if head.startswith(":"):
        return "(", i + 3
    # Matched in place (a slice per group would make many groups quadratic).
    named = _NAMED_GROUP.match(pattern, i + 1)
    if named:
        return "(", named.end()
    flagged = _FLAGGED_GROUP.match(pattern, i + 1)
    if flagged:
        return "(", flagged.end()
    if head[:1] in "=!" or head in ("<=", "<!"):
        raise UnsupportedRegex("lookaround assertions have no Lucene RegExp form")
    raise UnsupportedRegex(f"the group '(?{head}' has no Lucene RegExp form")


def _brace(pattern: str, i: int) -> tuple[str, int]:
    quantifier = _QUANTIFIER.match(pattern, i)
    if quantifier and int(quantifier.group(2) or 0) >= WIDE_REPEAT:
        # Between two '.*', a gap such as '.{6,64}' costs Lucene more than the 10,000
        # determinization steps it allows, and the whole rule is refused; '.{6,}'
        # matches a little more (a gap longer than 64) but stays within budget.
        return "{" + quantifier.group(1) + ",}", quantifier.end()
    if quantifier:
        return quantifier.group(), quantifier.end()
    # PCRE reads a brace that does not open a repeat count as a literal.
    return "\\{", i + 1
