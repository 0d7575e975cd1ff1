"""Setup with an administrator, then the agent with least privilege, on the real node.

Setup creates the agent's native role and an API key that carries it; the agent's
whole loop then runs with that key alone. The same role as a file-realm entry
(config/roles.yml, for clusters that cannot store native roles) is checked too, and
removed again at the end. Secrets are known values, so the logs and the agent's
indices can be searched for them afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import AuthorizationException, Elasticsearch

from nis2triage import esclient, roles
from nis2triage.config import load_config
from nis2triage.demo import index_docs
from nis2triage.store import INDICES

from ccb_server import CcbServer, running_ccb
from file_realm import file_realm_user
from support import authentication_events, real_log_docs, write_agent_config

RUN = uuid.uuid4().hex[:8]
SECRETS = {
    "NIS2TRIAGE_TEST_ES_PASSWORD": f"lp-es-password-{RUN}-x7Q",
    "NIS2TRIAGE_CCB_TOKEN": f"lp-ccb-token-{RUN}-k2W",
    "NIS2TRIAGE_PSEUDONYM_KEY": f"lp-pseudonym-key-{RUN}-0123456789abcdef",
    "NIS2TRIAGE_SNAPSHOT_KEY": f"lp-snapshot-key-{RUN}-0123456789abcdef",
    # Made by the first setup below: the agent's API key, known only once it exists.
    "NIS2TRIAGE_TEST_ES_API_KEY": "",
}
ROLE = f"nis2triage_agent_t{RUN}"
USER = f"nis2triage_t{RUN}"


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`nis2triage ...` in its own process, stderr a pipe (so logs are ECS JSON)."""
    return subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def statuses(setup_output: str) -> list[tuple[str, str, str]]:
    """(status, kind of object, the whole line) for each object line setup printed."""
    rows = []
    for line in setup_output.splitlines():
        status, kind = line[:10].strip(), line[11:28].strip()
        if status in {"created", "updated", "unchanged", "skipped", "refused", "failed"}:
            rows.append((status, kind, line))
    return rows


@pytest.fixture(scope="module")
def source(es: Elasticsearch) -> Iterator[str]:
    name = f"t-least-privilege-{RUN}"
    index_docs(es, name, real_log_docs())
    es.indices.create(index=f"{name}-other", settings={"number_of_replicas": 0})
    yield name
    es.options(ignore_status=404).indices.delete(index=f"{name}*", expand_wildcards="all")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{name}*")


@pytest.fixture(scope="module")
def admin_env(es_settings: esclient.ESSettings) -> dict[str, str]:
    return {**os.environ, **SECRETS, "NIS2TRIAGE_TEST_ES_PASSWORD": es_settings.password or ""}


@pytest.fixture(scope="module")
def ccb() -> Iterator[CcbServer]:
    with running_ccb() as server:
        yield server


def config_for(
    folder: Path, settings: esclient.ESSettings, source: str, ccb: CcbServer | None = None
) -> Path:
    notifier = (
        {"mode": "send", "endpoint": ccb.url, "token_env": "NIS2TRIAGE_CCB_TOKEN"} if ccb else None
    )
    path = write_agent_config(folder, settings, source, f"{source}-st", notifier)
    config = yaml.safe_load(path.read_text())
    config["state"]["security_alias"] = f"logs-{source}.alerts-default"
    config["sources"][0]["poll_interval"] = "2s"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def admin_config(
    tmp_path_factory: pytest.TempPathFactory, es_settings: esclient.ESSettings, source: str
) -> Path:
    return config_for(tmp_path_factory.mktemp("admin"), es_settings, source)


@pytest.fixture(scope="module")
def setup_twice(
    es: Elasticsearch, admin_config: Path, admin_env: dict[str, str]
) -> Iterator[tuple[str, str]]:
    """`setup --create-api-key` twice; the first prints the agent's key once."""
    first = cli("setup", "--config", str(admin_config), "--create-api-key", env=admin_env)
    second = cli("setup", "--config", str(admin_config), "--create-api-key", env=admin_env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    SECRETS["NIS2TRIAGE_TEST_ES_API_KEY"] = printed_api_key(first.stdout)
    yield first.stdout, second.stdout
    name = f"{load_config(admin_config).state.index_prefix}-agent"
    es.security.invalidate_api_key(name=name)


def printed_api_key(setup_output: str) -> str:
    lines = setup_output.splitlines()
    [at] = [i for i, line in enumerate(lines) if line.startswith("The agent's API key")]
    return lines[at + 1].strip()


@pytest.fixture(scope="module")
def agent_settings(
    es_settings: esclient.ESSettings, setup_twice: tuple[str, str]
) -> esclient.ESSettings:
    """The API key setup made, and nothing else: no user name, no password."""
    return esclient.ESSettings(
        hosts=es_settings.hosts, api_key=SECRETS["NIS2TRIAGE_TEST_ES_API_KEY"]
    )


@pytest.fixture(scope="module")
def file_realm_settings(
    es: Elasticsearch, es_settings: esclient.ESSettings, admin_config: Path
) -> Iterator[esclient.ESSettings]:
    """The same role as a file-realm entry, as setup prints it for clusters without one."""
    role_yml = roles.roles_yml(load_config(admin_config), name=ROLE)
    password = SECRETS["NIS2TRIAGE_TEST_ES_PASSWORD"]
    with file_realm_user(es, es_settings, ROLE, role_yml, USER, password) as settings:
        yield settings


@pytest.fixture(scope="module")
def agent_config(
    tmp_path_factory: pytest.TempPathFactory,
    agent_settings: esclient.ESSettings,
    source: str,
    ccb: CcbServer,
) -> Path:
    path = config_for(tmp_path_factory.mktemp("agent"), agent_settings, source, ccb)
    config = yaml.safe_load(path.read_text())
    config["elasticsearch"] = {
        "hosts": list(agent_settings.hosts),
        "api_key_env": "NIS2TRIAGE_TEST_ES_API_KEY",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def agent_run(agent_config: Path) -> subprocess.CompletedProcess[str]:
    """One verbose pass as the least-privileged user, secrets from the environment."""
    done = cli("-v", "run", "--config", str(agent_config), "--once", env={**os.environ, **SECRETS})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_setup_creates_a_template_and_an_index_for_every_agent_index(
    setup_twice: tuple[str, str],
) -> None:
    first = statuses(setup_twice[0])
    created = [r[:2] for r in first if r[0] == "created"]

    assert created.count(("created", "index template")) == len(INDICES)
    assert created.count(("created", "index")) == len(INDICES)
    assert created.count(("created", "alias")) == 1


def test_setup_run_twice_changes_nothing_the_second_time(setup_twice: tuple[str, str]) -> None:
    second = statuses(setup_twice[1])

    assert {r[0] for r in second} == {"unchanged", "skipped"}
    # Templates and indices, the Elastic Security alias, the role and the API key.
    assert len([r for r in second if r[0] == "unchanged"]) == 2 * len(INDICES) + 3
    assert "0 changed" in setup_twice[1]
    assert "The agent's API key" not in setup_twice[1]


def test_setup_says_this_cluster_has_no_lifecycle_management(
    setup_twice: tuple[str, str],
) -> None:
    skipped = [r[2] for r in statuses(setup_twice[0]) if r[0] == "skipped"]

    assert len(skipped) == 1
    assert "no ILM or data streams on this cluster" in skipped[0]


def test_the_alerts_are_under_an_alias_that_elastic_security_reads(
    es: Elasticsearch, source: str, setup_twice: tuple[str, str]
) -> None:
    aliases = es.indices.get_alias(index=f"{source}-st-alerts").body

    assert list(aliases) == [f"{source}-st-alerts-000001"]
    assert f"logs-{source}.alerts-default" in aliases[f"{source}-st-alerts-000001"]["aliases"]


def test_setup_creates_the_role_and_an_api_key_the_first_time(
    setup_twice: tuple[str, str],
) -> None:
    first = {(r[1], r[0]) for r in statuses(setup_twice[0])}

    # The role is one per cluster: an earlier run may have made it for other indices.
    assert first & {("role", "created"), ("role", "updated")}
    assert ("API key", "created") in first
    assert SECRETS["NIS2TRIAGE_TEST_ES_API_KEY"]


def test_the_native_role_holds_the_agents_privileges(
    es: Elasticsearch, admin_config: Path, source: str, setup_twice: tuple[str, str]
) -> None:
    name = roles.role_name(f"{source}-st")
    role = es.security.get_role(name=name).body[name]
    by_names = {tuple(i["names"]): sorted(i["privileges"]) for i in role["indices"]}

    assert role["cluster"] == ["monitor"]
    assert by_names[(source,)] == sorted(roles.SOURCE_PRIVILEGES)
    own = tuple(roles.own_names(f"{source}-st"))
    assert by_names[own] == sorted(roles.OWN_PRIVILEGES)
    assert f"{source}-st-pseudonyms" in own and f"/{source}-st-alerts-[0-9]{{6}}/" in own
    assert f"{source}-st-*" not in own  # another prefix beginning with this one is not ours


def test_the_api_key_authenticates_as_an_api_key_of_the_administrator(
    agent_settings: esclient.ESSettings,
) -> None:
    me = esclient.connect(agent_settings).security.authenticate().body

    assert me["authentication_type"] == "api_key"
    assert me["api_key"]["name"].endswith("-st-agent")


def test_the_agent_runs_its_loop_once_as_the_least_privileged_user(
    es: Elasticsearch, source: str, agent_run: subprocess.CompletedProcess[str], ccb: CcbServer
) -> None:
    es.indices.refresh(index=f"{source}-st-alerts")

    assert agent_run.stdout.startswith(f"{authentication_events(real_log_docs())} events read")
    assert es.count(index=f"{source}-st-alerts")["count"] > 0
    assert len(ccb.received) > 0


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda es, src: es.index(index=src, document={"a": 1}), id="write-source"),
        pytest.param(lambda es, src: es.search(index=f"{src}-other"), id="read-other-index"),
        pytest.param(
            lambda es, src: es.indices.delete(index=f"{src}-st-alerts-000001"), id="delete-own"
        ),
        pytest.param(
            lambda es, src: es.indices.put_index_template(name=f"{src}-x", index_patterns=["x"]),
            id="put-template",
        ),
    ],
)
@pytest.mark.parametrize("credential", ["api-key", "file-realm-user"])
def test_calls_outside_the_role_are_refused_with_403(
    request: pytest.FixtureRequest, source: str, call: Any, credential: str
) -> None:
    fixture = "agent_settings" if credential == "api-key" else "file_realm_settings"
    client = esclient.connect(request.getfixturevalue(fixture))

    with pytest.raises(AuthorizationException, match="unauthorized") as refused:
        call(client, source)
    assert refused.value.meta.status == 403


def agent_documents(es: Elasticsearch, prefix: str) -> str:
    es.indices.refresh(index=f"{prefix}-*")
    hits = es.search(index=f"{prefix}-*", size=10_000, query={"match_all": {}})["hits"]["hits"]
    assert len(hits) > 10, "the agent wrote too little for this check to mean anything"
    return json.dumps([h["_source"] for h in hits])


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_no_secret_in_any_log_line_or_agent_document(
    es: Elasticsearch, source: str, agent_run: subprocess.CompletedProcess[str], name: str
) -> None:
    written = agent_documents(es, f"{source}-st")

    assert SECRETS[name] not in agent_run.stdout + agent_run.stderr
    assert SECRETS[name] not in written


def test_the_secrets_were_in_use_during_that_run(
    agent_run: subprocess.CompletedProcess[str], ccb: CcbServer
) -> None:
    tokens = {r.headers["Authorization"] for r in ccb.received}

    assert tokens == {f"Bearer {SECRETS['NIS2TRIAGE_CCB_TOKEN']}"}
    assert all(r.json()["pseudonymised"] is True for r in ccb.received)


def test_logs_off_a_terminal_are_ecs_json_lines(
    agent_run: subprocess.CompletedProcess[str],
) -> None:
    lines = [json.loads(line) for line in agent_run.stderr.splitlines()]

    assert len(lines) > 3
    assert all(line["ecs.version"] and line["log.level"] and line["@timestamp"] for line in lines)
    assert {"nis2triage", "nis2triage.notify.outbox"} <= {line["log"]["logger"] for line in lines}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str) -> float:
    [line] = [x for x in text.splitlines() if x.startswith(name + " ")]
    return float(line.split()[-1])


@pytest.fixture(scope="module")
def service(agent_config: Path, agent_run: subprocess.CompletedProcess[str]) -> Iterator[str]:
    """`nis2triage run` as the service runs it, with /metrics and /health on loopback."""
    port = free_port()
    command = ["run", "--config", str(agent_config), "--metrics-port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nis2triage.cli", *command],
        env={**os.environ, **SECRETS},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while scrape(f"{url}/health")[0] != 200 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.5)
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        assert proc.returncode == 0


def test_health_answers_200_with_json_while_the_service_runs(service: str) -> None:
    status, body = scrape(f"{service}/health")

    assert status == 200
    assert json.loads(body)["status"] == "ok"


def test_metrics_answer_with_the_lag_and_the_outbox_while_the_service_runs(service: str) -> None:
    _, text = scrape(f"{service}/metrics")

    assert 0 < metric(text, 'nis2triage_lag_seconds{source="auth"}') < 3 * 86400
    # The log is yesterday's, read to the end: the source is not behind by a day.
    assert 0 <= metric(text, 'nis2triage_read_behind_seconds{source="auth"}') < 600
    assert metric(text, 'nis2triage_notifications{status="sent"}') > 0
    assert metric(text, "nis2triage_last_cycle_duration_seconds") > 0


def test_setup_with_the_agents_own_credential_is_refused_in_words(agent_config: Path) -> None:
    done = cli("setup", "--config", str(agent_config), env={**os.environ, **SECRETS})

    assert done.returncode == 1
    assert "setup needs an administrator's credential (403" in done.stderr


def test_setup_with_an_administrators_credential_does_not_need_the_agents(
    agent_config: Path, admin_env: dict[str, str]
) -> None:
    env = {**admin_env, "ADMIN_PASSWORD": admin_env["NIS2TRIAGE_TEST_ES_PASSWORD"]}
    # Before the first setup the agent's own secrets may not exist yet: they are not read.
    del env["NIS2TRIAGE_TEST_ES_PASSWORD"], env["NIS2TRIAGE_TEST_ES_API_KEY"]
    admin = ["--admin-user", "elastic", "--admin-password-env", "ADMIN_PASSWORD"]

    done = cli("setup", "--config", str(agent_config), *admin, env=env)

    assert done.returncode == 0, done.stderr
    assert "0 changed" in done.stdout


def test_setup_takes_an_administrators_api_key(
    es: Elasticsearch, agent_config: Path, admin_env: dict[str, str]
) -> None:
    made = es.security.create_api_key(name=f"t-admin-{RUN}", expiration="1h").body
    env = {k: v for k, v in admin_env.items() if not k.startswith("NIS2TRIAGE_TEST_ES_")}
    env["ADMIN_API_KEY"] = made["encoded"]

    done = cli(
        "setup", "--config", str(agent_config), "--admin-api-key-env", "ADMIN_API_KEY", env=env
    )
    es.security.invalidate_api_key(ids=[made["id"]])

    assert done.returncode == 0, done.stderr
    assert "0 changed" in done.stdout


def test_setup_with_a_refused_password_says_the_credential_was_refused(
    admin_config: Path, admin_env: dict[str, str]
) -> None:
    env = {**admin_env, "ADMIN_PASSWORD": "not-the-password"}
    admin = ["--admin-user", "elastic", "--admin-password-env", "ADMIN_PASSWORD"]

    done = cli("setup", "--config", str(admin_config), *admin, env=env)

    assert done.returncode == 1
    assert "Elasticsearch refused the credential setup used (401" in done.stderr
