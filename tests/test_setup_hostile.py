"""`nis2triage setup` against a hostile Kibana and colliding names (from the break run).

Kibana is a real HTTP server on loopback that this file starts, misbehaving on
purpose: it drips its answer, floods it, redirects, or fails hundreds of objects.
Elasticsearch is the real node.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch

from nis2triage import esclient, kibana, layout, roles
from nis2triage.config import load_config
from nis2triage.errors import ConfigError
from nis2triage.esclient import ESSettings
from nis2triage.layout import Capabilities
from nis2triage.store import INDICES

from support import write_agent_config

OBJECTS = kibana.load(kibana.DEFAULT_OBJECTS)
ADMIN = ESSettings(hosts=("http://127.0.0.1:9",), username="admin", password="pw-123456")
NO_EXTRAS = Capabilities(data_streams=False, ilm=False)


@dataclass
class HostileKibana:
    """Answers by the first part of the path: /drip, /flood, /redirect, /partial, /hold."""

    url: str = ""
    auth: list[str] = field(default_factory=list)
    asked: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def hostile() -> Iterator[HostileKibana]:
    server = HostileKibana()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            server.auth.append(self.headers.get("Authorization", ""))
            server.asked.set()
            getattr(self, "_" + self.path.strip("/").split("/")[0])()

        def _head(self, status: int, length: int, *extra: tuple[str, str]) -> None:
            self.send_response(status)
            for name, value in [("Content-Type", "application/json"), *extra]:
                self.send_header(name, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def _drip(self) -> None:
            self._head(200, 100_000)
            for _ in range(100_000):
                if server.release.is_set():
                    return
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.5)

        def _flood(self) -> None:
            size = 400 * 1024 * 1024
            self._head(500, size)
            chunk = b"x" * 65536
            for _ in range(size // len(chunk)):
                self.wfile.write(chunk)

        def _redirect(self) -> None:
            self._head(302, 0, ("Location", "http://sso:secret@127.0.0.1:1/login?next=/api"))

        def _partial(self) -> None:
            error = {
                "id": "nis2triage-alerts",
                "type": "index-pattern",
                "error": {"type": "conflict"},
            }
            body = json.dumps({"success": False, "errors": [error] * 500}).encode()
            self._head(200, len(body))
            self.wfile.write(body)

        def _hold(self) -> None:
            server.release.wait(60)

        def _ok(self) -> None:
            body = json.dumps({"success": True, "successResults": [{"id": "a"}]}).encode()
            self._head(200, len(body))
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def handle(self) -> None:
            with contextlib.suppress(OSError):  # the client gave up, as it should
                super().handle()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield server
    server.release.set()
    httpd.shutdown()
    httpd.server_close()


# --- 1. every Kibana request has a total deadline and a cap on the answer ----------------


def test_a_kibana_that_drips_its_answer_is_cut_off_at_the_deadline(
    hostile: HostileKibana,
) -> None:
    started = time.monotonic()

    change = kibana.import_objects(f"{hostile.url}/drip", OBJECTS, ADMIN, timeout=5, deadline=3)

    assert time.monotonic() - started < 6
    assert change.status == "failed"
    assert change.note == (
        "Kibana did not finish answering within 3 s: check that it is up and reachable "
        "from here, then run setup again"
    )


def test_a_kibana_that_floods_its_answer_is_read_up_to_the_cap(hostile: HostileKibana) -> None:
    change = kibana.import_objects(f"{hostile.url}/flood", OBJECTS, ADMIN, max_answer=65536)

    assert change.status == "failed"
    assert change.note.startswith("Kibana answered over 65,536 bytes, not read further")


# --- 3. credentials in the --kibana URL are used, never printed --------------------------


def test_a_password_in_the_kibana_url_is_used_but_not_printed(hostile: HostileKibana) -> None:
    url = hostile.url.replace("http://", "http://kb-user:s3cret-pw@") + "/ok"

    change = kibana.import_objects(url, OBJECTS, ADMIN)

    assert change.status == "created"
    assert "s3cret" not in change.line() and "kb-user" not in change.line()
    assert change.name == hostile.url.replace("http://", "http://***@") + "/ok"
    assert hostile.auth == ["Basic " + base64.b64encode(b"kb-user:s3cret-pw").decode()]


# --- 6. redirects, URLs without a scheme, many failed objects ----------------------------


def test_a_redirect_says_where_it_points_and_that_it_is_not_followed(
    hostile: HostileKibana,
) -> None:
    change = kibana.import_objects(f"{hostile.url}/redirect", OBJECTS, ADMIN)

    assert change.status == "failed"
    assert change.note == (
        "HTTP 302: Kibana redirects to http://***@127.0.0.1:1/login?next=/api, which setup "
        "does not follow; pass Kibana's own URL (the one the redirect names, if it is "
        "Kibana) as --kibana"
    )


@pytest.mark.parametrize("url", ["127.0.0.1:5601", "localhost:5601", "kibana.example"])
def test_a_url_without_a_scheme_says_to_write_one(url: str) -> None:
    change = kibana.import_objects(url, OBJECTS, ADMIN)

    assert (change.status, change.name) == ("failed", url)
    assert "write it with http:// or https://" in change.note


def test_hundreds_of_failed_objects_are_summed_up_in_a_short_line(
    hostile: HostileKibana,
) -> None:
    change = kibana.import_objects(f"{hostile.url}/partial", OBJECTS, ADMIN)

    assert change.status == "failed"
    assert change.note == (
        "HTTP 200: 500 objects not imported: nis2triage-alerts (conflict), "
        "nis2triage-alerts (conflict), nis2triage-alerts (conflict); 497 more"
    )


# --- 4. only the shipped file's kinds of object, over the agent's own indices ------------


def hostile_objects(tmp_path: Path) -> Path:
    added = [
        {"id": "evil-config", "type": "config", "attributes": {}, "references": []},
        {"id": "evil-url", "type": "url", "attributes": {"url": "http://x"}, "references": []},
        {
            **OBJECTS[0],
            "id": "evil-view",
            "attributes": {**OBJECTS[0]["attributes"], "title": "*,.security*"},
        },
    ]
    path = tmp_path / "objects.ndjson"
    lines = [json.dumps(o) for o in added]
    path.write_text(kibana.DEFAULT_OBJECTS.read_text() + "\n".join(lines) + "\n")
    return path


def test_objects_of_other_types_and_data_views_over_other_indices_are_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(kibana.KibanaObjectsError) as refused:
        kibana.checked(hostile_objects(tmp_path), "acme")

    said = str(refused.value)
    assert "evil-config: a 'config' object, which setup does not import" in said
    assert "evil-url: a 'url' object, which setup does not import" in said
    assert "evil-view: a data view over '*,.security*', not one of the agent's indices" in said


def test_the_shipped_objects_pass_for_any_prefix() -> None:
    moved = kibana.checked(kibana.DEFAULT_OBJECTS, "acme")

    assert len(moved) == len(OBJECTS)


# --- 5. names that collide on the cluster ------------------------------------------------


def test_agents_share_a_read_alias_over_their_alerts(es: Elasticsearch, index_name: str) -> None:
    first, second, alias = f"{index_name}-a", f"{index_name}-b", f"{index_name}-shared"
    try:
        layout.apply(es, first, alias, NO_EXTRAS)
        changes = layout.apply(es, second, alias, NO_EXTRAS)
        covered = es.indices.get_alias(name=alias).body
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=f"{index_name}-*")

    # As the default logs-nis2triage.alerts-default is shared: Elastic Security lists both.
    assert sorted(covered) == [f"{first}-alerts-000001", f"{second}-alerts-000001"]
    assert all(c.status != "failed" for c in changes)


def test_another_agents_own_alias_is_refused_as_a_read_alias(
    es: Elasticsearch, index_name: str
) -> None:
    first, second = f"{index_name}-a", f"{index_name}-b"
    try:
        layout.apply(es, first, None, NO_EXTRAS)
        # The break run's case: the demo agent's own alerts alias named as this one's.
        changes = layout.apply(es, second, f"{first}-alerts", NO_EXTRAS)
        covered = es.indices.get_alias(name=f"{first}-alerts").body
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=f"{index_name}-*")

    [refused] = [c for c in changes if c.what == "alias"]
    assert refused.status == "failed"
    assert refused.note == (
        f"{first}-alerts is named like an agent's own alerts alias (<prefix>-alerts): give "
        "state.security_alias a name no prefix makes, such as the default "
        "logs-nis2triage.alerts-default"
    )
    # Neither setup's own steps nor the template of the new alerts index added it.
    assert sorted(covered) == [f"{first}-alerts-000001"]
    assert all(c.status != "failed" for c in changes if c.what != "alias")


def test_a_read_alias_over_other_indices_is_refused_naming_them(
    es: Elasticsearch, index_name: str
) -> None:
    es.indices.create(index=f"{index_name}-app", aliases={f"{index_name}-view": {}})
    try:
        changes = layout.apply(es, f"{index_name}-b", f"{index_name}-view", NO_EXTRAS)
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=f"{index_name}-*")

    [refused] = [c for c in changes if c.what == "alias"]
    assert refused.note == (
        f"{index_name}-view already covers {index_name}-app, which hold no agent's alerts: "
        "give this agent a state.security_alias of its own"
    )


def test_an_alias_named_like_an_existing_index_is_refused_with_the_reason(
    es: Elasticsearch, index_name: str
) -> None:
    taken = f"{index_name}-taken"
    es.indices.create(index=taken)
    try:
        changes = layout.apply(es, f"{index_name}-p", taken, NO_EXTRAS)
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=f"{index_name}-*")

    [refused] = [c for c in changes if c.what == "alias"]
    assert (refused.status, refused.name) == ("failed", taken)
    assert "is an index or data stream, not an alias" in refused.note


def test_a_template_colliding_with_anothers_names_the_template_and_the_reason(
    es: Elasticsearch, index_name: str
) -> None:
    prefix = f"{index_name}-c"
    # Another template at the same priority over the same names: Elasticsearch refuses ours.
    es.indices.put_index_template(
        name=f"{index_name}-other",
        index_patterns=[f"{prefix}-outbox*"],
        priority=layout.TEMPLATE_PRIORITY,
    )
    try:
        changes = layout.apply(es, prefix, None, NO_EXTRAS)
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=f"{index_name}-*")

    [failed] = [c for c in changes if c.status == "failed"]
    assert (failed.what, failed.name) == ("index template", f"{prefix}-outbox")
    assert failed.note.startswith("Elasticsearch refused it: illegal_argument_exception: ")
    assert f"{index_name}-other" in failed.note


def test_a_prefix_too_long_for_an_index_name_is_refused_before_anything_is_made(
    es: Elasticsearch, index_name: str
) -> None:
    prefix = index_name + "x" * (240 - len(index_name))

    with pytest.raises(ConfigError, match=r"state\.index_prefix is 240 bytes; at most 221:"):
        layout.apply(es, prefix, None, NO_EXTRAS)

    assert not es.indices.exists_index_template(name=f"{index_name}*")


# --- 2. the API key is printed before Kibana is asked, and a lost one is said so ---------


def setup_env(es_settings: esclient.ESSettings) -> dict[str, str]:
    return {
        **os.environ,
        "NIS2TRIAGE_TEST_ES_PASSWORD": es_settings.password or "",
        "NIS2TRIAGE_SNAPSHOT_KEY": "test-snapshot-key-0123456789abcdef",
        "NIS2TRIAGE_PSEUDONYM_KEY": "test-pseudonym-key-0123456789abcdef",
    }


def test_the_key_is_printed_before_kibana_is_asked(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    hostile: HostileKibana,
) -> None:
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-k")
    data = yaml.safe_load(config.read_text())
    data["state"]["security_alias"] = None
    config.write_text(yaml.safe_dump(data))
    prefix = load_config(config).state.index_prefix
    command = ["setup", "-c", str(config), "--create-api-key", "--kibana", f"{hostile.url}/hold"]
    setup = subprocess.Popen(
        [sys.executable, "-m", "nis2triage.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=setup_env(es_settings),
    )
    try:
        assert hostile.asked.wait(120), "setup never asked Kibana"
        # Kibana holds its answer: setup is interrupted while it waits, as the tester did.
        setup.kill()
        out, _ = setup.communicate(timeout=30)
        again = subprocess.run(
            [
                sys.executable,
                "-m",
                "nis2triage.cli",
                "setup",
                "-c",
                str(config),
                "--create-api-key",
            ],
            capture_output=True,
            text=True,
            env=setup_env(es_settings),
            timeout=300,
        )
    finally:
        es.security.invalidate_api_key(name=f"{prefix}-agent")
        es.options(ignore_status=404).security.delete_role(name=roles.role_name(prefix))
        es.options(ignore_status=404).indices.delete_index_template(name=f"{index_name}-*")

    lines = out.splitlines()
    assert lines[0].startswith("The agent's API key, shown once")
    key = base64.b64decode(lines[1]).decode()
    [made] = es.security.get_api_key(name=f"{prefix}-agent").body["api_keys"]
    assert key.startswith(made["id"] + ":")
    # That key was shown: the next setup leaves it be.
    assert f"unchanged  API key           {prefix}-agent" in again.stdout


def test_a_key_setup_made_but_never_showed_is_said_to_need_replacing(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    cfg = load_config(write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-n"))
    name = f"{cfg.state.index_prefix}-agent"
    try:
        roles.ensure_role(es, cfg)
        made, key = roles.ensure_api_key(es, cfg, shown_later=True)
        # Setup stopped here, before it printed the key.
        again, none = roles.ensure_api_key(es, cfg, shown_later=True)
    finally:
        es.security.invalidate_api_key(name=name)
        es.options(ignore_status=404).security.delete_role(
            name=roles.role_name(cfg.state.index_prefix)
        )

    assert made.status == "created" and key is not None and none is None
    assert again.status == "failed"
    assert again.note == (
        f"id {key.id} was made by a setup stopped before it printed the key, which cannot be "
        f'shown again: invalidate it (DELETE _security/api_key with {{"name": "{name}"}}, '
        "see the README) and run setup with --create-api-key again"
    )


# --- 7. setup --create-role brings the agent's existing key up to the role too -----------


def test_create_role_also_brings_the_existing_key_up_to_the_role(
    es: Elasticsearch, es_settings: esclient.ESSettings, index_name: str, tmp_path: Path
) -> None:
    kept, removed = f"{index_name}-kept", f"{index_name}-removed"
    config = write_agent_config(tmp_path, es_settings, kept, f"{index_name}-r")
    data = yaml.safe_load(config.read_text())
    data["state"]["security_alias"] = None
    data["sources"][0]["indices"] = [kept, removed]
    config.write_text(yaml.safe_dump(data))
    prefix = load_config(config).state.index_prefix
    role = roles.role_name(prefix)

    def setup(*flags: str) -> str:
        command = [sys.executable, "-m", "nis2triage.cli", "setup", "-c", str(config), *flags]
        env = setup_env(es_settings)
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        setup("--create-api-key")
        data["sources"][0]["indices"] = [kept]  # a source index removed
        config.write_text(yaml.safe_dump(data))
        out = setup("--create-role")
        [key] = es.security.get_api_key(name=f"{prefix}-agent").body["api_keys"]
    finally:
        es.security.invalidate_api_key(name=f"{prefix}-agent")
        es.options(ignore_status=404).security.delete_role(name=role)
        es.options(ignore_status=404).indices.delete_index_template(name=f"{index_name}-*")

    assert f"updated    role              {role}" in out
    assert f"updated    API key           {prefix}-agent" in out
    [sources] = [i for i in key["role_descriptors"][role]["indices"] if kept in i["names"]]
    assert sources["names"] == [kept]


def test_a_read_alias_named_like_an_agent_to_come_is_refused(
    es: Elasticsearch, index_name: str
) -> None:
    # The re-check's case: made first, the alias was later taken by agent b for its own
    # alerts alias, and b's alerts were written into a's index.
    first, second = f"{index_name}-a", f"{index_name}-b"
    try:
        changes = layout.apply(es, first, f"{second}-alerts", NO_EXTRAS)
        taken = es.indices.exists_alias(name=f"{second}-alerts")
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=f"{index_name}-*")

    [refused] = [c for c in changes if c.what == "alias"]
    assert refused.status == "failed"
    assert "is named like an agent's own alerts alias" in refused.note
    assert not taken


def test_an_object_under_an_id_the_shipped_file_does_not_use_is_refused(tmp_path: Path) -> None:
    objects = kibana.load(kibana.DEFAULT_OBJECTS)
    view = next(o for o in objects if o["type"] == "index-pattern")
    # Elastic Security's default data view, overwritten by id on import.
    path = tmp_path / "objects.ndjson"
    path.write_text(json.dumps({**view, "id": "security-solution-default"}) + "\n")

    with pytest.raises(kibana.KibanaObjectsError, match="security-solution-default: an id the "):
        kibana.checked(path, "nis2triage")


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://admin:Pw0rd@127.0.0.1:99999/", "Port out of range"),
        ("http://[::1", "(a URL that does not parse)"),
        ("127.0.0.1:5601", "not a URL: write it with http:// or https://"),
    ],
)
def test_a_kibana_url_that_cannot_be_used_is_said_before_anything_changes(
    url: str, said: str
) -> None:
    problem = kibana.url_problem(url)

    assert problem is not None and said in problem
    assert "Pw0rd" not in problem


def test_what_a_server_answered_reaches_the_terminal_escaped() -> None:
    change = layout.Change(
        "Kibana objects", "http://127.0.0.1:5601", "failed", "\x1b[2J\u202eok\x07"
    )

    assert change.line().endswith("(\\u001b[2J\\u202eok\\u0007)")


def test_a_prefix_that_begins_with_another_agents_index_name_creates_no_index(
    es: Elasticsearch, index_name: str
) -> None:
    # Prefix `<p>-alerts` beside agent `<p>`: each of its templates collides with `<p>`'s
    # alerts template (`<p>-alerts-*`, same priority) and is refused, and its nine indices
    # were created all the same under that template, every one of them (state, outbox,
    # pseudonyms) joining the alerts' read alias that Elastic Security reads.
    first, alias = f"{index_name}-a", f"{index_name}-shared"
    second = f"{first}-alerts"
    try:
        layout.apply(es, first, alias, NO_EXTRAS)
        changes = layout.apply(es, second, alias, NO_EXTRAS)
        covered = sorted(es.indices.get_alias(name=alias).body)
        made = [w for w in INDICES if es.indices.exists(index=f"{second}-{w}-000001")]
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=f"{index_name}-*")

    assert covered == [f"{first}-alerts-000001"]
    assert made == []
    indices = [c for c in changes if c.what == "index"]
    assert len(indices) == 9
    assert all(c.status == "skipped" for c in indices)
    assert indices[0].note.startswith("not created: its template was refused")
    templates = [c for c in changes if c.what == "index template"]
    assert f"The index template {first}-alerts matches" in templates[0].note
    assert "a prefix that does not begin with another agent's index name" in templates[0].note
