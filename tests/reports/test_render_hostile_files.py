"""Report files from the break run: a payload that cannot render is refused for good, and
the report folder is never a symbolic link nor left open by the umask."""

from __future__ import annotations

import os
import shlex
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nis2triage.errors import ConfigError
from nis2triage.notify.channel import Rejected
from nis2triage.notify.manual import ManualChannel
from nis2triage.reports import render as render_module
from nis2triage.reports.render import OWNER_FILE, RenderError, ReportFolderError, claim, write

from report_sample import sample_payload


def test_a_report_that_cannot_render_is_rejected_by_the_manual_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> bytes:
        raise ValueError("The row with index 3 is too high")

    monkeypatch.setattr(render_module, "pdf", broken)
    raised: list[Any] = []
    soc = SimpleNamespace(store=None, raise_once=lambda *a, **k: raised.append(a))
    channel = ManualChannel(tmp_path, soc, "nis2triage")  # type: ignore[arg-type]

    outcome = channel.send("key", sample_payload("final_report", False), datetime.now(UTC))

    assert isinstance(outcome, Rejected)
    assert "the final report cannot be rendered" in outcome.reason
    assert "ValueError: The row with index 3 is too high" in outcome.reason
    assert "submit the report by hand" in outcome.reason
    assert raised == []
    with pytest.raises(RenderError, match="final report cannot be rendered"):
        write(tmp_path, sample_payload("final_report", False), "i1")


def test_a_report_folder_that_is_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "i1").symlink_to(target)

    with pytest.raises(ReportFolderError, match="is a symbolic link"):
        write(tmp_path / "reports", sample_payload("early_warning"), "i1")

    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert list(target.iterdir()) == []


def test_the_manual_channel_rejects_a_symbolic_link_for_a_folder(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "i1").symlink_to(tmp_path / "elsewhere")
    soc = SimpleNamespace(store=None, raise_once=lambda *a, **k: None)

    payload = sample_payload("early_warning", False) | {"incident_id": "i1"}
    outcome = ManualChannel(tmp_path, soc, "nis2triage").send("k", payload, datetime.now(UTC))  # type: ignore[arg-type]

    assert isinstance(outcome, Rejected)
    assert "symbolic link" in outcome.reason


def test_folders_made_for_reports_are_0750_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        written = write(tmp_path / "a" / "b", sample_payload("early_warning"), "i1")
    finally:
        os.umask(old)

    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "a", tmp_path / "a" / "b")}
    assert set(modes.values()) == {0o750}
    assert stat.S_IMODE((tmp_path / "a" / "b" / "i1").stat().st_mode) == 0o750
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o640}


def test_an_existing_parent_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)

    write(tmp_path, sample_payload("early_warning"), "i1")

    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_a_report_folder_holds_the_reports_of_one_index_prefix(tmp_path: Path) -> None:
    # Production and staging agents make the same incident ids from the same alerts: in
    # one folder, staging's files would replace production's.
    claim(tmp_path / "reports", "nis2triage")
    claim(tmp_path / "reports", "nis2triage")  # the same agent again: nothing to say

    with pytest.raises(ReportFolderError) as refused:
        claim(tmp_path / "reports", "staging")

    said = str(refused.value)
    assert "index prefix 'nis2triage'" in said and "'staging'" in said
    assert "incidents.report_dir" in said
    marker = tmp_path / "reports" / OWNER_FILE
    assert marker.read_text() == "nis2triage\n"
    assert stat.S_IMODE(marker.stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "reports").stat().st_mode) == 0o750


def test_the_manual_channel_of_a_second_prefix_is_refused_at_start(tmp_path: Path) -> None:
    soc = SimpleNamespace(store=None, raise_once=lambda *a, **k: None)
    ManualChannel(tmp_path, soc, "nis2triage")  # type: ignore[arg-type]

    with pytest.raises(ConfigError, match=r"holds the reports of the agent with index prefix"):
        ManualChannel(tmp_path, soc, "staging")  # type: ignore[arg-type]

    assert (tmp_path / OWNER_FILE).read_text() == "nis2triage\n"


def test_a_report_folder_claimed_after_start_rejects_the_report(tmp_path: Path) -> None:
    soc = SimpleNamespace(store=None, raise_once=lambda *a, **k: None)
    channel = ManualChannel(tmp_path / "reports", soc, "nis2triage")  # type: ignore[arg-type]
    # Removed by hand, then taken by another agent while this one runs.
    (tmp_path / "reports" / OWNER_FILE).unlink()
    claim(tmp_path / "reports", "staging")

    payload = sample_payload("early_warning", False) | {"incident_id": "i1"}
    outcome = channel.send("k", payload, datetime.now(UTC))

    assert isinstance(outcome, Rejected)
    assert "index prefix 'staging'" in outcome.reason
    assert not (tmp_path / "reports" / "i1").exists()


def test_an_owner_marker_that_is_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("nis2triage\n")
    (tmp_path / OWNER_FILE).symlink_to(tmp_path / "elsewhere")

    with pytest.raises(ReportFolderError, match="is a symbolic link"):
        claim(tmp_path, "nis2triage")


def test_the_manual_channel_names_the_configuration_file_in_its_command(tmp_path: Path) -> None:
    # It said `-c <configuration file>`, for the person to find and fill in.
    raised: list[str] = []
    soc = SimpleNamespace(store=None, raise_once=lambda *a, **k: raised.append(a[3]))
    config = "/etc/nis2 triage/agent.yml"
    channel = ManualChannel(tmp_path, soc, "nis2triage", shlex.quote(config))  # type: ignore[arg-type]

    payload = sample_payload("early_warning", False) | {"incident_id": "i1"}
    channel.send("k", payload, datetime.now(UTC))

    [message] = raised
    assert "incidents submitted i1 -c '/etc/nis2 triage/agent.yml' --stage" in message


def test_an_owner_marker_that_is_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    # Opened for reading, a FIFO waits for a writer: the agent hung at start, before its
    # first log line, and `incidents report` with it.
    os.mkfifo(tmp_path / OWNER_FILE)
    said: list[BaseException] = []

    def claiming() -> None:
        try:
            claim(tmp_path, "nis2triage")
        except BaseException as exc:
            said.append(exc)

    worker = threading.Thread(target=claiming, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # let the waiting open go, so the thread ends
        os.close(os.open(tmp_path / OWNER_FILE, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail("claim waited on a FIFO for a marker")

    assert len(said) == 1 and isinstance(said[0], ReportFolderError)
    assert "is not a plain file" in str(said[0]) and str(tmp_path / OWNER_FILE) in str(said[0])


def test_an_owner_marker_that_is_a_directory_refuses_the_agent_at_start(tmp_path: Path) -> None:
    (tmp_path / OWNER_FILE).mkdir()
    soc = SimpleNamespace(store=None, raise_once=lambda *a, **k: None)

    with pytest.raises(
        ConfigError, match=r"\.nis2triage-prefix is not a plain file \(a directory\)"
    ):
        ManualChannel(tmp_path, soc, "nis2triage")  # type: ignore[arg-type]


def test_two_agents_of_one_pid_claiming_at_once_leave_one_whole_marker(tmp_path: Path) -> None:
    # Agents in two containers are each PID 1: production's and staging's, started
    # together on one shared report volume, wrote the same .part file (here, two threads
    # of one process). The marker then read 'staging\non', which both refuse for ever.
    said: dict[str, str] = {}

    def claiming(folder: Path, prefix: str, start: threading.Barrier) -> None:
        start.wait()
        try:
            claim(folder, prefix)
            said[prefix] = "claimed"
        except ReportFolderError:
            said[prefix] = "refused"
        except OSError as exc:
            said[prefix] = type(exc).__name__

    for n in range(100):
        folder, start = tmp_path / str(n), threading.Barrier(2)
        agents = [
            threading.Thread(target=claiming, args=(folder, prefix, start))
            for prefix in ("production", "staging")
        ]
        for agent in agents:
            agent.start()
        for agent in agents:
            agent.join()

        winner = (folder / OWNER_FILE).read_text()
        assert winner in ("production\n", "staging\n"), n
        assert sorted(said.values()) == ["claimed", "refused"], (n, said)
        assert said[winner.strip()] == "claimed"
        assert [p.name for p in folder.iterdir()] == [OWNER_FILE]


@pytest.mark.parametrize("written", [b"", b" \n"])
def test_an_empty_owner_marker_is_said_as_empty(tmp_path: Path, written: bytes) -> None:
    # What a crash can leave of a marker not yet on disk, or `touch`: it names no agent,
    # and was said as the folder of an agent with prefix '' needing a folder of its own.
    (tmp_path / OWNER_FILE).write_bytes(written)

    with pytest.raises(ReportFolderError) as refused:
        claim(tmp_path, "nis2triage")

    said = str(refused.value)
    assert f"{tmp_path / OWNER_FILE} is empty" in said
    assert "prefix ''" not in said and "remove it" in said


def test_two_writers_of_one_report_file_never_leave_it_mixed(tmp_path: Path) -> None:
    # The agent's manual channel and `incidents report` write the same report's files
    # when the agent takes the entry the command just queued: both wrote one .part file,
    # and the file the SOC is told to submit held the start of one PDF and the end of the
    # other, while the writer whose rename came first said it was written.
    first, second = b"A" * 3_000_000, b"B" * 1_000_000
    for n in range(30):
        folder = tmp_path / str(n)
        folder.mkdir()

        said = _written_at_once(folder, "r.pdf", [first, second])

        assert said == ["written", "written"], n
        assert (folder / "r.pdf").read_bytes() in (first, second), n
        assert [p.name for p in folder.iterdir()] == ["r.pdf"], n


def _written_at_once(folder: Path, filename: str, datas: list[bytes]) -> list[str]:
    """What each of as many writers of `filename` as `datas`, started together, said."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    start, said = threading.Barrier(len(datas)), []

    def writing(data: bytes) -> None:
        start.wait()
        try:
            render_module._write_file(fd, filename, data)
            said.append("written")
        except OSError as exc:
            said.append(type(exc).__name__)

    writers = [threading.Thread(target=writing, args=(data,)) for data in datas]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    os.close(fd)
    return said
