"""An index mapping for Windows events close to Winlogbeat's template, made case-insensitive.

Sigma matches strings case-insensitively; a plain `keyword` field does not. Every
string field here is a `keyword` with the built-in `lowercase` normalizer, so the
terms, wildcards and prefixes of a Lucene query string are lowercased the same
way as the indexed values (the normalizer needs no analysis-common module).
The `.caseless` sub-fields that pySigma's ECS pipeline targets (after Elastic's
own templates) are there too. Winlogbeat's template uses the `wildcard` type for
command lines; this build of Elasticsearch has none, so they are keywords.
"""

from __future__ import annotations

from typing import Any

# Lucene refuses a term longer than 32,766 bytes; 8,191 characters fit even at 4 bytes each.
MAX_KEYWORD_CHARS = 8191

KEYWORD: dict[str, Any] = {
    "type": "keyword",
    "normalizer": "lowercase",
    "ignore_above": MAX_KEYWORD_CHARS,
}
CASELESS: dict[str, Any] = {**KEYWORD, "fields": {"caseless": KEYWORD}}
SEARCHABLE_TEXT: dict[str, Any] = {**KEYWORD, "fields": {"text": {"type": "text"}}}

TYPED_FIELDS: dict[str, dict[str, Any]] = {
    "@timestamp": {"type": "date"},
    "process.pid": {"type": "long"},
    "process.parent.pid": {"type": "long"},
    "process.thread.id": {"type": "long"},
    "winlog.process.pid": {"type": "long"},
    "winlog.process.thread.id": {"type": "long"},
    "source.ip": {"type": "ip"},
    "destination.ip": {"type": "ip"},
    "source.port": {"type": "long"},
    "destination.port": {"type": "long"},
    "sysmon.file.archived": {"type": "boolean"},
    "sysmon.file.is_executable": {"type": "boolean"},
    "file.code_signature.signed": {"type": "boolean"},
    "process.executable": CASELESS,
    "process.name": CASELESS,
    "process.parent.executable": CASELESS,
    "process.parent.name": CASELESS,
    "file.path": CASELESS,
    "file.name": CASELESS,
    "process.command_line": SEARCHABLE_TEXT,
    "process.parent.command_line": SEARCHABLE_TEXT,
    "powershell.file.script_block_text": SEARCHABLE_TEXT,
}


def properties(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Dotted field names turned into the nested `properties` tree of a mapping."""
    root: dict[str, Any] = {}
    for name, spec in fields.items():
        *parents, leaf = name.split(".")
        node = root
        for part in parents:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[leaf] = dict(spec)
    return root


def index_body(extra: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Settings and mappings for an index of Windows events; `extra` adds or overrides fields."""
    return {
        "settings": {
            "number_of_shards": 1,
            "number_of_replicas": 0,
            # Sysmon, Security and PowerShell event data together name a few thousand fields.
            "index.mapping.total_fields.limit": 10_000,
        },
        "mappings": {
            # A string that looks like a date stays a keyword, as Sigma compares it as text.
            "date_detection": False,
            "dynamic_templates": [
                {"strings": {"match_mapping_type": "string", "mapping": KEYWORD}},
            ],
            "properties": properties({**TYPED_FIELDS, **(extra or {})}),
        },
    }
