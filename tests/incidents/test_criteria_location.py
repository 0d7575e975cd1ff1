"""Where the significance criteria come from: the configuration, else the checkout's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from nis2triage.errors import ConfigError
from nis2triage.incidents.desk import SHIPPED_CRITERIA, load_criteria

from .conftest import agent_config


def test_without_a_configured_folder_the_checkouts_criteria_are_loaded() -> None:
    loaded = load_criteria(agent_config("x"))

    assert Path(__file__).resolve().parents[2] / "rules" / "nis2" == SHIPPED_CRITERIA
    assert "art23-severe-disruption" in {c.id for c in loaded.criteria}


def test_an_installation_without_them_names_the_key_to_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"set incidents.criteria to the rules/nis2 folder"):
        load_criteria(agent_config("x"), tmp_path / "missing")


def test_a_configured_folder_wins_over_the_shipped_one(tmp_path: Path) -> None:
    cfg = agent_config("x", criteria=str(tmp_path))

    with pytest.raises(ConfigError, match=r"no \*\.yml criterion files here"):
        load_criteria(cfg, SHIPPED_CRITERIA)
