"""Criterion files: the shipped set is complete, and a wrong file names its file and line."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from nis2triage.errors import ConfigError
from nis2triage.nis2.criteria import CriteriaSet, EntityKind, load_directory, load_file

GOOD = """\
criteria:
  - id: outage
    source: IR Art. 7(a)
    summary: down too long
    applies_to: [cloud]
    when:
      all:
        - {fact: unavailability_minutes, op: gt, value: 30}
        - {fact: planned_maintenance, op: eq, value: false}
"""


def test_shipped_criteria_cover_every_entity_kind(criteria: CriteriaSet) -> None:
    kinds = typing.get_args(EntityKind)

    uncovered = [k for k in kinds if not criteria.criteria_for(k)]
    unexcluded = [k for k in kinds if not criteria.exclusions_for(k)]

    assert (len(kinds), uncovered, unexcluded) == (12, [], [])


def test_shipped_criteria_cite_an_article(criteria: CriteriaSet) -> None:
    uncited = [c.id for c in criteria.criteria if not c.source.startswith(("IR Art.", "NIS2 Art."))]

    assert (len(criteria.criteria), uncited) == (48, [])


def test_a_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "good.yml"
    path.write_text(GOOD)

    parsed, _ = load_file(path)

    assert [(c.id, c.applies_to) for c in parsed.criteria] == [("outage", ["cloud"])]


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        pytest.param("gt, value: 30}", "gt: 30, value: 30}", 8, "not valid YAML", id="bad-yaml"),
        pytest.param("op: gt", "op: greater", 8, "Input should be 'gt', 'ge'", id="unknown-op"),
        pytest.param(
            "fact: unavailability_minutes",
            "fact: downtime",
            8,
            "unknown fact 'downtime'; known: annual_turnover_eur, ",
            id="unknown-fact",
        ),
        pytest.param(
            "fact: unavailability_minutes",
            "fact: unavailable_minutes",
            8,
            "did you mean 'unavailability_minutes'",
            id="misspelt-fact",
        ),
        pytest.param(
            "value: 30", "value: thirty", 8, "a number, not 'thirty'", id="text-for-number"
        ),
        pytest.param("value: 30", "value: true", 8, "a number, not True", id="flag-for-number"),
        pytest.param(
            "value: false", "value: 0", 9, "compare it with true or false", id="number-for-flag"
        ),
        pytest.param(
            "op: eq, value: false", "op: gt, value: false", 9, "use op eq or ne", id="order-on-flag"
        ),
        pytest.param("[cloud]", "[clouds]", 5, "Input should be 'dns'", id="unknown-entity-type"),
        pytest.param(
            "      all:",
            "      every:",
            6,
            "exactly one of all, any, not, fact",
            id="unknown-combinator",
        ),
        pytest.param(
            "    summary: down too long\n", "", 2, "summary: Field required", id="missing-summary"
        ),
        pytest.param(
            "    source:",
            "    sauce:",
            3,
            "not permitted; also line 2: criteria.0.source: Field required",
            id="misspelt-key",
        ),
        pytest.param("id: outage", "id: Outage!", 2, "should match pattern", id="bad-id"),
    ],
)
def test_a_broken_file_names_file_and_line(
    tmp_path: Path, old: str, new: str, line: int, message: str
) -> None:
    assert old in GOOD
    path = tmp_path / "broken.yml"
    path.write_text(GOOD.replace(old, new))

    with pytest.raises(ConfigError, match=message) as caught:
        load_file(path)

    assert (caught.value.path, caught.value.line) == (str(path), line)


def test_times_must_name_a_numeric_fact(tmp_path: Path) -> None:
    path = tmp_path / "times.yml"
    path.write_text(GOOD.replace("value: 30}", "value: 30, times: full_outage}"))

    with pytest.raises(ConfigError, match="times needs a numeric fact") as caught:
        load_file(path)

    assert caught.value.line == 8


def test_duplicate_id_across_files_names_the_second(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(GOOD)
    (tmp_path / "b.yml").write_text("# again\n" + GOOD)

    with pytest.raises(ConfigError, match=r"duplicate criterion id 'outage', first .*a\.yml:2"):
        load_directory(tmp_path)


def test_a_directory_without_criteria_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no \*\.yml criterion files"):
        load_directory(tmp_path)


def test_a_list_at_the_top_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yml"
    path.write_text("- id: outage\n")

    with pytest.raises(ConfigError, match="expected a mapping"):
        load_file(path)
