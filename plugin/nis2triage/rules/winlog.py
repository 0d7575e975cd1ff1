"""Windows events exported from EVTX to JSON, turned into the documents Winlogbeat indexes.

An EVTX export holds `Event.System` (channel, event id, computer, time) and
`Event.EventData` (the provider's named fields). Winlogbeat ships the same event
as `winlog.*` plus the ECS fields its Sysmon, Security and PowerShell modules
fill in; Sigma rules converted with pySigma's ECS pipeline query those ECS
fields, so a faithful document is what makes a regression test meaningful.
The field tables (winlog_fields) follow Winlogbeat's Sysmon module.

One difference, on purpose: Winlogbeat moves the fields it maps out of
`winlog.event_data`; here every EventData field also stays there under its
original name, so a rule keyed on a name no pipeline maps (`Hashes`, `Details`)
still finds it. A Sysmon index written by Winlogbeat itself lacks those copies.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from nis2triage.errors import ConfigError
from nis2triage.rules.winlog_fields import CHANNEL_ECS, SYSMON_ECS

SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"
_LONG_FIELDS = {"process.pid", "process.parent.pid", "process.thread.id"}
_LONG_FIELDS |= {"source.port", "destination.port"}
_IP_FIELDS = {"source.ip", "destination.ip"}
_BOOL_FIELDS = {"sysmon.file.archived", "sysmon.file.is_executable"}
_LOG_LEVELS = {1: "critical", 2: "error", 3: "warning", 4: "information", 5: "verbose"}
_HIVES = {
    "HKEY_LOCAL_MACHINE": "HKLM",
    "HKLM": "HKLM",
    "HKEY_CURRENT_USER": "HKCU",
    "HKCU": "HKCU",
    "HKEY_USERS": "HKU",
    "HKU": "HKU",
    "HKEY_CLASSES_ROOT": "HKCR",
    "HKCR": "HKCR",
    "HKEY_CURRENT_CONFIG": "HKCC",
    "HKCC": "HKCC",
}


def read_exported(text: str, source: str = "<text>") -> list[dict[str, Any]]:
    """The events in an EVTX-to-JSON export: one object, or several written back to back."""
    decoder = json.JSONDecoder()
    events: list[dict[str, Any]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return events
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not JSON: {exc.msg}", path=source, line=exc.lineno) from exc
        if not isinstance(obj, dict) or "Event" not in obj:
            raise ConfigError("expected an object with an 'Event' key", path=source)
        events.append(obj)


def to_document(exported: Mapping[str, Any]) -> dict[str, Any]:
    """The document Winlogbeat would index for one exported event."""
    return nest(to_flat_document(exported))


def to_flat_document(exported: Mapping[str, Any]) -> dict[str, Any]:
    """The same document with dotted field names (`winlog.event_data` stays one object)."""
    event = exported["Event"]
    system = event["System"]
    event_id = int(system["EventID"])
    channel = str(system["Channel"])
    data = _event_data(event.get("EventData"))

    doc = _system_fields(system, event_id, channel)
    doc["winlog.event_data"] = data
    user_data = _user_data(event.get("UserData"))
    if user_data:
        doc["winlog.user_data"] = user_data

    table = SYSMON_ECS.get(event_id, {}) if channel == SYSMON_CHANNEL else CHANNEL_ECS.get(channel)
    for name, field in (table or {}).items():
        if data.get(name) not in (None, ""):
            _put_typed(doc, field, data[name])
    if channel == SYSMON_CHANNEL:
        _sysmon_extras(doc, data, event_id)
    _derived(doc)
    return doc


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys turned into nested objects, as Elasticsearch returns `_source`."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _system_fields(system: Mapping[str, Any], event_id: int, channel: str) -> dict[str, Any]:
    provider = system.get("Provider", {}).get("#attributes", {})
    execution = (system.get("Execution") or {}).get("#attributes", {})
    security = (system.get("Security") or {}).get("#attributes", {})
    computer = str(system["Computer"])
    doc: dict[str, Any] = {
        "@timestamp": system["TimeCreated"]["#attributes"]["SystemTime"],
        "event.code": str(event_id),
        "event.kind": "event",
        "event.provider": provider.get("Name"),
        "host.name": computer,
        "log.level": _LOG_LEVELS.get(int(system.get("Level") or 4), "information"),
        "winlog.channel": channel,
        "winlog.event_id": str(event_id),
        "winlog.provider_name": provider.get("Name"),
        "winlog.provider_guid": _braced(provider.get("Guid")),
        "winlog.computer_name": computer,
        "winlog.record_id": str(system.get("EventRecordID", "")),
        "winlog.process.pid": execution.get("ProcessID"),
        "winlog.process.thread.id": execution.get("ThreadID"),
        "winlog.user.identifier": security.get("UserID"),
    }
    if channel == SYSMON_CHANNEL:
        doc["event.module"] = "sysmon"
    return {key: value for key, value in doc.items() if value is not None}


def _event_data(raw: Any) -> dict[str, str]:
    # Winlogbeat ships every EventData value as a string, whatever its XML type.
    if not isinstance(raw, Mapping):
        return {}
    return {k: _text(v) for k, v in raw.items() if not k.startswith("#") and v is not None}


def _user_data(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or not raw:
        return {}
    name, body = next(iter(raw.items()))
    fields = _event_data(body)
    return {"xml_name": name, **fields}


def _sysmon_extras(doc: dict[str, Any], data: Mapping[str, str], event_id: int) -> None:
    if "UtcTime" in data:
        doc["@timestamp"] = data["UtcTime"].replace(" ", "T") + "Z"
    if data.get("RuleName", "-") != "-":
        doc["rule.name"] = data["RuleName"]
    if "\\" in data.get("User", ""):
        doc["user.domain"], doc["user.name"] = data["User"].split("\\", 1)
    if "winlog.user.identifier" in doc:
        doc["user.id"] = doc["winlog.user.identifier"]
    hashes = data.get("Hashes") or data.get("Hash")
    if hashes:
        _put_hashes(doc, hashes, "file" if event_id in (6, 7, 15) else "process")
    if "TargetObject" in data:
        _put_registry(doc, data["TargetObject"])
    # ECS meaning; Winlogbeat's own script sets `signed: true` for any non-empty value.
    if data.get("Signed") in ("true", "false"):
        doc["file.code_signature.signed"] = data["Signed"] == "true"
    direction = {"true": "egress", "false": "ingress"}.get(data.get("Initiated", ""))
    if direction:
        doc["network.direction"] = direction


def _put_hashes(doc: dict[str, Any], hashes: str, namespace: str) -> None:
    for pair in hashes.split(","):
        algorithm, _, value = pair.partition("=")
        if value.strip("0"):
            key = algorithm.strip().lower()
            field = f"{namespace}.pe.imphash" if key == "imphash" else f"{namespace}.hash.{key}"
            doc[field] = value.lower()


def _put_registry(doc: dict[str, Any], path: str) -> None:
    parts = path.split("\\")
    hive = _HIVES.get(parts[0].upper())
    if hive:
        doc["registry.hive"] = hive
        doc["registry.key"] = "\\".join(parts[1:])
    doc["registry.value"] = parts[-1]


def _derived(doc: dict[str, Any]) -> None:
    """Names and directories Winlogbeat derives from the paths it moved."""
    for path_field, name_field in (
        ("process.executable", "process.name"),
        ("process.parent.executable", "process.parent.name"),
    ):
        if path_field in doc:
            doc[name_field] = _basename(doc[path_field])
    path = doc.get("file.path")
    if path and "file.name" not in doc:
        doc["file.name"] = _basename(path)
        doc["file.directory"] = path[: -len(doc["file.name"]) - 1] if "\\" in path else ""
        _, dot, ext = doc["file.name"].rpartition(".")
        if dot:
            doc["file.extension"] = ext


def _put_typed(doc: dict[str, Any], field: str, value: str) -> None:
    if field in _LONG_FIELDS:
        if value.lstrip("-").isdigit():
            doc[field] = int(value)
    elif field in _IP_FIELDS:
        # An address Sysmon could not resolve ('-', '') would make the whole document fail.
        try:
            doc[field] = str(ipaddress.ip_address(value))
        except ValueError:
            return
    elif field in _BOOL_FIELDS:
        doc[field] = value.lower() == "true"
    else:
        doc[field] = value


def _basename(path: str) -> str:
    return path.replace("/", "\\").rsplit("\\", 1)[-1]


def _braced(guid: str | None) -> str | None:
    return f"{{{guid}}}" if guid and not guid.startswith("{") else guid


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
