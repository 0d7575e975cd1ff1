"""Reading native rule files: YAML in, a validated frozen rule out, or an error with a fix.

Every problem becomes a ConfigError naming the file, the line, the key, what
was expected and what to write instead: an unknown type lists the known ones,
a misspelt key names the closest known key.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from nis2triage import yamlload
from nis2triage.errors import ConfigError
from nis2triage.rules.lookalike import how_they_differ, skeleton
from nis2triage.rules.native import RULE_TYPES, BlacklistRule, NativeRule
from nis2triage.rules.options import DURATION_HINT, TriageHint

log = logging.getLogger(__name__)

_ADAPTER: TypeAdapter[NativeRule] = TypeAdapter(NativeRule)
_KNOWN_TYPES = ", ".join(RULE_TYPES)

# What to write instead, by pydantic error type, when its own message says too little.
_FIXES = {
    "int_parsing": "write a whole number, without quotes",
    "int_type": "write a whole number, without quotes",
    "int_from_float": "write a whole number, without a fraction",
    "float_parsing": "write a number, without quotes",
    "float_type": "write a number, without quotes",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write a text value; quote it if YAML reads it as a number or date",
    "tuple_type": "write a list, e.g. [a, b] or one '- item' per line",
    "list_type": "write a list, e.g. [a, b] or one '- item' per line",
    "model_type": "write a mapping of keys, e.g. {early_warning_candidate: true}",
    "dict_type": "write a mapping of keys",
    "timedelta_type": f"write {DURATION_HINT}",
    "timedelta_parsing": f"write {DURATION_HINT}",
}

# Elasticsearch counts documents and distinct values in a Java long: a count bound above
# it can never be reached, so a rule with one would never fire (nor a spike that high).
MAX_COUNT = 2**63 - 1
# The values one terms query may hold unless the cluster raises index.max_terms_count;
# a blacklist's exact values go to Elasticsearch as one terms query.
MAX_TERMS = 65_536
# (lower, upper) bound options: an upper bound below the lower one alerts on every window.
_BOUNDS = (
    ("min_threshold", "max_threshold"),
    ("min_cardinality", "max_cardinality"),
    ("min_percentage", "max_percentage"),
)


def load_rule(path: str | Path) -> NativeRule:
    """Load and validate one rule file."""
    doc = yamlload.load_file(path)
    if not isinstance(doc.data, dict):
        raise doc.error((), "a rule file holds one mapping of keys (name, type, index, ...)")
    if "detection" in doc.data and "logsource" in doc.data:
        raise doc.error((), "this is a Sigma rule (logsource/detection); load it as Sigma")
    folder = Path(path).parent
    return _validate(doc.data, doc, folder, list_root=folder)


def load_rules(paths: Iterable[str | Path]) -> list[NativeRule]:
    """Load rule files and the `*.yml`/`*.yaml` files of folders; names must be unique."""
    rules: list[NativeRule] = []
    seen: dict[str, Path] = {}
    alike: dict[str, NativeRule] = {}
    for file in _rule_files(paths):
        rule = load_rule(file)
        if rule.name in seen:
            raise ConfigError(
                f"rule name {rule.name!r} is also used by {seen[rule.name]}; names must be unique",
                path=str(file),
            )
        earlier = alike.setdefault(skeleton(rule.name), rule)
        if earlier is not rule:
            raise ConfigError(
                f"rule name {rule.name!r} looks like {earlier.name!r}, the name of the rule in "
                f"{seen[earlier.name]} ({how_they_differ(rule.name, earlier.name)}): their "
                "alerts would read as one rule's in Kibana; give this one a name of its own",
                path=str(file),
            )
        seen[rule.name] = file
        rules.append(rule)
    # Debug: setup loads the rules twice (the role, then the key); the agent says at start.
    log.debug("loaded %d native rules", len(rules))
    return rules


def rule_from_dict(data: dict[str, Any], *, source: str = "<rule>") -> NativeRule:
    """Validate a rule given as a mapping (tests, the API); errors name `source`, no line.

    Its list files may be anywhere: the mapping comes from code, not from a rule file
    whose folder would confine them.
    """
    return _validate(data, yamlload.Located(source, data, {}), Path("."), list_root=None)


def _rule_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            files.extend(sorted(p for p in given.iterdir() if p.suffix in (".yml", ".yaml")))
        else:
            files.append(given)
    return yamlload.once_each(files)


def _validate(
    data: dict[str, Any], doc: yamlload.Located, rule_dir: Path, *, list_root: Path | None
) -> NativeRule:
    context = {"rule_dir": rule_dir, "list_root": list_root}
    try:
        rule = _ADAPTER.validate_python(data, context=context)
    except ValidationError as exc:
        found = [_describe(e, data) for e in _without_misspelt(exc.errors(), data)]
        raise _error(found, doc) from None
    unusable = _beyond_limits(rule, data)
    if unusable:
        raise _error(unusable, doc)
    return rule


def _error(found: list[Problem], doc: yamlload.Located) -> ConfigError:
    """The first problem in file order, with the others listed after it."""
    found.sort(key=lambda p: doc.line_of(p[0]) or 0)
    (loc, message), others = found[0], found[1:]
    also = "".join(f"\n  also {doc.error(o_loc, o_msg)}" for o_loc, o_msg in others)
    return doc.error(loc, message + also)


def _loc(error: ErrorDetails, data: dict[str, Any]) -> tuple[str | int, ...]:
    """The key path in the file: pydantic puts the union's tag first, the file does not."""
    loc = tuple(error["loc"])
    if loc and loc[0] == data.get("type") and error["type"] != "union_tag_invalid":
        loc = loc[1:]
    return loc


Problem = tuple[tuple[str | int, ...], str]


def _describe(error: ErrorDetails, data: dict[str, Any]) -> Problem:
    """Where the problem is, and a message saying what was expected and how to fix it."""
    loc = _loc(error, data)
    kind = error["type"]
    if kind == "union_tag_invalid":
        return ("type",), _unknown_type(str(data.get("type")))
    if kind == "union_tag_not_found":
        return ("type",), f"missing; add 'type:' with one of: {_KNOWN_TYPES}"
    if kind == "extra_forbidden":
        return loc, _unknown_key(str(loc[-1]), loc[:-1], data)
    if kind == "missing":
        expected = _expected(RULE_TYPES[data["type"]], str(loc[-1]))
        return loc, f"missing; a {data['type']} rule needs it ({expected})"
    message = error["msg"].removeprefix("Value error, ")
    fix = _FIXES.get(kind)
    if fix:
        message = f"{message} (got {error['input']!r}); {fix}"
    return loc, message


def _beyond_limits(rule: NativeRule, data: dict[str, Any]) -> list[Problem]:
    """What validates as a type but cannot work: a rule that never or always fires, or that
    Elasticsearch refuses at run time."""
    found: list[Problem] = [
        ((name,), message)
        for name, given in data.items()
        if (message := _number_problem(name, given, getattr(rule, name, None)))
    ]
    for low, high in _BOUNDS:
        under, over = getattr(rule, low, None), getattr(rule, high, None)
        if under is not None and over is not None and over < under:
            found.append(((high,), _inverted(low, under, high, over)))
    if isinstance(rule, BlacklistRule):
        found.extend(_too_many_terms(rule))
    return found


def _number_problem(name: str, given: Any, value: Any) -> str | None:
    """Why a number option's value cannot be used, if it cannot; `given` as written."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(given, bool):
        # YAML reads true, yes and on as booleans, which pydantic would take as 1.
        return f"{str(given).lower()} is a boolean, not a number; write a number such as 5"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{given!r} is not a finite number; write a number such as 5"
    # Counts and a ratio of counts only: a metric's bounds are doubles, which a sum of
    # doubles can pass.
    if (isinstance(value, int) or name == "spike_height") and value > MAX_COUNT:
        return (
            f"{given!r} is more than Elasticsearch can count ({MAX_COUNT}), so the rule "
            "would never fire; write a number of events or values a window can hold"
        )
    return None


def _inverted(low: str, under: float, high: str, over: float) -> str:
    return (
        f"{over:g} is below {low} ({under:g}), so every window would alert (each value is "
        f"above one or below the other); the rule alerts outside [{low}, {high}]: swap them, "
        "or give only one"
    )


def _too_many_terms(rule: BlacklistRule) -> list[Problem]:
    count = len(rule.exact_values())
    if count <= MAX_TERMS:
        return []
    where = "blacklist_files" if rule.blacklist_files else "blacklist"
    message = (
        f"{count} exact values in blacklist and blacklist_files together, more than the "
        f"{MAX_TERMS} Elasticsearch accepts in one terms query (index.max_terms_count); "
        "split the list over several rules, or match families of values with blacklist_regex"
    )
    return [((where,), message)]


def _without_misspelt(errors: list[ErrorDetails], data: dict[str, Any]) -> list[ErrorDetails]:
    """Drop "missing X" when an unknown key is a misspelling of X: that error says it all."""
    unknown = [str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden"]

    def misspelt(error: ErrorDetails) -> bool:
        if error["type"] != "missing":
            return False
        return bool(difflib.get_close_matches(str(error["loc"][-1]), unknown, n=1))

    return [e for e in errors if not misspelt(e)]


def _expected(model: type[BaseModel], name: str) -> str:
    if name not in model.model_fields:  # a key of a nested value, not of the rule
        return "see the rule type's documentation"
    annotation = repr(model.model_fields[name].annotation)
    if "timedelta" in annotation:
        return DURATION_HINT
    if "Literal" in annotation:
        return "one of " + ", ".join(get_args(model.model_fields[name].annotation))
    for word, text in (("int", "a whole number"), ("float", "a number"), ("str", "a text")):
        if word in annotation:
            return text
    return "see the rule type's documentation"


def _unknown_type(given: str) -> str:
    close = difflib.get_close_matches(given, RULE_TYPES, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown rule type {given!r}; {hint}known types: {_KNOWN_TYPES}"


def _unknown_key(key: str, parent: tuple[str | int, ...], data: dict[str, Any]) -> str:
    model: type[BaseModel] = TriageHint if parent == ("triage",) else RULE_TYPES[data["type"]]
    known = list(model.model_fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r}; known keys here: {', '.join(sorted(known))}"
