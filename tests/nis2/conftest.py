"""Shared fixtures for the NIS2 logic tests: the shipped criteria and entities of each type."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nis2triage.nis2.criteria import CriteriaSet, load_directory
from nis2triage.nis2.entity import Entity

RULES = Path(__file__).resolve().parents[2] / "rules" / "nis2"

MakeEntity = Callable[..., Entity]


@pytest.fixture(scope="session")
def criteria() -> CriteriaSet:
    return load_directory(RULES)


@pytest.fixture
def make_entity() -> MakeEntity:
    """make_entity(kind, turnover=...): an entity of IR type `kind` (None: a sector without one)."""

    def make(kind: str | None, turnover: float | None = 20_000_000) -> Entity:
        return Entity(
            legal_name="Voorbeeld NV",
            enterprise_number="0403.019.261",
            sector="digital infrastructure" if kind else "health",
            entity_class="essential",
            ir_type=kind,
            annual_turnover_eur=turnover,
        )

    return make
