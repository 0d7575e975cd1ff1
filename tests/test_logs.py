"""Log lines: ECS JSON off a terminal, rich on one, and never a registered secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rich.logging import RichHandler

from nis2triage import logs


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of our own, so the test harness's handlers see nothing of this."""
    log = logging.getLogger("nis2triage.test-logs")
    log.propagate = False
    yield log
    log.handlers.clear()


def capture(log: logging.Logger, stream: io.StringIO) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.EcsFormatter())
    handler.addFilter(logs.RedactingFilter())
    log.addHandler(handler)


def test_a_record_becomes_one_ecs_json_line(logger: logging.Logger) -> None:
    out = io.StringIO()
    capture(logger, out)

    logger.warning("source %s waits for %s", "auth", "logs-*")
    [line] = out.getvalue().splitlines()
    doc = json.loads(line)

    assert doc["message"] == "source auth waits for logs-*"
    assert (doc["log.level"], doc["log"]["logger"]) == ("warning", "nis2triage.test-logs")
    assert doc["ecs.version"] == logs.ECS_VERSION
    assert doc["@timestamp"].endswith("Z")


def test_an_exception_fills_the_error_fields(logger: logging.Logger) -> None:
    out = io.StringIO()
    capture(logger, out)

    try:
        raise KeyError("cursor")
    except KeyError:
        logger.exception("state unreadable")
    doc = json.loads(out.getvalue())

    assert doc["error"]["type"] == "KeyError"
    assert doc["error"]["message"] == "'cursor'"
    assert 'raise KeyError("cursor")' in doc["error"]["stack_trace"]


def test_a_registered_secret_is_replaced_in_message_and_error(logger: logging.Logger) -> None:
    out = io.StringIO()
    capture(logger, out)
    logs.register_secret("hunter2-hunter2")

    try:
        raise ValueError("bad token hunter2-hunter2")
    except ValueError:
        logger.exception("login with %s failed", "hunter2-hunter2")

    assert "hunter2-hunter2" not in out.getvalue()
    assert out.getvalue().count(logs.REDACTED) >= 3


def test_short_values_are_not_registered_as_secrets() -> None:
    logs.register_secret("abc")

    assert logs.redact("abc def") == "abc def"


@pytest.mark.parametrize(
    ("stream", "handler_type"),
    [(io.StringIO(), logging.StreamHandler), (Terminal(), RichHandler)],
    ids=["pipe", "terminal"],
)
def test_configure_picks_the_handler_by_whether_stderr_is_a_terminal(
    stream: io.StringIO, handler_type: type[logging.Handler]
) -> None:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        logs.configure(stream=stream)
        [ours] = [h for h in root.handlers if h not in before]
        assert type(ours) is handler_type
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(level)


def test_terminal_log_times_are_iso_8601_in_utc() -> None:
    brussels_winter = timezone(timedelta(hours=1))

    shown = logs._utc_time(datetime(2026, 12, 5, 5, 33, 7, tzinfo=brussels_winter))

    assert shown.plain == "2026-12-05 04:33:07Z"


def test_a_secret_is_replaced_as_an_error_message_escapes_it() -> None:
    logs.register_secret("ccb-token-S3CRET\n")

    said = logs.redact(
        "Invalid header value b'Bearer ccb-token-S3CRET\\n' and 'ccb-token-S3CRET\\n'"
    )

    assert "S3CRET" not in said and said.count(logs.REDACTED) == 2


@pytest.mark.parametrize(("for_people", "json_lines"), [(True, False), (False, True)])
def test_the_demo_logs_plain_lines_into_a_file_and_the_agent_json(
    for_people: bool, json_lines: bool
) -> None:
    root, stream = logging.getLogger(), io.StringIO()
    before, level = list(root.handlers), root.level
    try:
        logs.configure(stream=stream, for_people=for_people)
        logging.getLogger("nis2triage.store").info("created index %s", "x-alerts")
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(level)

    line = stream.getvalue().rstrip("\n")
    assert line.startswith("{") is json_lines
    if not json_lines:
        assert line.endswith(" info nis2triage.store: created index x-alerts")


def test_only_the_demo_command_asks_for_plain_lines() -> None:
    from nis2triage.cli import build_parser

    parser = build_parser()

    assert parser.parse_args(["demo"]).for_people is True
    assert getattr(parser.parse_args(["run", "-c", "x.yml"]), "for_people", False) is False


@pytest.mark.parametrize("for_people", [True, False])
def test_control_sequences_from_outside_reach_no_terminal_or_file(for_people: bool) -> None:
    # An endpoint's refusal, a document's value: quoted in a line, an escape sequence in
    # it would retitle or clear the operator's terminal, or hide what came before it.
    root, stream = logging.getLogger(), Terminal() if for_people else io.StringIO()
    before, level = list(root.handlers), root.level
    hostile = "HTTP 400: \x1b]0;owned\x07\x1b[2Jgone\rfake line\x9b31m"
    try:
        logs.configure(stream=stream, for_people=for_people)
        logging.getLogger("nis2triage.notify.outbox").warning("rejected: %s", hostile)
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(level)

    out = stream.getvalue()
    for raw in ("\x1b]0;owned", "\x07", "\x1b[2J", "\rfake", "\x9b"):
        assert raw not in out
    if for_people:  # rich colours parts of the line: the written-out characters are there
        assert [out.count(c) for c in ("\\x1b", "\\x07", "\\x0d", "\\x9b")] == [2, 1, 1, 1]
    else:
        said = json.loads(out)["message"]
        assert said == "rejected: HTTP 400: \\x1b]0;owned\\x07\\x1b[2Jgone\\x0dfake line\\x9b31m"


@pytest.mark.parametrize(("command", "json_line"), [("run", True), ("status", False)])
def test_the_error_that_ends_run_is_a_json_line_when_its_logs_are(
    command: str, json_line: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every line of a service's log was ECS JSON but the last, the one saying why it
    # stopped: a pipeline parsing the journal lost exactly that one.
    from nis2triage.cli import main

    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        assert main([command, "-c", str(tmp_path / "absent.yml")]) == 1
    finally:
        root.handlers[:], root.level = before, level

    [line] = capsys.readouterr().err.splitlines()
    if json_line:
        doc = json.loads(line)
        assert (doc["log.level"], doc["log"]["logger"]) == ("error", "nis2triage")
        assert "absent.yml" in doc["message"]
    else:
        assert line.startswith("nis2triage: ") and "absent.yml" in line
