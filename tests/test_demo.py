"""What `nis2triage demo` leaves for the next steps: its keys, its configuration."""

from __future__ import annotations

import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from nis2triage import demo
from nis2triage.config import load_config
from nis2triage.errors import ConfigError
from nis2triage.lease import Lease
from nis2triage.rulerunner import load_native
from nis2triage.rules.loader import load_rules
from nis2triage.store import Store

from support import REPO


def test_the_demo_keys_are_made_once_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "demo-keys.env"

    first = demo.demo_keys(path)
    again = demo.demo_keys(path)

    assert first == again
    assert set(first) == {"NIS2TRIAGE_SNAPSHOT_KEY", "NIS2TRIAGE_PSEUDONYM_KEY"}
    assert all(len(v) == 64 for v in first.values())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("export NIS2TRIAGE_SNAPSHOT_KEY=")


def test_the_local_configuration_names_the_nodes_real_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "nis2triage.yml"
    shipped.write_text("elasticsearch:\n  hosts: [http://127.0.0.1:9200]\nother: 1\n")
    monkeypatch.setattr(demo, "DEMO_CONFIG", shipped)

    local = demo.write_local_config("http://127.0.0.1:45059")

    assert local == tmp_path / "local.yml"
    assert "hosts: [http://127.0.0.1:45059]" in local.read_text()
    assert "9200" not in local.read_text() and "other: 1" in local.read_text()


def test_the_demo_outside_a_checkout_says_to_use_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "DEMO_CONFIG", tmp_path / "deploy" / "demo" / "nis2triage.yml")

    with pytest.raises(ConfigError, match=r"runs from a checkout .* run `make demo`"):
        demo.check_checkout()


def test_the_next_steps_name_a_command_this_shell_can_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    venv_bin = Path(sys.executable).parent
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    outside = demo._command()
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")

    assert Path(outside).resolve() == (venv_bin / "nis2triage").resolve()
    assert demo._command() == "nis2triage"


def demo_like_config(folder: Path, index_name: str, extra: str = "") -> Path:
    """A configuration as the demo's, over `index_name` and its own state prefix."""
    config = folder / "nis2triage.yml"
    config.write_text(
        "elasticsearch: {hosts: ['http://127.0.0.1:9200']}\n"
        "entity: {legal_name: Demo NV, enterprise_number: '0999.999.922', sector: transport,"
        " entity_class: essential}\n"
        f"sources: [{{name: auth, indices: [{index_name}]}}]\n"
        f"state: {{index_prefix: {index_name}-st}}\n" + extra
    )
    return config


@pytest.mark.parametrize(
    ("report_dir", "kept"), [("reports", False), ("../elsewhere", True), (".", True)]
)
def test_a_demo_run_deletes_its_own_report_files_only(
    es: Elasticsearch, index_name: str, tmp_path: Path, report_dir: str, kept: bool
) -> None:
    own = tmp_path / "demo"
    own.mkdir()
    config = demo_like_config(own, index_name, f"incidents: {{report_dir: '{report_dir}'}}\n")
    old = (own / report_dir).resolve() / "incident-1" / "early_warning.md"
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_text("an earlier run's report\n")

    demo.reset_state(es, load_config(config), own=own)

    assert old.exists() is kept
    assert config.exists()


def test_the_demos_rule_reads_only_the_demos_own_index() -> None:
    # Over the shipped rule's `logs-*,filebeat-*`, a second `make demo` on a node where a
    # new user had indexed SSH logins of their own printed "20 alerts from 638 events
    # read": the 20th was theirs, not the demo log's (new-user run).
    cfg = load_config(demo.DEMO_CONFIG)

    indices = {rule.index for rule in load_native(cfg)}

    assert indices == {",".join(cfg.sources[0].indices)}


def test_the_demos_rule_is_the_shipped_one_but_for_its_index() -> None:
    [ours] = load_native(load_config(demo.DEMO_CONFIG))
    [shipped] = load_rules([REPO / "rules" / "detection" / "ssh-brute-force.yml"])

    assert ours.model_dump(exclude={"index"}) == shipped.model_dump(exclude={"index"})


def test_a_demo_run_leaves_the_indices_of_a_running_agent_alone(
    es: Elasticsearch, index_name: str, tmp_path: Path
) -> None:
    # `make demo` deleted and made again the indices of an agent running on the demo's
    # configuration, which carried on from the demo's new checkpoint (new-user run).
    config = demo_like_config(tmp_path, index_name)
    store = Store(es, f"{index_name}-st")
    store.ensure_indices()
    lease = Lease(store, timedelta(minutes=2), lambda: datetime.now(UTC), pid=4242)
    assert lease.hold() is None

    with pytest.raises(ConfigError, match=r"process 4242 on .* holds the lease of "):
        demo.reset_state(es, load_config(config), own=tmp_path)
    assert es.indices.exists(index=f"{index_name}-st-state")

    lease.release()
    demo.reset_state(es, load_config(config), own=tmp_path)
    assert not es.indices.exists(index=f"{index_name}-st-state")
