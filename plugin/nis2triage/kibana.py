"""The Kibana saved objects in deploy/kibana/: checked against the index templates, then imported.

The objects are kept in Kibana's export format (NDJSON, one object per line),
so an analyst can change them in Kibana and export them back. Before importing,
`nis2triage setup --kibana URL` checks that the file parses as Kibana expects
and that every field an object uses exists in the agent's mappings with a type
that suits the use: a renamed field would otherwise show as an empty panel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from nis2triage.errors import ConfigError
from nis2triage.esclient import ESSettings
from nis2triage.layout import Change
from nis2triage.store import INDICES, IndexSpec

DEFAULT_OBJECTS = Path(__file__).resolve().parents[2] / "deploy" / "kibana" / "nis2triage.ndjson"
SHIPPED_PREFIX = "nis2triage"
# Attributes Kibana stores as JSON inside a string, per object type.
JSON_STRINGS: dict[str, tuple[str, ...]] = {
    "index-pattern": ("fields", "fieldAttrs", "fieldFormatMap", "runtimeFieldMap", "sourceFilters"),
    "search": ("kibanaSavedObjectMeta.searchSourceJSON",),
    "dashboard": ("panelsJSON", "optionsJSON", "kibanaSavedObjectMeta.searchSourceJSON"),
}
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
    """The objects with their data views pointed at another index prefix."""
    if prefix == SHIPPED_PREFIX:
        return objects
    moved = []
    for obj in objects:
        if obj["type"] == "index-pattern":
            title = obj["attributes"]["title"].replace(SHIPPED_PREFIX, prefix, 1)
            obj = {**obj, "attributes": {**obj["attributes"], "title": title}}
        moved.append(obj)
    return moved


def checked(path: Path, prefix: str) -> list[dict[str, Any]]:
    """Load, check against the mappings, and point at `prefix`; raise with every problem."""
    objects = load(path)
    problems = reference_problems(objects) + panel_problems(objects)
    problems += field_problems(objects)
    if problems:
        raise KibanaObjectsError(f"{path}: " + "; ".join(problems))
    return for_prefix(objects, prefix)


def import_objects(
    url: str, objects: list[dict[str, Any]], settings: ESSettings, timeout: float = 30.0
) -> Change:
    """POST the objects to Kibana's saved objects import API, replacing ours if present."""
    body = "".join(json.dumps(o, separators=(",", ":")) + "\n" for o in objects)
    headers = {"kbn-xsrf": "nis2triage"}
    auth: tuple[str, str] | None = None
    if settings.api_key:
        headers["Authorization"] = f"ApiKey {settings.api_key}"
    elif settings.username:
        auth = (settings.username, settings.password or "")
    try:
        response = requests.post(
            f"{url.rstrip('/')}/api/saved_objects/_import",
            params={"overwrite": "true"},
            headers=headers,
            files={"file": ("nis2triage.ndjson", body.encode(), "application/ndjson")},
            auth=auth,
            verify=settings.ca_file or settings.verify_certs,
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        # A failed change, not a crash: setup has already made the role and the API key,
        # and must still print the key (it is shown once).
        why = f"Kibana did not answer ({type(exc).__name__}): check the --kibana URL"
        return Change("Kibana objects", url, "failed", why)
    return _import_change(url, response)


def _first_line(text: str) -> str:
    """What a server that is not Kibana's API answered, in one line."""
    if text.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
        return "an HTML page, not Kibana's saved objects API: is --kibana Kibana's own URL?"
    return " ".join(text.split())[:300]


def _import_change(url: str, response: requests.Response) -> Change:
    try:
        result = response.json()
    except ValueError:
        result = {}
    if response.status_code != 200 or not result.get("success"):
        errors = result.get("errors") or result.get("message") or _first_line(response.text)
        return Change("Kibana objects", url, "failed", f"HTTP {response.status_code}: {errors}")
    done = result.get("successResults", [])
    replaced = sum(1 for r in done if r.get("overwrite"))
    note = f"{len(done)} imported, {replaced} replaced"
    return Change("Kibana objects", url, "updated" if replaced else "created", note)
