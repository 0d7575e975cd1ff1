"""The Kibana saved objects in deploy/kibana/: checked against the index templates, then imported.

The objects are kept in Kibana's export format (NDJSON, one object per line),
so an analyst can change them in Kibana and export them back. Before importing,
`nis2triage setup --kibana URL` checks that the file parses as Kibana expects
and that every field an object uses exists in the agent's mappings with a type
that suits the use: a renamed field would otherwise show as an empty panel.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import re
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from nis2triage.errors import ConfigError
from nis2triage.esclient import ESSettings
from nis2triage.layout import Change
from nis2triage.notify.channel import Answer, post_bounded
from nis2triage.notify.deadline import AnswerTooLarge, Deadline
from nis2triage.store import INDICES, IndexSpec

DEFAULT_OBJECTS = Path(__file__).resolve().parents[2] / "deploy" / "kibana" / "nis2triage.ndjson"
SHIPPED_PREFIX = "nis2triage"
# Attributes Kibana stores as JSON inside a string, per object type.
JSON_STRINGS: dict[str, tuple[str, ...]] = {
    "index-pattern": ("fields", "fieldAttrs", "fieldFormatMap", "runtimeFieldMap", "sourceFilters"),
    "search": ("kibanaSavedObjectMeta.searchSourceJSON",),
    "dashboard": ("panelsJSON", "optionsJSON", "kibanaSavedObjectMeta.searchSourceJSON"),
}
# The types the shipped file uses, and all setup imports: a `config` object would
# rewrite Kibana's advanced settings (the indices Elastic Security reads, say), a `url`
# one a short link to anywhere.
OBJECT_TYPES = frozenset({"index-pattern", "search", "lens", "dashboard"})
NUMBERS = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}
DATES = {"date", "date_nanos"}
AGGREGATABLE = NUMBERS | DATES | {"keyword", "ip", "boolean"}
# The field types each use accepts; `None` means any indexed field.
ACCEPTS: dict[str, set[str] | None] = {
    "time": DATES,
    "date_histogram": DATES,
    "terms": AGGREGATABLE,
    "unique_count": AGGREGATABLE,
    "sort": AGGREGATABLE,
    "min": NUMBERS | DATES,
    "max": NUMBERS | DATES,
    "sum": NUMBERS,
    "average": NUMBERS,
    "median": NUMBERS,
    "column": None,
    "query": None,
}
# The whole import request, connect to last byte; and the answer read at most (Kibana
# answers an import with a line per object: ten objects take a few kB).
IMPORT_DEADLINE = 60.0
MAX_ANSWER = 1024 * 1024
RECORDS = "___records___"  # Lens's pseudo-field for a document count
_KQL_FIELD = re.compile(r'(?:^|[\s(])([A-Za-z@_][\w.@]*)\s*:(?=(?:[^"]*"[^"]*")*[^"]*$)')


class KibanaObjectsError(ConfigError):
    """The saved objects file is malformed or uses fields the mappings do not have."""


@dataclass(frozen=True)
class FieldUse:
    """One field an object reads, from which data view, and for what."""

    object_id: str
    data_view: str
    field: str
    use: str


def load(path: Path) -> list[dict[str, Any]]:
    """Objects from an NDJSON export; a line that is not one saved object is an error."""
    try:
        text = path.read_text()
    except OSError as exc:
        # The default sits in the checkout; an installed package does not carry it.
        raise KibanaObjectsError(
            f"{path}: cannot read the Kibana objects ({exc.strerror}); pass --kibana-objects "
            "with the deploy/kibana/nis2triage.ndjson you copied "
            "(e.g. /etc/nis2triage/kibana/nis2triage.ndjson)"
        ) from exc
    objects = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise KibanaObjectsError(f"{path}:{number}: not JSON ({exc})") from exc
        problem = _shape_problem(obj)
        if problem:
            raise KibanaObjectsError(f"{path}:{number}: {problem}")
        objects.append(obj)
    return objects


def _shape_problem(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return "not a JSON object"
    for key, kind in (("id", str), ("type", str), ("attributes", dict), ("references", list)):
        if not isinstance(obj.get(key), kind):
            return f"{key} missing or not a {kind.__name__}"
    for ref in obj["references"]:
        if not all(isinstance(ref.get(k), str) for k in ("name", "type", "id")):
            return f"{obj['id']}: a reference lacks name, type or id"
    for path in JSON_STRINGS.get(obj["type"], ()):
        try:
            json.loads(_attribute(obj, path))
        except (KeyError, TypeError, ValueError) as exc:
            return f"{obj['id']}: attribute {path} is not a JSON string ({exc})"
    return None


def _attribute(obj: dict[str, Any], dotted: str) -> Any:
    value: Any = obj["attributes"]
    for part in dotted.split("."):
        value = value[part]
    return value


def field_uses(objects: list[dict[str, Any]]) -> Iterator[FieldUse]:
    for obj in objects:
        if obj["type"] == "index-pattern" and obj["attributes"].get("timeFieldName"):
            yield FieldUse(obj["id"], obj["id"], obj["attributes"]["timeFieldName"], "time")
        elif obj["type"] == "search":
            yield from _search_uses(obj)
        elif obj["type"] == "lens":
            yield from _lens_uses(obj)


def _ref(obj: dict[str, Any], name: str) -> str:
    found = [r["id"] for r in obj["references"] if r["name"] == name]
    if not found:
        raise KibanaObjectsError(f"{obj['id']}: no reference named {name}")
    return str(found[0])


def _search_uses(obj: dict[str, Any]) -> Iterator[FieldUse]:
    attrs = obj["attributes"]
    source = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
    view = _ref(obj, source["indexRefName"])
    for column in attrs.get("columns", []):
        yield FieldUse(obj["id"], view, column, "column")
    for field, _order in attrs.get("sort", []):
        yield FieldUse(obj["id"], view, field, "sort")
    for field in query_fields(source.get("query", {}).get("query", "")):
        yield FieldUse(obj["id"], view, field, "query")


def _lens_uses(obj: dict[str, Any]) -> Iterator[FieldUse]:
    state = obj["attributes"]["state"]
    layers = state["datasourceStates"]["formBased"]["layers"]
    for layer_id, layer in layers.items():
        view = _ref(obj, f"indexpattern-datasource-layer-{layer_id}")
        for column in layer["columns"].values():
            field = column.get("sourceField")
            if field and field != RECORDS:
                yield FieldUse(obj["id"], view, field, column["operationType"])
        for field in query_fields(state.get("query", {}).get("query", "")):
            yield FieldUse(obj["id"], view, field, "query")


def query_fields(kql: str) -> list[str]:
    """Field names in a KQL query of the simple `field : value` kind our objects use."""
    return _KQL_FIELD.findall(kql)


def mapped_fields(mapping: dict[str, Any]) -> dict[str, str]:
    """Dotted field name to type; fields Elasticsearch does not index map to 'unindexed'."""
    found: dict[str, str] = {}

    def walk(properties: dict[str, Any], stem: str) -> None:
        for name, spec in properties.items():
            path = f"{stem}{name}"
            if spec.get("enabled") is False or spec.get("index") is False:
                found[path] = "unindexed"
            elif "properties" in spec:
                walk(spec["properties"], f"{path}.")
            else:
                found[path] = spec.get("type", "object")

    walk(mapping.get("properties", {}), "")
    return found


def field_problems(
    objects: list[dict[str, Any]],
    indices: dict[str, IndexSpec] = INDICES,
    prefix: str = SHIPPED_PREFIX,
) -> list[str]:
    """Every use of a field that its data view's mapping does not support, in words."""
    views = {o["id"]: o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    problems = []
    for use in field_uses(objects):
        title = views.get(use.data_view)
        what = title.removeprefix(f"{prefix}-") if title else None
        if what not in indices:
            problems.append(f"{use.object_id}: data view {use.data_view} is not an agent index")
            continue
        kind = mapped_fields(indices[what].mapping).get(use.field)
        accepted = ACCEPTS.get(use.use, set())
        if kind is None or kind == "unindexed":
            problems.append(f"{use.object_id}: {use.field} is not an indexed field of {title}")
        elif accepted is not None and kind not in accepted:
            problems.append(f"{use.object_id}: {use.field} is {kind}, {use.use} needs another type")
    return problems


def reference_problems(objects: list[dict[str, Any]]) -> list[str]:
    """References to objects missing from the file (Kibana would import them broken)."""
    present = {(o["type"], o["id"]) for o in objects}
    return [
        f"{o['id']}: refers to {r['type']} {r['id']}, which the file lacks"
        for o in objects
        for r in o["references"]
        if (r["type"], r["id"]) not in present
    ]


def panel_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Dashboard panels whose reference name has no matching entry in `references`."""
    problems = []
    for obj in (o for o in objects if o["type"] == "dashboard"):
        names = {r["name"] for r in obj["references"]}
        for panel in json.loads(obj["attributes"]["panelsJSON"]):
            wanted = f"{panel.get('panelIndex')}:{panel.get('panelRefName')}"
            if wanted not in names:
                problems.append(f"{obj['id']}: panel {panel.get('panelIndex')} refers to nothing")
    return problems


def for_prefix(objects: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The objects pointed at another index prefix, under ids and titles of their own.

    The import overwrites by id: with the shipped ids, a second agent's setup against the
    same Kibana space took the first one's dashboards over. Each id's `nis2triage` head
    becomes the prefix (`acme-alerts`, `acme-dashboard`), references follow, and titles
    say the prefix, so two agents' dashboards can be told apart in one list.
    """
    if prefix == SHIPPED_PREFIX:
        return objects
    return [_moved(obj, prefix) for obj in objects]


def moved_id(object_id: str, prefix: str) -> str:
    """An object's id under `prefix`: distinct prefixes give distinct ids."""
    if prefix == SHIPPED_PREFIX:
        return object_id
    return prefix + object_id.removeprefix(SHIPPED_PREFIX)


def _moved(obj: dict[str, Any], prefix: str) -> dict[str, Any]:
    attributes = dict(obj["attributes"])
    if obj["type"] == "index-pattern":
        attributes["title"] = attributes["title"].replace(SHIPPED_PREFIX, prefix, 1)
        if "name" in attributes:
            attributes["name"] = attributes["name"].replace(SHIPPED_PREFIX, prefix, 1)
    elif "title" in attributes:
        attributes["title"] = f"{attributes['title']} ({prefix})"
    references = [{**ref, "id": moved_id(ref["id"], prefix)} for ref in obj["references"]]
    return {
        **obj,
        "id": moved_id(obj["id"], prefix),
        "attributes": attributes,
        "references": references,
    }


def kind_problems(objects: list[dict[str, Any]], prefix: str) -> list[str]:
    """Objects of a type setup does not import, objects under ids the shipped file does
    not use (the import overwrites by id: Elastic Security's own data view, say), and
    data views over other indices than the agent's own (`objects` pointed at `prefix`)."""
    own = sorted(f"{prefix}-{what}" for what in INDICES)
    shipped = {moved_id(shipped_id, prefix) for shipped_id in _shipped_ids()}
    problems = []
    for obj in objects:
        if obj["type"] not in OBJECT_TYPES:
            problems.append(
                f"{obj['id']}: a {obj['type']!r} object, which setup does not import (only "
                f"{', '.join(sorted(OBJECT_TYPES))}, as the shipped file has)"
            )
        elif obj["type"] == "index-pattern" and obj["attributes"].get("title") not in own:
            problems.append(
                f"{obj['id']}: a data view over {obj['attributes'].get('title')!r}, not one of "
                f"the agent's indices ({', '.join(own)})"
            )
        elif obj["id"] not in shipped:
            problems.append(
                f"{obj['id']}: an id the shipped file does not use; the import replaces "
                "whatever Kibana holds under it, so only the shipped ids are imported"
            )
    return problems


@functools.cache
def _shipped_ids() -> frozenset[str]:
    return frozenset(obj["id"] for obj in load(DEFAULT_OBJECTS))


def url_problem(url: str) -> str | None:
    """Why `url` cannot be Kibana's, said before setup changes anything."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"--kibana {shown_url(url)}: {exc}; write it like https://kibana.example:5601"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return (
            f"--kibana {shown_url(url)}: not a URL: write it with http:// or https:// "
            "(e.g. https://kibana.example:5601)"
        )
    return None if port is None or port > 0 else f"--kibana {shown_url(url)}: port 0"


def checked(path: Path, prefix: str) -> list[dict[str, Any]]:
    """Load, check against the mappings, and point at `prefix`; raise with every problem."""
    objects = load(path)
    problems = kind_problems(for_prefix(objects, prefix), prefix)
    problems += reference_problems(objects) + panel_problems(objects)
    problems += field_problems(objects)
    if problems:
        raise KibanaObjectsError(f"{path}: " + "; ".join(problems))
    return for_prefix(objects, prefix)


def import_objects(
    url: str,
    objects: list[dict[str, Any]],
    settings: ESSettings,
    timeout: float = 30.0,
    deadline: float = IMPORT_DEADLINE,
    max_answer: int = MAX_ANSWER,
) -> Change:
    """POST the objects to Kibana's saved objects import API, replacing ours if present.

    A failure is a `failed` change, not a crash: setup has already made the role and
    the API key. The request has a total `deadline` (connect to last byte) besides the
    per-read `timeout`, and at most `max_answer` bytes of answer are read, as the HTTP
    notification channel does: requests bounds each read only, so a Kibana (or a
    proxy) that drips its answer held setup for ever, and one that sent 400 MB had it
    read them whole.
    """
    shown = shown_url(url)
    problem = url_problem(url)
    if problem is not None:
        return Change("Kibana objects", shown, "failed", problem)
    parts = urlsplit(url)
    boundary = uuid.uuid4().hex
    headers = {
        "kbn-xsrf": "nis2triage",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Connection": "close",
        **_credential(parts, settings),
    }
    body = _multipart(objects, boundary)
    limit = Deadline(deadline)
    try:
        answer = _post(parts, headers, body, settings, limit, timeout, max_answer)
    except AnswerTooLarge:
        why = (
            f"Kibana answered over {max_answer:,} bytes, not read further: is --kibana "
            "Kibana's own URL? Kibana's log says what went wrong"
        )
        return Change("Kibana objects", shown, "failed", why)
    except TimeoutError:
        # The last wait is cut to what is left of the deadline, so look at the clock.
        if limit.passed:
            why = f"Kibana did not finish answering within {deadline:g} s"
        else:
            why = f"no answer from Kibana within {timeout:g} s"
        why += ": check that it is up and reachable from here, then run setup again"
        return Change("Kibana objects", shown, "failed", why)
    except (http.client.HTTPException, OSError) as exc:
        why = f"Kibana did not answer ({type(exc).__name__}): check the --kibana URL"
        return Change("Kibana objects", shown, "failed", why)
    return _import_change(shown, answer, len(objects))


def shown_url(url: str) -> str:
    """The URL without the user name and password it may carry (they are never printed),
    or nothing of it when it does not even parse as one."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a URL that does not parse)"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def _credential(parts: SplitResult, settings: ESSettings) -> dict[str, str]:
    """The Authorization header: the URL's user and password if it has them (given for
    this Kibana), else the credential setup uses for Elasticsearch."""
    if parts.username is not None:
        user, password = unquote(parts.username), unquote(parts.password or "")
    elif settings.api_key:
        return {"Authorization": f"ApiKey {settings.api_key}"}
    elif settings.username:
        user, password = settings.username, settings.password or ""
    else:
        return {}
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _multipart(objects: list[dict[str, Any]], boundary: str) -> bytes:
    """The objects as the one NDJSON file part Kibana's import API takes."""
    ndjson = "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in objects)
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="nis2triage.ndjson"\r\n'
        "Content-Type: application/ndjson\r\n\r\n"
    )
    return head.encode() + ndjson.encode() + f"\r\n--{boundary}--\r\n".encode()


def _post(
    parts: SplitResult,
    headers: dict[str, str],
    body: bytes,
    settings: ESSettings,
    deadline: Deadline,
    timeout: float,
    max_answer: int,
) -> Answer:
    conn = _connection(parts, settings, min(timeout, deadline.left()))
    target = f"{parts.path.rstrip('/')}/api/saved_objects/_import?overwrite=true"
    return post_bounded(conn, target, headers, body, deadline, timeout, max_answer)


def _connection(
    parts: SplitResult, settings: ESSettings, timeout: float
) -> http.client.HTTPConnection:
    # Environment proxy variables are not used, as for Elasticsearch.
    host, port = parts.hostname or "", parts.port
    if parts.scheme == "http":
        return http.client.HTTPConnection(host, port, timeout=timeout)
    context = ssl.create_default_context(cafile=settings.ca_file)
    if not settings.verify_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)


def _first_line(text: str) -> str:
    """What a server that is not Kibana's API answered, in one line."""
    if text.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
        return "an HTML page, not Kibana's saved objects API: is --kibana Kibana's own URL?"
    return " ".join(text.split())[:300]


def _import_change(shown: str, answer: Answer, sent: int) -> Change:
    try:
        result = json.loads(answer.text)
    except ValueError:
        result = None
    if not isinstance(result, dict):
        result = {}
    status = answer.status
    if 300 <= status < 400:
        # Following it could hand the credential to another host.
        where = shown_url(answer.headers.get("location", "")) or "nowhere (no Location)"
        why = (
            f"HTTP {status}: Kibana redirects to {where}, which setup does not follow; "
            "pass Kibana's own URL (the one the redirect names, if it is Kibana) as --kibana"
        )
        return Change("Kibana objects", shown, "failed", why)
    if status != 200 or not result.get("success"):
        errors = result.get("errors")
        if isinstance(errors, list) and errors:
            why = _summary(errors)
        else:
            why = " ".join(str(result.get("message") or _first_line(answer.text)).split())[:300]
        return Change("Kibana objects", shown, "failed", f"HTTP {status}: {why}")
    done = result.get("successResults", [])
    if sent and not done and not result.get("successCount"):
        # A proxy or a stand-in answering success to anything: nothing is in Kibana.
        why = f"HTTP {status}: success said, but none of the {sent} objects sent was imported"
        return Change("Kibana objects", shown, "failed", why)
    replaced = sum(1 for r in done if isinstance(r, dict) and r.get("overwrite"))
    note = f"{len(done)} imported, {replaced} replaced"
    return Change("Kibana objects", shown, "updated" if replaced else "created", note)


def _summary(errors: list[Any], shown: int = 3) -> str:
    """Objects Kibana did not import: how many, and the first few with why."""
    first = []
    for error in errors[:shown]:
        error = error if isinstance(error, dict) else {}
        detail: dict[str, Any] = error["error"] if isinstance(error.get("error"), dict) else {}
        why = detail.get("message") or detail.get("type") or "no reason given"
        first.append(f"{str(error.get('id'))[:80]} ({str(why)[:120]})")
    more = f"; {len(errors) - shown} more" if len(errors) > shown else ""
    return f"{len(errors)} objects not imported: {', '.join(first)}{more}"
