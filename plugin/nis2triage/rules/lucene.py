"""Lucene query strings: checking what operators write, and writing what analysts paste.

A rule's filter is either a Lucene query string or an Elasticsearch query DSL
mapping. Syntax slips (an unclosed quote, a bad /regex/) are caught when the
rule is loaded rather than on the first run. Every alert carries a Lucene query
that, pasted into Kibana's search bar in Lucene mode, shows the raw events.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

# Characters the classic query parser treats as syntax outside quotes.
_RESERVED = set('+-=&|><!(){}[]^"~*?:\\/ ')
_OPENERS = {"(": ")", "[": "]}", "{": "]}"}
_TERM_START = set(" \t\n(:+-!")


def check_query_string(text: str) -> None:
    """Raise ValueError naming the position of an unbalanced quote, bracket or bad /regex/.

    Lucene's regular expressions are not Python's (no anchors, `<1-5>` intervals),
    but both refuse unbalanced groups and a quantifier with nothing to repeat, which
    are the slips that matter here; Elasticsearch still has the last word at run time.
    """
    stack: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            i = _skip_quoted(text, i)
        elif char == "/" and (i == 0 or text[i - 1] in _TERM_START):
            i = _check_regex(text, i)
        elif char in _OPENERS:
            stack.append((char, i))
        elif char in ")]}":
            _close(stack, char, i)
        i += 1
    if stack:
        opener, pos = stack[-1]
        raise ValueError(f"'{opener}' at character {pos + 1} is never closed")


def _skip_quoted(text: str, start: int) -> int:
    i = start + 1
    while i < len(text) and text[i] != '"':
        i += 2 if text[i] == "\\" else 1
    if i >= len(text):
        raise ValueError(f'the quote at character {start + 1} is never closed; escape it as \\"')
    return i


def _check_regex(text: str, start: int) -> int:
    i = start + 1
    while i < len(text) and text[i] != "/":
        i += 2 if text[i] == "\\" else 1
    if i >= len(text):
        raise ValueError(
            f"the /regular expression/ at character {start + 1} is never closed; "
            "escape a literal slash as \\/"
        )
    check_regex(text[start + 1 : i], where=f"/…/ at character {start + 1}")
    return i


def _close(stack: list[tuple[str, int]], char: str, pos: int) -> None:
    if not stack or char not in _OPENERS[stack[-1][0]]:
        raise ValueError(f"'{char}' at character {pos + 1} closes nothing")
    stack.pop()


def check_regex(pattern: str, *, where: str = "") -> None:
    """Refuse a regular expression bound for Elasticsearch that cannot even be parsed.

    Only the syntax is checked, with `re.compile`, which parses in one pass and
    matches nothing: no backtracking happens here, and the pattern is bounded by
    the rule file's size. Elasticsearch runs it as an automaton (no backtracking
    either) and bounds it itself: `index.max_regex_length` (1,000 characters by
    default) and 10,000 determinization steps; a refusal pauses the rule.
    """
    at = f" {where}" if where else ""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(
            f"bad regular expression{at}: {exc.msg} at position {exc.pos} of {pattern!r}; "
            "escape special characters such as ( [ * + ? with a backslash"
        ) from None
    except RecursionError:
        raise ValueError(
            f"regular expression{at} is nested too deeply to check; flatten its groups"
        ) from None


# Elasticsearch's default bound on the automaton of a regexp or query_string regex.
MAX_DETERMINIZED_STATES = 10_000


def check_dsl(query: Any) -> None:
    """Check the query strings and regexp clauses nested anywhere in a query DSL mapping."""
    if isinstance(query, dict):
        for key, value in query.items():
            if key == "query_string" and isinstance(value, dict):
                _check_automaton_bound(value, "in query_string")
                check_query_string(str(value.get("query", "")))
            elif key == "regexp" and isinstance(value, dict):
                for field, spec in value.items():
                    where = f"in regexp on {field}"
                    if isinstance(spec, dict):
                        _check_automaton_bound(spec, where)
                    text = spec.get("value", "") if isinstance(spec, dict) else spec
                    check_regex(str(text), where=where)
            else:
                check_dsl(value)
    elif isinstance(query, list):
        for item in query:
            check_dsl(item)


def _check_automaton_bound(clause: dict[str, Any], where: str) -> None:
    """A rule may lower Elasticsearch's bound on a regex automaton, never raise it:
    a larger one lets one rule's query hold a search thread and its memory far longer."""
    given = clause.get("max_determinized_states")
    if given is None:
        return
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        raise ValueError(f"max_determinized_states {where} must be a whole number, got {given!r}")
    if given > MAX_DETERMINIZED_STATES:
        raise ValueError(
            f"max_determinized_states {where} is {given}; rules may not raise Elasticsearch's "
            f"bound of {MAX_DETERMINIZED_STATES}: simplify the expression (a literal prefix, "
            "no .* before a counted repeat) or match the value with blacklist_regex instead"
        )


def escape_field(name: str) -> str:
    return "".join(f"\\{c}" if c in _RESERVED and c not in "." else c for c in name)


def quote(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def time_range(field: str, start: datetime, end: datetime) -> str:
    """Half-open [start, end), the way every window in the rules is counted."""
    return f"{escape_field(field)}:[{quote(iso(start))} TO {quote(iso(end))}}}"


def term(field: str, value: object) -> str:
    return f"{escape_field(field)}:{quote(value)}"


def conjunction(*parts: str | None) -> str:
    present = [p for p in parts if p]
    if len(present) == 1:
        return present[0]
    return " AND ".join(f"({p})" if " OR " in p or " AND " in p else p for p in present)


def from_dsl(query: dict[str, Any]) -> str | None:
    """The Lucene equivalent of common query DSL clauses, or None when there is none.

    Covers bool, term(s), match, match_phrase, range, exists, prefix, wildcard,
    regexp, query_string and match_all: what rule filters use in practice. Other
    clauses (nested, geo, scripts) have no query-string form.
    """
    if len(query) != 1:
        return None
    kind, body = next(iter(query.items()))
    if kind == "bool":
        return _bool_to_lucene(body)
    if kind == "match_all":
        return "*"
    if kind == "query_string" and isinstance(body, dict):
        return f"({body.get('query', '*')})"
    if kind == "exists" and isinstance(body, dict):
        return f"_exists_:{escape_field(str(body.get('field')))}"
    if not isinstance(body, dict) or len(body) != 1:
        return None
    field, spec = next(iter(body.items()))
    return _leaf_to_lucene(kind, escape_field(field), spec)


def _leaf_to_lucene(kind: str, field: str, spec: Any) -> str | None:
    value = spec.get("value", spec.get("query")) if isinstance(spec, dict) else spec
    if kind in ("term", "match", "match_phrase"):
        return f"{field}:{quote(value)}"
    if kind == "terms" and isinstance(spec, list):
        return f"{field}:({' OR '.join(quote(v) for v in spec)})"
    if kind == "prefix":
        return f"{field}:{_bare(value)}*"
    if kind == "wildcard":
        escaped = str(value).replace(" ", "\\ ")
        return f"{field}:{escaped}"
    if kind == "regexp":
        return f"{field}:/{value}/"
    if kind == "range" and isinstance(spec, dict):
        low = spec.get("gte", spec.get("gt", "*"))
        high = spec.get("lte", spec.get("lt", "*"))
        left = "{" if "gt" in spec else "["
        right = "}" if "lt" in spec else "]"
        return f"{field}:{left}{_bound(low)} TO {_bound(high)}{right}"
    return None


def _bool_to_lucene(body: dict[str, Any]) -> str | None:
    parts: list[str] = []
    for occur in ("must", "filter", "should", "must_not"):
        clauses = body.get(occur, [])
        translated = [from_dsl(c) for c in (clauses if isinstance(clauses, list) else [clauses])]
        if any(t is None for t in translated):
            return None
        texts = [t for t in translated if t]
        if texts and occur == "should":
            if "must" in body or "filter" in body:
                return None  # optional clauses only rank; Lucene strings cannot say that
            parts.append("(" + " OR ".join(texts) + ")")
        elif texts and occur == "must_not":
            parts.extend(f"NOT {t}" for t in texts)
        else:
            parts.extend(texts)
    return " AND ".join(parts) if parts else "*"


def _bare(value: object) -> str:
    return "".join(f"\\{c}" if c in _RESERVED else c for c in str(value))


def _bound(value: object) -> str:
    return "*" if value == "*" else quote(value)
