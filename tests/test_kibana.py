"""The saved objects in deploy/kibana/: their format, their fields, and the import request.

No Kibana runs here: the import is checked against a real HTTP server on
loopback that records what it receives, not against Kibana itself.
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from nis2triage import esclient, kibana, provision
from nis2triage.esclient import ESSettings
from nis2triage.layout import Capabilities, Change, template_body
from nis2triage.store import INDICES, IndexSpec

from support import write_agent_config

OBJECTS = kibana.load(kibana.DEFAULT_OBJECTS)
NO_EXTRAS = Capabilities(data_streams=False, ilm=False)


def templates() -> dict[str, IndexSpec]:
    """The mappings exactly as the index templates carry them."""
    return {
        what: IndexSpec(template_body("nis2triage", what, spec, NO_EXTRAS)["template"]["mappings"])
        for what, spec in INDICES.items()
    }


def without(indices: dict[str, IndexSpec], what: str, dotted: str) -> dict[str, IndexSpec]:
    """A copy of the mappings with one field removed."""
    changed = copy.deepcopy(indices)
    properties = changed[what].mapping["properties"]
    *parents, leaf = dotted.split(".")
    for part in parents:
        properties = properties[part]["properties"]
    del properties[leaf]
    return changed


def test_the_file_holds_one_saved_object_per_line() -> None:
    lines = kibana.DEFAULT_OBJECTS.read_text().splitlines()

    assert len(lines) == len(OBJECTS) == 10
    assert {o["type"] for o in OBJECTS} == {"index-pattern", "search", "lens", "dashboard"}
    assert len({o["id"] for o in OBJECTS}) == len(OBJECTS)


def test_every_reference_and_panel_resolves_within_the_file() -> None:
    assert kibana.reference_problems(OBJECTS) == []
    assert kibana.panel_problems(OBJECTS) == []


def test_every_field_the_objects_use_is_in_the_templates_with_a_fitting_type() -> None:
    assert kibana.field_problems(OBJECTS, templates()) == []


USES = sorted(
    {(u.data_view.removeprefix("nis2triage-"), u.field) for u in kibana.field_uses(OBJECTS)}
)


@pytest.mark.parametrize(("what", "dotted"), USES, ids=[f"{w}:{f}" for w, f in USES])
def test_removing_a_used_field_from_its_template_fails_the_check(what: str, dotted: str) -> None:
    problems = kibana.field_problems(OBJECTS, without(templates(), what, dotted))

    assert problems
    assert all(f"{dotted} is not an indexed field" in p for p in problems)


def test_a_field_of_the_wrong_type_fails_the_check() -> None:
    changed = copy.deepcopy(templates())
    changed["alerts"].mapping["properties"]["nis2triage"]["properties"]["route"] = {"type": "text"}

    problems = kibana.field_problems(OBJECTS, changed)

    assert problems == [
        "nis2triage-lens-alerts-by-route: nis2triage.route is text, terms needs another type"
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"id": "x", "type": "search", "attributes": {}}', "references missing"),
        (
            '{"id": "x", "type": "search", "attributes": {}, "references": [{"id": "y"}]}',
            "lacks name",
        ),
        (
            '{"id": "x", "type": "dashboard", "references": [], '
            '"attributes": {"panelsJSON": "[", "optionsJSON": "{}"}}',
            "panelsJSON is not a JSON string",
        ),
    ],
    ids=["not-json", "not-object", "no-references", "bad-reference", "bad-json-string"],
)
def test_a_malformed_line_is_refused_with_its_line_number(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "objects.ndjson"
    path.write_text(kibana.DEFAULT_OBJECTS.read_text() + line + "\n")

    with pytest.raises(kibana.KibanaObjectsError, match=f"objects.ndjson:11: .*{message}"):
        kibana.load(path)


def test_another_prefix_moves_the_data_views_and_gives_every_object_its_own_id() -> None:
    moved = kibana.for_prefix(OBJECTS, "acme")

    titles = sorted(o["attributes"]["title"] for o in moved if o["type"] == "index-pattern")
    assert titles == ["acme-alerts", "acme-incidents"]
    ids = {o["id"] for o in moved}
    assert "acme-dashboard" in ids and "acme-search-alerts" in ids
    dashboard = next(o for o in moved if o["type"] == "dashboard")
    assert dashboard["attributes"]["title"] == "nis2triage: alerts and NIS2 incidents (acme)"
    # The references follow the ids, so the moved file is whole by itself.
    assert kibana.reference_problems(moved) == [] and kibana.panel_problems(moved) == []
    assert kibana.kind_problems(moved, "acme") == []
    # The shipped file is left as it is.
    assert OBJECTS[0]["id"] == "nis2triage-alerts"


def test_two_prefixes_share_no_id_in_one_kibana_space() -> None:
    # The import overwrites by (type, id): a shared id would take the other agent's object.
    first, second, default = (
        {(o["type"], o["id"]) for o in kibana.for_prefix(OBJECTS, prefix)}
        for prefix in ("acme", "acme-ports", "nis2triage")
    )

    assert len(first) == len(second) == len(default) == len(OBJECTS)
    assert not first & second and not first & default and not second & default


# --- the import request, against a real server on loopback ---------------------------------


@dataclass
class FakeKibana:
    url: str = ""
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    # None: as Kibana answers an import it took whole, one result per object sent.
    answer: tuple[int, dict[str, Any]] | None = None


def took_whole(headers: Any, body: bytes) -> dict[str, Any]:
    [part] = parts(dict(headers.items()), body)
    ids = [json.loads(line)["id"] for line in part.get_payload(decode=True).decode().splitlines()]
    return {"success": True, "successCount": len(ids), "successResults": [{"id": i} for i in ids]}


@pytest.fixture
def fake_kibana() -> Iterator[FakeKibana]:
    server = FakeKibana()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            server.requests.append(("POST", self.path, dict(self.headers.items()), body))
            status, answer = server.answer or (200, took_whole(self.headers, body))
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield server
    httpd.shutdown()
    httpd.server_close()


def parts(headers: dict[str, str], body: bytes) -> list[Any]:
    """The multipart body as MIME parts, parsed by the standard library."""
    head = f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    return list(message.iter_parts())


ADMIN = ESSettings(hosts=("http://127.0.0.1:9",), username="admin", password="pw-123456")


def test_the_import_is_a_multipart_post_with_the_xsrf_header_and_credentials(
    fake_kibana: FakeKibana,
) -> None:
    kibana.import_objects(fake_kibana.url, OBJECTS, ADMIN)

    [(method, path, headers, _)] = fake_kibana.requests
    assert (method, path) == ("POST", "/api/saved_objects/_import?overwrite=true")
    assert headers["kbn-xsrf"]
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"admin:pw-123456").decode()
    assert headers["Content-Type"].startswith("multipart/form-data; boundary=")


def test_the_import_sends_the_objects_as_one_ndjson_file_part(fake_kibana: FakeKibana) -> None:
    kibana.import_objects(fake_kibana.url, OBJECTS, ADMIN)

    [(_, _, headers, body)] = fake_kibana.requests
    [part] = parts(headers, body)
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_filename().endswith(".ndjson")
    sent = [json.loads(line) for line in part.get_payload(decode=True).decode().splitlines()]
    assert sent == OBJECTS


def test_an_api_key_goes_in_the_authorization_header(fake_kibana: FakeKibana) -> None:
    settings = ESSettings(hosts=("http://127.0.0.1:9",), api_key="a2V5OnNlY3JldA==")

    kibana.import_objects(fake_kibana.url, OBJECTS, settings)

    assert fake_kibana.requests[0][2]["Authorization"] == "ApiKey a2V5OnNlY3JldA=="


@pytest.mark.parametrize(
    ("answer", "status", "note"),
    [
        (
            (200, {"success": True, "successResults": [{"id": "a"}, {"id": "b"}]}),
            "created",
            "2 imported, 0 replaced",
        ),
        (
            (200, {"success": True, "successResults": [{"id": "a", "overwrite": True}]}),
            "updated",
            "1 imported, 1 replaced",
        ),
        (
            (200, {"success": False, "errors": [{"id": "a", "error": {"type": "conflict"}}]}),
            "failed",
            "conflict",
        ),
        ((401, {"message": "Unauthorized"}), "failed", "HTTP 401: Unauthorized"),
        (
            (200, {"success": True, "successResults": []}),
            "failed",
            f"success said, but none of the {len(OBJECTS)} objects sent was imported",
        ),
    ],
    ids=["new", "replaced", "object-errors", "unauthorized", "nothing-imported"],
)
def test_kibanas_answer_becomes_the_setup_line(
    fake_kibana: FakeKibana, answer: tuple[int, dict[str, Any]], status: str, note: str
) -> None:
    fake_kibana.answer = answer

    change = kibana.import_objects(fake_kibana.url, OBJECTS, ADMIN)

    assert change.status == status
    assert note in change.note


@pytest.mark.usefixtures("agent_env")
def test_setup_with_kibana_imports_the_objects_pointed_at_the_agents_prefix(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    fake_kibana: FakeKibana,
) -> None:
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    command = ["setup", "--config", str(config), "--kibana", fake_kibana.url]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "nis2triage.cli", *command], capture_output=True, text=True
        )
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=f"{index_name}-st-*")

    assert done.returncode == 0, done.stderr
    [(_, _, headers, body)] = fake_kibana.requests
    sent = [json.loads(x) for x in parts(headers, body)[0].get_payload(decode=True).splitlines()]
    titles = {o["attributes"]["title"] for o in sent if o["type"] == "index-pattern"}
    assert titles == {f"{index_name}-st-alerts", f"{index_name}-st-incidents"}
    assert f"created    Kibana objects    {fake_kibana.url}" in done.stdout


def test_a_missing_objects_file_says_to_pass_kibana_objects(tmp_path: Path) -> None:
    with pytest.raises(kibana.KibanaObjectsError, match="pass --kibana-objects"):
        kibana.checked(tmp_path / "nis2triage.ndjson", "nis2triage")


def test_a_kibana_that_does_not_answer_is_a_failed_line_not_a_crash() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"

    change = kibana.import_objects(url, OBJECTS, ADMIN, timeout=5)

    assert (change.status, change.name) == ("failed", url)
    assert "check the --kibana URL" in change.note


def test_a_failed_kibana_import_is_counted_once() -> None:
    result = provision.SetupResult(
        changes=[Change("Kibana objects", "http://127.0.0.1:1", "failed", "did not answer")],
    )

    text = provision.render(result)

    # Each object counted once: the failed import is not also among those "not" changed.
    assert "0 changed, 0 not, 1 failed" in text


def test_a_server_that_is_not_kibana_is_said_in_one_line() -> None:
    # The standard library's handler answers a POST with its HTML error page (501).
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        change = kibana.import_objects(
            f"http://127.0.0.1:{httpd.server_address[1]}", OBJECTS, ADMIN
        )
    finally:
        httpd.shutdown()
        httpd.server_close()

    assert change.status == "failed"
    assert change.note == (
        "HTTP 501: an HTML page, not Kibana's saved objects API: is --kibana Kibana's own URL?"
    )


@pytest.mark.parametrize("objects", ["x.ndjson", ""])
@pytest.mark.usefixtures("agent_env")
def test_kibana_objects_without_a_kibana_url_is_refused_before_anything_changes(
    es: Elasticsearch,
    es_settings: esclient.ESSettings,
    index_name: str,
    tmp_path: Path,
    objects: str,
) -> None:
    # It was ignored without a word: an operator meaning to import the objects got none.
    config = write_agent_config(tmp_path, es_settings, index_name, f"{index_name}-st")
    named = str(tmp_path / objects) if objects else ""
    command = ["setup", "--config", str(config), "--kibana-objects", named]

    done = subprocess.run(
        [sys.executable, "-m", "nis2triage.cli", *command], capture_output=True, text=True
    )

    assert done.returncode != 0
    assert "no --kibana URL says where: give both" in done.stderr
    assert not es.indices.exists_index_template(name=f"{index_name}-st-*")
