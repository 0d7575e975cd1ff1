"""Index expressions as the configuration and rule files write them, checked when read.

Elasticsearch takes a comma-separated list of names, patterns (`logs-*`), exclusions
(`-logs-old*`), other clusters' names (`remote:logs-*`) and date math (`<logs-{now/d}>`).
A name no index, alias or data stream can have is not refused by a search that ignores
unavailable indices, as the agent's do: it is skipped without a word, and with it every
event it was meant to read. So such a name is refused at load instead.
"""

from __future__ import annotations

# What no index, alias or data stream name may hold (Elasticsearch's own list, less the
# `*` of patterns and the `,` between names; `<` and `>` are taken around date math only).
FORBIDDEN = frozenset(' "\\/?|#<>')


def check_expression(text: str) -> str:
    """`text` if every name of it can name something; ValueError saying which cannot and
    how to write it otherwise."""
    parts = text.split(",")
    for part in parts:
        problem = _problem(part, parts)
        if problem is not None:
            raise ValueError(f"{problem} (in {text!r})" if len(parts) > 1 else problem)
    return text


def _problem(part: str, parts: list[str]) -> str | None:
    if not part.strip():
        return (
            "an empty name (two commas in a row, or one at an end): Elasticsearch refuses "
            "the whole list with a 403 'unauthorized' that reads like a missing privilege; "
            "remove the extra comma"
        )
    if part != part.strip():
        fixed = ",".join(p.strip() for p in parts if p.strip())
        return (
            f"{part!r} has a space around it: Elasticsearch reads it as a name no index has "
            f"and skips it without an error; write {fixed!r}"
        )
    name = part.removeprefix("-")
    cluster, bracket, _ = name.partition("<")
    if bracket and name.endswith(">") and (not cluster or cluster.endswith(":")):
        return None  # date math, here or on another cluster: `/`, `|`, `:` belong to it
    name = name.rpartition(":")[2]  # another cluster's name, or a `::failures` selector
    bad = sorted({c for c in name if c in FORBIDDEN})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        return (
            f"{part!r} holds {shown}, which no index, alias or data stream name may hold: "
            "Elasticsearch would skip it without an error; correct the name (a date math "
            "name is written whole in angle brackets, e.g. '<logs-{now/d}>')"
        )
    if name.startswith("+") or (name.startswith("_") and name != "_all"):
        return (
            f"{part!r} begins with {name[0]!r}, which no index, alias or data stream name "
            "may: Elasticsearch would skip it without an error; correct the name"
        )
    return None
