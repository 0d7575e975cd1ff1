"""Render a report payload: JSON, Markdown, PDF (fpdf2) and the chart, and write them to disk."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpdf import FPDF
from matplotlib import get_data_path

from nis2triage.reports import chart
from nis2triage.reports.document import Block, Bullets, Chart, Heading, Para, Table, blocks

# fpdf2 subsets fonts through fontTools, which logs every table it prunes at INFO.
logging.getLogger("fontTools").setLevel(logging.WARNING)
# DejaVu Sans ships with matplotlib: a Unicode font (EUR sign, accents) with no extra download.
FONTS = Path(get_data_path()) / "fonts" / "ttf"


@dataclass(frozen=True)
class Rendered:
    name: str  # file stem, e.g. early_warning-1a2b3c4d5e6f
    json: str
    markdown: str
    pdf: bytes
    png: bytes


def stem(payload: dict[str, Any]) -> str:
    # A request's reference is the authority's text (CCB/2026/17): in a file name, only
    # what every file system takes.
    ref = re.sub(r"[^A-Za-z0-9._-]", "_", str(payload.get("request_ref") or ""))[:40]
    return f"{payload['report_type']}{'-' + ref if ref else ''}-{payload['reference'][:12]}"


def render(payload: dict[str, Any]) -> Rendered:
    name = stem(payload)
    doc = blocks(payload)
    png = chart.draw(payload["chart"])
    return Rendered(
        name=name,
        json=json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False),
        markdown=markdown(doc, f"{name}.png"),
        pdf=pdf(doc, png),
        png=png,
    )


def write(directory: Path, payload: dict[str, Any], folder: str | None = None) -> list[Path]:
    """The four files under directory/<folder>/, each written whole or not at all.

    `folder` is the incident's local id; the payload's own `incident_id` (the default) is
    its keyed reference when the payload was pseudonymised."""
    out = directory / (folder or payload["incident_id"])
    # Reports are TLP:AMBER: the agent's user and its group (the SOC) only, whatever the umask.
    out.mkdir(mode=0o750, parents=True, exist_ok=True)
    out.chmod(0o750)
    done = render(payload)
    files = {
        f"{done.name}.json": done.json.encode(),
        f"{done.name}.md": done.markdown.encode(),
        f"{done.name}.pdf": done.pdf,
        f"{done.name}.png": done.png,
    }
    paths = []
    for filename, data in files.items():
        path = out / filename
        partial = path.with_suffix(path.suffix + ".part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(partial, 0o640)
        os.replace(partial, path)
        paths.append(path)
    return paths


def markdown(doc: list[Block], png_name: str) -> str:
    lines: list[str] = []
    for block in doc:
        lines += _md(block, png_name)
        lines.append("")
    return "\n".join(lines)


def _md(block: Block, png_name: str) -> list[str]:
    if isinstance(block, Heading):
        return ["#" * block.level + " " + block.text]
    if isinstance(block, Para):
        return [block.text]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    if isinstance(block, Chart):
        return [f"![{block.caption}]({png_name})"]
    cells = [block.header, tuple("---" for _ in block.header), *block.rows]
    return ["| " + " | ".join(_cell(c) for c in row) + " |" for row in cells]


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def pdf(doc: list[Block], png: bytes) -> bytes:
    out = FPDF(format="A4")
    out.set_auto_page_break(True, margin=15)
    out.add_font("DejaVu", "", str(FONTS / "DejaVuSans.ttf"))
    out.add_font("DejaVu", "B", str(FONTS / "DejaVuSans-Bold.ttf"))
    out.add_page()
    for block in doc:
        _pdf_block(out, block, png)
    return bytes(out.output())


def _pdf_block(out: FPDF, block: Block, png: bytes) -> None:
    width = out.epw
    if isinstance(block, Heading):
        out.set_font("DejaVu", "B", 15 if block.level == 1 else 12)
        out.ln(2)
        out.multi_cell(width, 7, block.text, new_x="LMARGIN", new_y="NEXT")
    elif isinstance(block, Para):
        out.set_font("DejaVu", "", 9)
        out.multi_cell(width, 5, block.text, new_x="LMARGIN", new_y="NEXT")
    elif isinstance(block, Bullets):
        out.set_font("DejaVu", "", 9)
        for item in block.items:
            out.multi_cell(width, 5, f"• {item}", new_x="LMARGIN", new_y="NEXT")
    elif isinstance(block, Chart):
        out.image(io.BytesIO(png), w=width)
        out.set_font("DejaVu", "", 8)
        out.multi_cell(width, 4, block.caption, new_x="LMARGIN", new_y="NEXT")
    else:
        _pdf_table(out, block)
    out.ln(1)


def _pdf_table(out: FPDF, table: Table) -> None:
    out.set_font("DejaVu", "", 8)
    with out.table(text_align="LEFT", line_height=4.5, first_row_as_headings=True) as grid:
        for row in (table.header, *table.rows):
            cells = grid.row()
            for value in row:
                cells.cell(value or " ")
