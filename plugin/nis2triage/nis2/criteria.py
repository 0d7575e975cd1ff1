"""The significance criteria as data: the YAML vocabulary of rules/nis2/*.yml and its loader.

A criterion file holds two lists, `criteria` and `exclusions`; each item reads

    - id: cloud-limited-availability
      source: IR Art. 7(b)
      summary: Availability limited for more than 5 % / 1 million EU users for over an hour
      applies_to: [cloud]
      when:
        all:
          - {fact: limited_availability_minutes, op: gt, value: 60}
          - any:
              - {fact: users_affected, op: gt, value: 0.05, times: eu_users_total}
              - {fact: users_affected, op: gt, value: 1000000}

A condition is `all: [...]`, `any: [...]`, `not: {...}` or a comparison of a
named fact (see nis2triage.nis2.facts.FACT_KINDS) with `op` one of gt, ge, lt,
le, eq, ne against `value`, optionally multiplied by another fact (`times`).
An exclusion may list the criteria it `covers` (ids, `*` for any text): holding,
it sets those aside and leaves the others to decide. Nothing in a file is executed.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from nis2triage import yamlload
from nis2triage.errors import ConfigError
from nis2triage.nis2.entity import IrType
from nis2triage.nis2.facts import FACT_KINDS

Op = Literal["gt", "ge", "lt", "le", "eq", "ne"]
# "other": every entity without an IR Art. 1 type, judged by NIS2 Art. 23(3) alone.
EntityKind = Literal[IrType, "other"]
_TAG = "cond:"  # marks discriminator tags, which pydantic puts in error locations


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Compare(_Strict):
    fact: str
    op: Op
    times: str | None = None
    value: Any

    @field_validator("fact", "times")
    @classmethod
    def _known_fact(cls, name: str | None) -> str | None:
        if name is not None and name not in FACT_KINDS:
            close = difflib.get_close_matches(name, FACT_KINDS, n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else f"known: {', '.join(sorted(FACT_KINDS))}"
            )
            raise ValueError(f"unknown fact {name!r}; {hint}")
        return name

    @field_validator("times")
    @classmethod
    def _numeric_times(cls, name: str | None) -> str | None:
        if name is not None and FACT_KINDS[name] != "number":
            raise ValueError(f"times needs a numeric fact; {name} is a yes/no flag")
        return name

    @field_validator("value")
    @classmethod
    def _value_fits_fact(cls, value: Any, info: ValidationInfo) -> bool | float:
        fact, op = info.data.get("fact"), info.data.get("op")
        if fact is None or op is None:
            return False  # the fact or op error is reported instead
        if FACT_KINDS[fact] == "flag":
            return _flag_value(fact, op, value, info.data.get("times"))
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{fact} is a number; compare it with a number, not {value!r}")
        return float(value)


def _flag_value(fact: str, op: str, value: Any, times: str | None) -> bool:
    if op not in ("eq", "ne") or times is not None:
        raise ValueError(f"{fact} is a yes/no flag: use op eq or ne, without times")
    if not isinstance(value, bool):
        raise ValueError(f"{fact} is a yes/no flag; compare it with true or false, not {value!r}")
    return value


class AllOf(_Strict):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Strict):
    any: list[Condition] = Field(min_length=1)


class NotOf(_Strict):
    not_: Condition = Field(alias="not")


def _condition_tag(raw: Any) -> str | None:
    if isinstance(raw, Compare | AllOf | AnyOf | NotOf):
        return _TAG + {Compare: "fact", AllOf: "all", AnyOf: "any", NotOf: "not"}[type(raw)]
    keys = {"all", "any", "not", "fact"} & set(raw) if isinstance(raw, dict) else set()
    return _TAG + keys.pop() if len(keys) == 1 else None


Condition = Annotated[
    Annotated[AllOf, Tag(_TAG + "all")]
    | Annotated[AnyOf, Tag(_TAG + "any")]
    | Annotated[NotOf, Tag(_TAG + "not")]
    | Annotated[Compare, Tag(_TAG + "fact")],
    Discriminator(
        _condition_tag,
        custom_error_type="condition",
        custom_error_message="a condition is a mapping with exactly one of all, any, not, fact",
    ),
]
for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()


class Criterion(_Strict):
    """One legal criterion (or exclusion) with the condition that decides it."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    source: str = Field(min_length=1)
    summary: str = Field(min_length=1)
    applies_to: list[EntityKind] = Field(min_length=1)
    when: Condition
    # For an exclusion: the criteria (ids, `*` for any text) it sets aside when it holds;
    # none given, all of them. Planned maintenance explains an outage, not a death.
    covers: list[str] | None = Field(default=None, min_length=1)

    def sets_aside(self, criterion: Criterion) -> bool:
        """Whether this exclusion, holding, sets `criterion` aside."""
        return self.covers is None or any(fnmatch.fnmatchcase(criterion.id, p) for p in self.covers)


class CriteriaFile(_Strict):
    criteria: list[Criterion] = []
    exclusions: list[Criterion] = []


@dataclass(frozen=True)
class CriteriaSet:
    """Every criterion and exclusion loaded, with the file:line each came from."""

    criteria: tuple[Criterion, ...]
    exclusions: tuple[Criterion, ...]
    origin: dict[str, str]

    def criteria_for(self, kind: str) -> tuple[Criterion, ...]:
        return tuple(c for c in self.criteria if kind in c.applies_to)

    def exclusions_for(self, kind: str) -> tuple[Criterion, ...]:
        return tuple(c for c in self.exclusions if kind in c.applies_to)


def load_file(path: str | Path) -> tuple[CriteriaFile, yamlload.Located]:
    """One criterion file, validated; any mistake is a ConfigError naming file and line."""
    located = yamlload.load_file(path)
    if not isinstance(located.data, dict):
        raise located.error((), "expected a mapping with `criteria` and/or `exclusions` lists")
    try:
        return CriteriaFile.model_validate(located.data), located
    except ValidationError as exc:
        raise _config_error(located, exc) from exc


def load_directory(directory: str | Path) -> CriteriaSet:
    """Every *.yml file in `directory`, in name order; criterion ids must be unique."""
    files = sorted(Path(directory).glob("*.yml"))
    if not files:
        raise ConfigError("no *.yml criterion files here", path=str(directory))
    criteria: list[Criterion] = []
    exclusions: list[Criterion] = []
    origin: dict[str, str] = {}
    for path in files:
        parsed, located = load_file(path)
        for section, items, into in (
            ("criteria", parsed.criteria, criteria),
            ("exclusions", parsed.exclusions, exclusions),
        ):
            for i, item in enumerate(items):
                where = f"{path}:{located.line_of((section, i, 'id'))}"
                if item.id in origin:
                    msg = f"duplicate criterion id {item.id!r}, first defined at {origin[item.id]}"
                    raise located.error((section, i, "id"), msg)
                origin[item.id] = where
                into.append(item)
        _check_covers(parsed, located)
    _check_covered(criteria, exclusions, origin)
    return CriteriaSet(tuple(criteria), tuple(exclusions), origin)


def _check_covers(parsed: CriteriaFile, located: yamlload.Located) -> None:
    for i, item in enumerate(parsed.criteria):
        if item.covers is not None:
            msg = "covers belongs to exclusions: it names the criteria an exclusion sets aside"
            raise located.error(("criteria", i, "covers"), msg)


def _check_covered(
    criteria: list[Criterion], exclusions: list[Criterion], origin: dict[str, str]
) -> None:
    """Every pattern of an exclusion's `covers` names a criterion: a misspelt one would set
    aside nothing, and the exclusion would decide nothing it was written for."""
    ids = [c.id for c in criteria]
    for exclusion in exclusions:
        for pattern in exclusion.covers or ():
            if not fnmatch.filter(ids, pattern):
                raise ConfigError(
                    f"{origin[exclusion.id]}: exclusion {exclusion.id!r}: covers "
                    f"{pattern!r} names no criterion; give criterion ids, `*` for any text"
                )


def _config_error(located: yamlload.Located, exc: ValidationError) -> ConfigError:
    """The first problem, with its line; a misspelt key comes first, as it explains the rest."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first, *others = [(_yaml_loc(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in errors]
    message = first[1]
    for loc, text in others[:3]:
        message += f"; also line {located.line_of(loc)}: {'.'.join(map(str, loc))}: {text}"
    return located.error(first[0], message)


def _yaml_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """A pydantic error location as a YAML key path: without the discriminator tags."""
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith(_TAG)))
