"""One agent per state prefix: the lease document, on the real node."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from nis2triage import cli, esclient
from nis2triage.agent import Agent, lease_ttl
from nis2triage.config import SmtpConfig, load_config
from nis2triage.errors import LeaseLost
from nis2triage.lease import LEASE_ID, Lease
from nis2triage.store import Store

from support import write_agent_config

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=2)


@pytest.fixture
def store(es: Elasticsearch, index_name: str) -> Store:
    store = Store(es, index_name)
    store.ensure_indices()
    return store


def lease(store: Store, host: str, at: datetime = T0, pid: int = 4242) -> Lease:
    return Lease(store, TTL, lambda: at, host=host, pid=pid)


def gone_pid() -> int:
    """The pid of a process that has exited."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def test_the_first_agent_holds_and_a_second_host_waits(store: Store) -> None:
    first, second = lease(store, "siem-a"), lease(store, "siem-b")

    assert first.hold() is None
    holder = second.hold()

    assert holder is not None and (holder.host, holder.pid) == ("siem-a", 4242)
    assert first.hold() is None  # renewing its own
    assert (first.held, second.held) == (True, False)


def test_a_released_lease_is_taken_at_once(store: Store) -> None:
    first, second = lease(store, "siem-a"), lease(store, "siem-b")
    first.hold()

    first.release()

    assert second.hold() is None
    assert store.get("state", LEASE_ID)["host"] == "siem-b"  # type: ignore[index]


def test_an_expired_lease_is_taken_over(store: Store) -> None:
    lease(store, "siem-a").hold()
    late = lease(store, "siem-b", at=T0 + TTL + timedelta(seconds=1))
    early = lease(store, "siem-c", at=T0 + TTL - timedelta(seconds=1))

    assert early.hold() is not None
    assert late.hold() is None


def test_on_the_same_host_a_crashed_holder_is_replaced_but_a_live_one_is_not(
    store: Store,
) -> None:
    lease(store, "siem-a", pid=1).hold()  # pid 1 is alive
    assert lease(store, "siem-a", pid=7).hold() is not None
    # Containers sharing a host name each run the agent as pid 1: same pid, not the same.
    assert lease(store, "siem-a", pid=1).hold() is not None

    store.es.delete(index=store.index("state"), id=LEASE_ID, refresh=True)
    lease(store, "siem-a", pid=gone_pid()).hold()  # then that process crashed

    assert lease(store, "siem-a", pid=7).hold() is None


def test_an_unreadable_lease_document_is_taken_over(store: Store) -> None:
    store.put("state", LEASE_ID, {"kind": "lease", "host": "x"}, refresh=True)
    assert lease(store, "siem-b").hold() is None


def test_a_lease_expiry_written_without_a_zone_is_read_as_utc(store: Store) -> None:
    # Compared as it was with the aware clock, it failed every start with a TypeError.
    at = {"kind": "lease", "host": "siem-a", "pid": 1, "run": "r"}
    store.put("state", LEASE_ID, {**at, "expires": "2026-12-04T11:00:00"}, refresh=True)

    assert lease(store, "siem-b").hold() is None


@pytest.fixture
def config(
    tmp_path: Path, es_settings: esclient.ESSettings, index_name: str, agent_env: None
) -> Path:
    return write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")


@pytest.fixture
def agent(es: Elasticsearch, config: Path) -> Agent:
    """A started agent on the configuration's prefix, not yet holding the lease."""
    agent = Agent(load_config(config), es, b"k" * 32, b"p" * 32)
    agent.start()
    return agent


def take_over(agent: Agent) -> None:
    """Another host takes the agent's lease, to which it looks expired."""
    taker = Lease(
        agent.store, TTL, lambda: datetime.now(UTC) + 2 * TTL, host="another-host", pid=4242
    )
    assert taker.hold() is None


def other_agent_holds(es: Elasticsearch, config: Path) -> Lease:
    store = Store(es, load_config(config).state.index_prefix)
    store.ensure_indices()
    other = Lease(store, TTL, lambda: datetime.now(UTC), host="another-host", pid=4242)
    assert other.hold() is None
    return other


def test_run_once_refuses_while_another_agent_holds_the_prefix(
    es: Elasticsearch, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = other_agent_holds(es, config)

    assert cli.main(["run", "-c", str(config), "--once"]) == 1
    assert "another agent runs on the state prefix" in capsys.readouterr().err

    other.release()
    assert cli.main(["run", "-c", str(config), "--once"]) == 0


def test_a_standby_agent_takes_over_when_the_holder_releases(
    es: Elasticsearch, config: Path, agent: Agent
) -> None:
    other = other_agent_holds(es, config)

    assert agent._lead() is False
    other.release()

    assert agent._lead() is True
    assert agent.resume is True  # it reads the state the other agent saved first


def test_an_agent_whose_lease_was_taken_stops_at_its_next_checkpoint(agent: Agent) -> None:
    assert agent._lead() is True
    take_over(agent)

    with pytest.raises(LeaseLost, match="another agent took over"):
        agent._keep_lease()


def test_a_holder_in_another_pid_namespace_is_waited_for_even_if_its_pid_looks_gone(
    store: Store,
) -> None:
    holder = lease(store, "siem-a", pid=gone_pid())
    holder.pid_namespace = "pid:[1]"  # another container on the same host
    holder.hold()

    assert lease(store, "siem-a", pid=7).hold() is not None


def test_a_holder_on_another_machine_of_the_same_name_is_waited_for(store: Store) -> None:
    # A cloned VM: same host name, and every host's initial pid namespace has one number;
    # only the running kernel's boot id tells the two machines apart.
    holder = lease(store, "siem-a", pid=gone_pid())
    holder.boot_id = "another-kernel"
    holder.hold()

    assert lease(store, "siem-a", pid=7).hold() is not None


def test_run_once_keeps_its_lease_checked_and_stops_when_it_is_taken(agent: Agent) -> None:
    assert agent.hold_for_one_pass() is None
    take_over(agent)

    with pytest.raises(LeaseLost):
        agent._keep_lease()
    assert agent.outbox.may_send() is False


def test_the_lease_outlasts_four_e_mail_deadlines_when_they_are_the_longest(
    config: Path,
) -> None:
    cfg = load_config(config)
    smtp = SmtpConfig(host="127.0.0.1", sender="a@b.be", recipients=["c@d.be"])
    incidents = cfg.incidents.model_copy(
        update={"smtp": smtp.model_copy(update={"deadline": timedelta(minutes=5)})}
    )

    assert lease_ttl(cfg.model_copy(update={"incidents": incidents})) == timedelta(minutes=20)


def test_a_standby_says_so_once_not_every_poll(
    es: Elasticsearch, config: Path, agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    other_agent_holds(es, config)

    with caplog.at_level("WARNING", logger="nis2triage.agent"):
        assert [agent._lead() for _ in range(3)] == [False, False, False]

    said = [r for r in caplog.records if r.name == "nis2triage.agent"]
    assert [(r.levelname, r.getMessage().startswith("standby")) for r in said] == [
        ("WARNING", True)
    ]


def test_a_holder_that_lost_the_lease_neither_saves_nor_sends(agent: Agent) -> None:
    assert agent._lead() is True
    state_before = agent.store.get("state", "source-auth")
    take_over(agent)

    with pytest.raises(LeaseLost):
        agent._save(agent.runs[0])
    assert agent.store.get("state", "source-auth") == state_before
    assert agent.outbox.may_send() is False


def test_a_lease_taken_back_after_another_run_held_it_is_a_take_not_a_renewal(
    store: Store,
) -> None:
    first, second = lease(store, "siem-a"), lease(store, "siem-b")
    first.hold()
    renewed = (first.hold(), first.taken)
    siem_b_later = lease(store, "siem-b", at=T0 + 2 * TTL)
    siem_b_later.hold()  # siem-b took it while siem-a was frozen, then let it go
    siem_b_later.release()

    assert renewed == (None, False)
    assert (first.hold(), first.held, first.taken) == (None, True, True)
    assert second.hold() is not None and second.taken is False


def test_an_agent_that_takes_its_lease_back_reads_the_state_again(
    es: Elasticsearch, config: Path, agent: Agent
) -> None:
    # Frozen (SIGSTOP) past the expiry: another agent held the lease, saved, and released.
    assert agent._lead() is True
    agent.resume = False
    taker = Lease(agent.store, TTL, lambda: datetime.now(UTC) + 2 * TTL, host="another-host",
                  pid=4242)  # fmt: skip
    assert taker.hold() is None
    taker.release()

    assert agent._lead() is True
    assert agent.resume is True  # restored before its next pass
    assert agent.lease.taken is True


def test_run_once_reads_the_state_under_its_lease(agent: Agent) -> None:
    restored: list[bool] = []
    agent.restore_all = lambda: restored.append(agent.lease.held)  # type: ignore[method-assign]

    assert agent.hold_for_one_pass() is None

    assert restored == [True]


def test_a_holder_frozen_between_its_lease_check_and_its_save_leaves_the_new_holders_state(
    es: Elasticsearch, config: Path, agent: Agent
) -> None:
    # SIGSTOP (or a long pause) right after the lease check passed: another agent takes the
    # expired lease and saves; the holder, resumed, must not write its older state over it.
    assert agent._lead() is True
    agent._save(agent.runs[0])
    newer = Agent(load_config(config), es, b"k" * 32, b"p" * 32)
    newer.start()
    newer.lease.host, newer.lease.clock = "another-host", lambda: datetime.now(UTC) + 2 * TTL
    saved_by_newer: list[dict[str, object] | None] = []
    check_lease = agent.states.keep_lease

    def frozen_after_the_check() -> None:
        check_lease()
        assert newer._lead() is True
        newer.restore_all()
        newer._save(newer.runs[0])
        saved_by_newer.append(agent.store.get("state", "source-auth"))

    agent.states.keep_lease = frozen_after_the_check

    with pytest.raises(LeaseLost, match="source-auth"):
        agent._save(agent.runs[0])
    assert agent.store.get("state", "source-auth") == saved_by_newer[0]


def test_a_lease_that_cannot_read_the_boot_id_says_a_restart_will_wait(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As under systemd's ProcSubset=pid, which hides /proc/sys.
    monkeypatch.setattr("nis2triage.lease.BOOT_ID_PATH", "/proc/sys/no-such/boot_id")

    with caplog.at_level("WARNING", logger="nis2triage.lease"):
        lease(store, "siem-a")

    said = [r.getMessage() for r in caplog.records if r.name == "nis2triage.lease"]
    assert len(said) == 1
    assert "/proc/sys/no-such/boot_id" in said[0] and "ProcSubset=pid" in said[0]
    assert "waits for the lease to expire (0:02:00)" in said[0]


def test_a_lease_written_by_a_clock_days_ahead_is_taken_once_unrenewed_for_its_ttl(
    store: Store,
) -> None:
    # A holder whose hardware clock was two days ahead after a reboot wrote its lease, then
    # died before NTP set it right: by the expiry it wrote, another host waited two days.
    lease(store, "siem-a", at=T0 + timedelta(days=2)).hold()
    watched = [0.0]
    standby = Lease(store, TTL, lambda: T0, host="siem-b", pid=4242, elapsed=lambda: watched[0])

    first_look = standby.hold()
    watched[0] = TTL.total_seconds() - 1
    before_its_ttl = standby.hold()
    watched[0] = TTL.total_seconds()

    assert first_look is not None and before_its_ttl is not None
    assert standby.hold() is None
    assert store.get("state", LEASE_ID)["host"] == "siem-b"  # type: ignore[index]


def test_a_lease_renewed_meanwhile_is_watched_afresh(store: Store) -> None:
    ahead = lease(store, "siem-a", at=T0 + timedelta(days=2))
    ahead.hold()
    watched = [0.0]
    standby = Lease(store, TTL, lambda: T0, host="siem-b", pid=4242, elapsed=lambda: watched[0])
    standby.hold()
    watched[0] = TTL.total_seconds() - 1
    ahead.hold()  # still alive: renewed
    standby.hold()
    watched[0] = TTL.total_seconds() + 1

    assert standby.hold() is not None
