"""Configuration errors name the file, the line and the key."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from nis2triage.config import SmtpConfig, load_config, parse_duration, read_secret
from nis2triage.errors import ConfigError

GOOD = """\
elasticsearch:
  hosts: [http://127.0.0.1:9200]
  username: elastic
  password_env: ES_PW
entity:
  legal_name: Example NV
  enterprise_number: "0403.019.261"
  sector: energy
  entity_class: essential
sources:
  - name: auth
    indices: [logs-*]
    batch_size: 500
    max_lateness: 2m
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yml"
    path.write_text(text)
    return path


def test_good_file_loads_with_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))

    assert cfg.sources[0].max_lateness == timedelta(minutes=2)
    assert cfg.sources[0].time_field == "@timestamp"
    assert cfg.elasticsearch.verify_certs is True
    assert cfg.notifier.mode == "dry-run"
    assert cfg.entity.enterprise_number == "0403019261"


def test_a_sector_written_as_people_write_it_is_read_as_its_nis2_name(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD.replace("sector: energy", "sector: Drinking-water")))

    assert cfg.entity.sector == "drinking_water"


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        pytest.param(
            "batch_size: 500", "batch_size: many", r":13:5: sources\.0\.batch_size", id="type"
        ),
        pytest.param("max_lateness: 2m", "max_lateness: soon", r":14:5: .*duration", id="duration"),
        pytest.param(
            '"0403.019.261"', '"0403.019.262"', r":7:3: entity\.enterprise_number.*mod-97", id="kbo"
        ),
        pytest.param(
            "batch_size: 500", "batchsize: 500", r":13:5: .*did you mean 'batch_size'", id="typo"
        ),
        pytest.param(
            "  password_env: ES_PW\n", "", r":1: elasticsearch: .*password_env", id="no-secret"
        ),
        pytest.param(
            "sector: energy",
            "sector: bananas",
            r":8:3: entity\.sector: .*'bananas' is not a NIS2 sector .*write one of: energy, "
            r"transport, .*, research",
            id="sector",
        ),
        pytest.param(
            "entity_class: essential",
            "entity_class: vital",
            r":9:3: entity\.entity_class",
            id="enum",
        ),
    ],
)
def test_mistakes_name_file_line_and_key(tmp_path: Path, old: str, new: str, match: str) -> None:
    path = write(tmp_path, GOOD.replace(old, new))

    with pytest.raises(ConfigError, match=match) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_several_mistakes_are_listed_in_the_order_of_the_files_lines(tmp_path: Path) -> None:
    text = GOOD.replace("batch_size: 500", "batchsize: 500").replace("2m", "2 minutes")

    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))

    first, second = str(err.value).splitlines()
    assert first.endswith(":13:5: sources.0.batchsize: unknown key (did you mean 'batch_size'?)")
    assert ":14:5: sources.0.max_lateness: '2 minutes' is not a duration" in second
    assert "Value error" not in second


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1.5h", 5400), ("2d", 172800), (45, 45), ("250ms", 0.25)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_a_password_in_the_yaml_is_not_a_known_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("password_env: ES_PW", "password: hunter2"))

    with pytest.raises(ConfigError, match="password") as err:
        load_config(path)
    assert "hunter2" not in str(err.value)


def test_a_ca_file_for_a_plain_http_host_is_refused_at_load(tmp_path: Path) -> None:
    path = write(
        tmp_path, GOOD.replace("password_env: ES_PW", "password_env: ES_PW\n  ca_file: ca.pem")
    )

    with pytest.raises(
        ConfigError, match=r"agent\.yml:1:\d+: elasticsearch: .*127.0.0.1:9200 is plain http"
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("host", "said"),
    [
        pytest.param("not a url", "'not a url' is no node address", id="no-url"),
        pytest.param("http://127.0.0.1:99999", "is no node address", id="port-past-65535"),
        pytest.param("'http://[::1:9200'", "is no node address", id="open-bracket"),
        pytest.param("ftp://127.0.0.1:21", "has scheme 'ftp'", id="scheme"),
        pytest.param(
            "http://elastic:s3cret@127.0.0.1:9200",
            "'http://127.0.0.1:9200' holds a user name and password",
            id="password-in-url",
        ),
    ],
)
def test_a_node_address_the_client_cannot_use_is_refused_at_its_line(
    tmp_path: Path, host: str, said: str
) -> None:
    # Accepted as any text, it failed every command at its first request with the
    # client's traceback; a password in it would have been shown.
    path = write(tmp_path, GOOD.replace("[http://127.0.0.1:9200]", f"[{host}]"))

    with pytest.raises(ConfigError, match=rf":2:3: elasticsearch\.hosts: .*{re.escape(said)}") as e:
        load_config(path)
    assert "s3cret" not in str(e.value)


@pytest.mark.parametrize(
    ("credential", "said"),
    [
        pytest.param(
            "password_env: ES_PW\n  api_key_env: ES_KEY",
            "api_key_env and password_env are given",
            id="key-and-password",
        ),
        pytest.param(
            "password_env: ES_PW\n  password_file: /etc/pw",
            "password_env and password_file are given",
            id="two-passwords",
        ),
    ],
)
def test_two_credentials_are_refused_naming_both(
    tmp_path: Path, credential: str, said: str
) -> None:
    # The API key won over the password, the variable over the file, without a word.
    path = write(tmp_path, GOOD.replace("password_env: ES_PW", credential))

    with pytest.raises(ConfigError, match=rf"elasticsearch: .*{said}, but the agent uses one"):
        load_config(path)


def test_a_password_without_a_user_is_refused(tmp_path: Path) -> None:
    # It was never sent: the agent connected without a credential, and got 401.
    path = write(tmp_path, GOOD.replace("  username: elastic\n", ""))

    with pytest.raises(ConfigError, match="password_env needs username"):
        load_config(path)


def test_a_ca_file_for_https_hosts_loads(tmp_path: Path) -> None:
    text = GOOD.replace("http://", "https://").replace(
        "password_env: ES_PW", "password_env: ES_PW\n  ca_file: ca.pem"
    )
    assert load_config(write(tmp_path, text)).elasticsearch.ca_file == "ca.pem"


def test_a_secret_loses_its_line_break_and_one_with_a_break_inside_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("T_TOKEN", "ccb-token-S3CRET\n")
    monkeypatch.setenv("T_BROKEN", "ccb-token\r\nS3CRET")
    monkeypatch.setenv("T_SEPARATED", "ccb-token\u2028S3CRET")

    assert read_secret("T_TOKEN", None, "notifier token") == "ccb-token-S3CRET"
    with pytest.raises(ConfigError, match="T_BROKEN holds a line break") as refused:
        read_secret("T_BROKEN", None, "notifier token")
    assert "S3CRET" not in str(refused.value)
    with pytest.raises(ConfigError, match="T_SEPARATED holds a line break"):
        read_secret("T_SEPARATED", None, "notifier token")


@pytest.mark.parametrize(("host", "refused"), [("mail.example.net", True), ("::1", False)])
def test_smtp_in_clear_is_taken_only_on_this_machine(host: str, refused: bool) -> None:
    def smtp() -> SmtpConfig:
        return SmtpConfig(host=host, security="none", sender="soc@x.example", recipients=["a@b.c"])

    if refused:
        with pytest.raises(ValueError, match="in clear; use starttls"):
            smtp()
    else:
        assert smtp().host == host


def test_a_detector_path_naming_a_folder_is_refused_at_its_line_with_the_pattern_to_write(
    tmp_path: Path,
) -> None:
    # The agent read the folder as a file and stopped with "<folder>: not a regular file",
    # naming neither the configuration nor the key.
    (tmp_path / "detectors").mkdir()
    path = write(tmp_path, GOOD + "detectors: [detectors/*.yml, detectors]\n")

    with pytest.raises(ConfigError) as refused:
        load_config(path)

    folder = tmp_path / "detectors"
    assert str(refused.value) == (
        f"{path}:15:30: detectors.1: 'detectors' matches the folder {folder}, and detectors "
        f"are files: write a pattern of files, such as '{folder / '*.yml'}'"
    )


@pytest.mark.parametrize(
    ("indices", "match"),
    [
        pytest.param(
            '["logs-*", ""]',
            r":12:25: sources\.0\.indices\.1: an empty name .*remove the extra comma",
            id="empty",
        ),
        pytest.param(
            '["logs-*, filebeat-*"]',
            r"sources\.0\.indices\.0: ' filebeat-\*' has a space around it: .*write "
            r"'logs-\*,filebeat-\*'",
            id="space-after-comma",
        ),
        pytest.param(
            '["auth logs"]', r"sources\.0\.indices\.0: 'auth logs' holds ' '", id="space-inside"
        ),
        pytest.param('["logs#1"]', r"'logs#1' holds '#', which no index", id="hash"),
        pytest.param('["logs-{now/d}"]', r"holds '/'.*angle brackets", id="date-math-unbracketed"),
        pytest.param('["+logs"]', r"'\+logs' begins with '\+'", id="plus"),
    ],
)
def test_an_index_name_elasticsearch_would_skip_in_silence_is_refused_at_load(
    tmp_path: Path, indices: str, match: str
) -> None:
    path = write(tmp_path, GOOD.replace("indices: [logs-*]", f"indices: {indices}"))

    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_unusual_but_legal_index_names_load(tmp_path: Path) -> None:
    legal = (
        '["logé-ü+x", "<logs-{now/d{yyyy.MM.dd|+12:00}}>", "logs-*,-logs-old*", "remote:logs-*"]'
    )
    cfg = load_config(write(tmp_path, GOOD.replace("indices: [logs-*]", f"indices: {legal}")))

    assert cfg.sources[0].indices[1] == "<logs-{now/d{yyyy.MM.dd|+12:00}}>"
    assert len(cfg.sources[0].indices) == 4


@pytest.mark.parametrize(
    ("written", "match"),
    [
        pytest.param(
            "999999999d",
            r":14:5: sources\.0\.max_lateness: 999999999d is longer than the longest duration "
            r"the file may give, 366d \(a year\); write at most '366d'",
            id="past-what-the-agent-computes-with",
        ),
        pytest.param("367d", r"367d is longer than the longest duration", id="a-day-too-long"),
        pytest.param(".nan", r"nan is not a duration: write it like 30s", id="nan"),
    ],
)
def test_a_duration_the_agent_cannot_compute_with_is_refused_at_load(
    tmp_path: Path, written: str, match: str
) -> None:
    # poll_interval: 999999999d loaded, then the start crashed with an OverflowError
    # (the lease holds four polls); NaN was said as "cannot convert float NaN to integer".
    path = write(tmp_path, GOOD.replace("max_lateness: 2m", f"max_lateness: {written}"))

    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_a_year_is_the_longest_duration_and_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD.replace("max_lateness: 2m", "max_lateness: 366d")))

    assert cfg.sources[0].max_lateness == timedelta(days=366)


@pytest.mark.parametrize(
    ("written", "match"),
    [
        pytest.param('""', r":15:5: sources\.0\.time_field: a field name is needed", id="empty"),
        pytest.param(
            '"@timestamp "',
            r"sources\.0\.time_field: '@timestamp ' has a space or a control character around "
            r"it: write '@timestamp'",
            id="trailing-space",
        ),
    ],
)
def test_a_time_field_no_read_can_use_is_refused_at_load(
    tmp_path: Path, written: str, match: str
) -> None:
    # '' failed every poll with a 400 that named no field; '@timestamp ' read nothing.
    path = write(tmp_path, GOOD + f"    time_field: {written}\n")

    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_a_source_query_with_a_lucene_slip_is_refused_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '    query: "event.category:(authentication"\n')

    with pytest.raises(
        ConfigError, match=r":15:5: sources\.0\.query: '\(' at character 16 is never closed"
    ):
        load_config(path)


def test_a_missing_key_is_said_as_missing_under_its_parent(tmp_path: Path) -> None:
    text = GOOD.replace("  hosts: [http://127.0.0.1:9200]\n", "")

    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))

    assert str(err.value).endswith(":1:1: elasticsearch.hosts: required, and missing")


def test_a_loaded_configuration_knows_its_file_and_keeps_it_when_copied(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)

    cfg = load_config(path)
    copied = cfg.model_copy(update={"triage": None})

    assert (cfg.file, copied.file) == (str(path.resolve()), str(path.resolve()))
    spaced = tmp_path / "my configs"
    spaced.mkdir()
    moved = path.rename(spaced / "agent.yml")
    assert load_config(moved).file_argument == f"'{moved.resolve()}'"
