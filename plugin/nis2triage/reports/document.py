"""A report as a document a person reads and signs: blocks that Markdown and PDF both render.

Built from the payload alone, which is already pseudonymised, so what a
person prints, signs and uploads by hand is what an API would have received.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from nis2triage.reports.stages import BY_REPORT, FIELD_LABELS

MAX_ROWS = 30
# A table cell longer than this is written as a note below its table: a row taller than
# a page cannot be drawn (fpdf2 refuses it), and a page of prose reads badly in a cell.
# 400 characters of the widest letter fill some 33 lines of a five-column table's cell.
LONG_CELL = 400
LONG_CELL_LINES = 8
# Characters that act instead of showing: controls, bidirectional overrides and
# isolates, zero-width characters, line and paragraph separators, lone surrogates; the
# pattern takes every candidate (all but printable ASCII) and `_show` picks them out.
_HIDDEN = re.compile(r"\r\n?|[^\n\x20-\x7e]")


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Chart:
    caption: str


Block = Heading | Para | Table | Bullets | Chart


def text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(text(v) for v in value) or "-"
    return str(value)


def shown(value: str) -> str:
    """`value` with every character that acts rather than shows written as \\uXXXX.

    A right-to-left override would make a document say something else than its text
    (an address written backwards), a zero-width space would hide inside a word; the
    reader sees them instead. Line breaks stay, as one kind (\\n)."""
    return _HIDDEN.sub(_show, value)


def _show(match: re.Match[str]) -> str:
    char = match.group()
    if char.startswith("\r"):
        return "\n"
    if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        return f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}"
    return char


def when(moment: dict[str, Any] | None) -> str:
    if not moment or not moment.get("utc"):
        return "-"
    return f"{moment['brussels']} ({moment['utc']})"


def blocks(p: dict[str, Any]) -> list[Block]:
    stage = BY_REPORT[p["report_type"]]
    entity = p["entity"]
    title = f"NIS2 {stage.label.lower()}: {entity['legal_name']}"
    return readable(
        [
            Heading(title, 1),
            Para(f"{p['tlp']}. {p['legal_basis']}. Reference {p['reference']}."),
            Para(f"Generated {when(p['generated'])} by {p['prepared_by']}."),
            *_requirements(p, stage.requires),
            *_entity(entity),
            *_incident(p),
            *_significance(p.get("significance")),
            *_impact(p),
            *_narrative(p),
            *_deadlines(p),
            *_gdpr(p.get("gdpr")),
            *_indicators(p["indicators"]),
            *_detections(p),
            *_timeline(p["timeline"]),
            Heading("Event rate and anomaly score"),
            Chart(f"Events per {p['chart'].get('interval', '?')} and alert scores, UTC"),
            *_sign_off(),
        ]
    )


def readable(doc: list[Block]) -> list[Block]:
    """The document as a person must see it, whatever the texts in it: characters that
    act shown, and cells too long for a table row written as notes below the table."""
    out: list[Block] = []
    for block in doc:
        block = _shown(block)
        out += _notes(block) if isinstance(block, Table) else [block]
    return out


def _shown(block: Block) -> Block:
    return mapped(block, shown)


def mapped(block: Block, change: Callable[[str], str]) -> Block:
    """`block` with `change` applied to every text in it."""
    if isinstance(block, Heading | Para):
        return replace(block, text=change(block.text))
    if isinstance(block, Chart):
        return replace(block, caption=change(block.caption))
    if isinstance(block, Bullets):
        return Bullets(tuple(change(item) for item in block.items))
    rows = tuple(tuple(change(cell) for cell in row) for row in block.rows)
    return Table(tuple(change(cell) for cell in block.header), rows)


def _notes(table: Table) -> list[Block]:
    notes: list[Block] = []
    rows: list[tuple[str, ...]] = []
    for row in table.rows:
        cells = list(row)
        for i, cell in enumerate(row):
            if _long(cell):
                # Each note is two blocks (its title, its text): counted by notes, not blocks.
                number = len(notes) // 2 + 1
                label = row[0] if i else f"row {len(rows) + 1}"
                notes.append(Para(f"Note {number}, {table.header[i]} of {label[:80]}:"))
                notes.append(Para(cell))
                cells[i] = f"see note {number} below the table"
        rows.append(tuple(cells))
    return [Table(table.header, tuple(rows)), *notes]


def _long(cell: str) -> bool:
    return len(cell) > LONG_CELL or cell.count("\n") >= LONG_CELL_LINES


def _requirements(p: dict[str, Any], fields: tuple[str, ...]) -> list[Block]:
    rows = tuple(
        (FIELD_LABELS[r["field"]], "provided" if r["provided"] else "MISSING")
        for r in p["requirements"]
    )
    return [Heading("What this stage requires"), Table(("item", "state"), rows)]


def _entity(e: dict[str, Any]) -> list[Block]:
    rows = (
        ("Legal name", text(e["legal_name"])),
        ("Enterprise number (KBO/BCE)", text(e["enterprise_number"])),
        ("Sector", text(e["sector"])),
        ("Class (NIS2 Art. 3)", text(e["entity_class"])),
        ("Type (IR 2024/2690 Art. 1)", text(e.get("ir_type"))),
        ("24/7 contact", text(e.get("contact_24x7"))),
    )
    return [Heading("Entity"), Table(("field", "value"), rows)]


def _incident(p: dict[str, Any]) -> list[Block]:
    rows = (
        ("Incident", p["incident_id"]),
        ("Summary", text(p["summary"])),
        ("Status", text(p["status"])),
        ("First detected", when(p["detected_at"])),
        ("Aware (clock start)", when(p["aware_at"])),
        ("Handling ended", when(p["handled_at"])),
        ("Suspected unlawful or malicious act", p["suspected_unlawful_or_malicious"]),
        ("Possible cross-border impact", p["possible_cross_border_impact"]),
        ("Member States affected", text(p["member_states_affected"])),
        ("Affected services", text(p["affected_services"])),
        ("Affected assets", text(p["affected_assets"])),
        ("Severity of the detections", text(p["severity"])),
    )
    return [Heading("Incident"), Table(("field", "value"), rows)]


def _significance(s: dict[str, Any] | None) -> list[Block]:
    if s is None:
        return [Heading("Significance"), Para("Not assessed.")]
    out: list[Block] = [
        Heading("Significance"),
        Para(f"Verdict: {s['verdict']} (criteria for entity type {s['entity_kind']})."),
    ]
    if s["met"]:
        rows = tuple((m["id"], m["source"], m["evidence"]) for m in s["met"])
        out.append(Table(("criterion met", "source", "evidence"), rows))
    if s.get("excluded_by"):
        out.append(Para(f"Excluded by {s['excluded_by']['id']}: {s['excluded_by']['evidence']}"))
    if s["missing"]:
        out += [Para("Facts still missing for a verdict:"), Bullets(tuple(s["missing"]))]
    return out


def _impact(p: dict[str, Any]) -> list[Block]:
    rows = tuple((k.replace("_", " "), text(v)) for k, v in p["impact"].items())
    if not rows:
        return [Heading("Impact"), Para("No impact recorded yet.")]
    return [Heading("Impact"), Table(("fact", "value"), rows)]


def _narrative(p: dict[str, Any]) -> list[Block]:
    fields = (
        "description",
        "threat_type",
        "root_cause",
        "mitigation_applied",
        "mitigation_ongoing",
    )
    rows = tuple((FIELD_LABELS[f].rsplit(" (", 1)[0], text(p.get(f))) for f in fields)
    return [Heading("Description, cause and mitigation"), Table(("item", "value"), rows)]


def _deadlines(p: dict[str, Any]) -> list[Block]:
    rows = tuple(
        (d["report"], when(d["due"]), d["state"], f"{d['basis']}; {d['source']}")
        for d in p["deadlines"]
    )
    sent = tuple(
        (r["report"], r["status"], text(r["sent_at"]), text(r["reference"]))
        for r in p["previous_reports"]
    )
    out: list[Block] = [Heading("Deadlines"), Table(("report", "due", "state", "basis"), rows)]
    if sent:
        out.append(Table(("report", "status", "sent (UTC)", "reference"), sent))
    return out


def _gdpr(g: dict[str, Any] | None) -> list[Block]:
    if g is None:
        return []
    return [
        Heading("Personal data: separate GDPR notification"),
        Para(
            "Personal data are involved. Notifying the CCB does not discharge the duty to "
            f"notify the {g['authority']} within 72 hours of awareness ({g['source']}), "
            "unless the breach is unlikely to result in a risk to people."
        ),
        Table(
            ("field", "value"),
            (
                ("Aware of the breach", when(g["aware_at"])),
                ("Due", when(g["due"])),
                ("Status", text(g["status"])),
                ("GBA/APD reference", text(g["reference"])),
            ),
        ),
    ]


def _indicators(i: dict[str, list[str]]) -> list[Block]:
    items = tuple(f"{kind}: {text(values)}" for kind, values in i.items() if values)
    return [Heading("Indicators of compromise"), Bullets(items or ("none recorded",))]


def _detections(p: dict[str, Any]) -> list[Block]:
    rows = tuple(
        (
            text(d["start"]),
            d["detector"],
            d["severity"],
            f"{d['score']} / {d['threshold']}",
            text(d["summary"]),
        )
        for d in p["detections"][:MAX_ROWS]
    )
    shown = f"{len(rows)} of {p['detections_total']} detections."
    return [
        Heading("Detections"),
        Para(shown),
        Table(("start (UTC)", "detector", "severity", "score / bar", "summary"), rows),
    ]


def _timeline(steps: list[dict[str, Any]]) -> list[Block]:
    rows = tuple((when(s["at"]), s["who"], s["action"], text(s["why"])) for s in steps)
    return [Heading("Timeline"), Table(("when", "who", "what", "why"), rows)]


def _sign_off() -> list[Block]:
    rows = (
        ("Prepared by", ""),
        ("Reviewed and approved by", ""),
        ("Date and signature", ""),
        ("Submitted to the CCB on / its reference", ""),
    )
    return [Heading("Sign-off"), Table(("role", "name, date, signature"), rows)]
