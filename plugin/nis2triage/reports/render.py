"""Render a report payload: JSON, Markdown, PDF (fpdf2) and the chart, and write them to disk."""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import json
import logging
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import TTFFont
from matplotlib import get_data_path

from nis2triage.errors import Nis2TriageError
from nis2triage.reports import chart
from nis2triage.reports.document import (
    Block,
    Bullets,
    Chart,
    Heading,
    Para,
    Table,
    blocks,
    mapped,
)
from nis2triage.reports.stages import cli_name

# fpdf2 subsets fonts through fontTools, which logs every table it prunes at INFO.
logging.getLogger("fontTools").setLevel(logging.WARNING)
# DejaVu Sans ships with matplotlib: a Unicode font (EUR sign, accents) with no extra download.
FONTS = Path(get_data_path()) / "fonts" / "ttf"
# DejaVu Sans has no Chinese, Japanese, Korean, Thai, Devanagari or emoji, and fpdf2 drops
# a character its font lacks with no more than a log line. No font of the project's
# dependencies covers them (matplotlib's LastResortHE draws a box per Unicode block, and
# only from matplotlib 3.10), and a system font may be missing on the machine that renders:
# such a character is drawn as this marker, and the PDF says the JSON holds the exact text.
MISSING_GLYPH = "\u25a1"  # WHITE SQUARE, which DejaVu Sans has
MISSING_NOTE = (
    f"Characters this PDF's font cannot draw are shown as {MISSING_GLYPH}: the JSON "
    "payload of this report holds the exact text."
)
# Markdown's own characters, anywhere in a text: the report's texts are analysts' and
# events' words, to be read as written, never as HTML, entities, links, images, headings,
# emphasis, code or table cells (CommonMark lets a backslash escape any ASCII punctuation).
# An underscore inside a word (root_cause) never marks emphasis in CommonMark: left as
# written, so that names read as they are; one at a word's edge is escaped.
_MD_SIGNS = re.compile(r"([\\`*{}\[\]<>&#|~!]|(?<!\w)_|_(?!\w))")
# At the start of a line: list items, setext underlines and ordered lists ("1." or "1)").
_MD_LINE_START = re.compile(r"^(\d{0,9})([-+=.)])")
# GitHub and markdown-it link a bare web or mail address: not once its ":" or "@" is escaped.
_MD_AUTOLINK = re.compile(r":(?=//)|@|(?<=www)\.", re.IGNORECASE)


class RenderError(Nis2TriageError):
    """A report payload that cannot be rendered: rendering it again fails the same way."""


class ReportFolderError(Nis2TriageError):
    """The folder for an incident's report files is not one the agent may write into."""


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


def rendered(payload: dict[str, Any]) -> Rendered:
    """`render`, with a failure said as the report stage that cannot be produced and why."""
    try:
        return render(payload)
    except Exception as exc:  # fpdf2, matplotlib or a payload no stage foresaw
        stage = cli_name(str(payload.get("report_type")))
        raise RenderError(
            f"the {stage} report cannot be rendered ({type(exc).__name__}: "
            f"{str(exc)[:300]}); rendering it again fails the same way: submit the report "
            "by hand (the outbox entry's JSON payload holds its text) and report this as a bug"
        ) from exc


def write(directory: Path, payload: dict[str, Any], folder: str | None = None) -> list[Path]:
    """The four files under directory/<folder>/, each written whole or not at all.

    `folder` is the incident's local id; the payload's own `incident_id` (the default) is
    its keyed reference when the payload was pseudonymised. Raises RenderError when the
    payload cannot be rendered, ReportFolderError when the folder is a symbolic link."""
    out = directory / (folder or payload["incident_id"])
    done = rendered(payload)
    files = {
        f"{done.name}.json": done.json.encode(),
        f"{done.name}.md": done.markdown.encode(),
        f"{done.name}.pdf": done.pdf,
        f"{done.name}.png": done.png,
    }
    _make_parents(out.parent)

    fd = _open_folder(out)
    try:
        for filename, data in files.items():
            _write_file(fd, filename, data)
    finally:
        os.close(fd)
    return [out / filename for filename in files]


# Reports are TLP:AMBER: the agent's user and its group (the SOC) only, whatever the umask.
FOLDER_MODE = 0o750
FILE_MODE = 0o640
# In a report folder, names the index prefix of the agent whose reports it holds (`claim`).
OWNER_FILE = ".nis2triage-prefix"
MAX_OWNER_BYTES = 1024


def _make_parents(parent: Path) -> None:
    """Create the missing folders above an incident's, each 0750 whatever the umask
    (mkdir's own mode is cut by the umask; chmod's is not)."""
    missing = [p for p in (parent, *parent.parents) if not p.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            continue  # made meanwhile by another writer, with its own mode
        folder.chmod(FOLDER_MODE)


def claim(directory: Path, prefix: str) -> None:
    """Mark `directory` as holding the reports of the agent whose index prefix is `prefix`,
    or raise ReportFolderError when it holds another prefix's.

    Two agents (production and staging, say) make the same incident ids from the same
    alerts, so in one folder the files of one would replace the other's."""
    _make_parents(directory.parent)
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=FOLDER_MODE)
        directory.chmod(FOLDER_MODE)
    held = _owner(directory / OWNER_FILE)
    if held is None:
        held = _write_owner(directory, prefix)
    _same_prefix(directory, held, prefix)


def check_claim(directory: Path, prefix: str) -> None:
    """Raise ReportFolderError where `claim` would, writing nothing (for `validate`); a
    folder or marker not there yet is claimed at start."""
    held = _owner(directory / OWNER_FILE)
    if held is not None:
        _same_prefix(directory, held, prefix)


def _same_prefix(directory: Path, held: str, prefix: str) -> None:
    if held != prefix:
        raise ReportFolderError(
            f"the report folder {directory} holds the reports of the agent with index prefix "
            f"{held!r} ({directory / OWNER_FILE}), and this one's prefix is {prefix!r}: the "
            "same alerts make the same incident ids, so one agent's files would replace the "
            "other's; give each configuration its own incidents.report_dir (or --out)"
        )


def _owner(marker: Path) -> str | None:
    """The prefix `marker` names, None when there is no marker."""
    try:
        # Not blocking: a FIFO opened for reading waits for a writer, and held the agent
        # at start (and `incidents report`) for ever.
        fd = os.open(marker, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise  # the folder cannot be used at all: said as such by the caller
        raise ReportFolderError(
            f"{marker} is a symbolic link; it names the agent whose reports the folder "
            "holds: make it a plain file, or remove it"
        ) from exc
    try:
        _plain(marker, os.fstat(fd).st_mode)
        held = os.read(fd, MAX_OWNER_BYTES).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)
    if not held:
        raise ReportFolderError(
            f"{marker} is empty (cut short by a crash, or made by hand); it names the agent "
            "whose reports the folder holds: write that agent's index prefix into it, or "
            "remove it and the agent writes its own"
        )
    return held


def _plain(marker: Path, mode: int) -> None:
    """Refuse a marker that is a directory, FIFO, socket or device: it names no prefix,
    and stays until a person removes it."""
    if stat.S_ISREG(mode):
        return
    kinds = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO"}
    kind = kinds.get(stat.S_IFMT(mode), "a socket or device")
    raise ReportFolderError(
        f"{marker} is not a plain file ({kind}); it names the agent whose reports the "
        "folder holds: remove it, and the agent writes it again"
    )


def _write_owner(directory: Path, prefix: str) -> str:
    """Write the marker whole by linking a finished file to its name, which fails when
    another agent wrote it first: the prefix the marker names afterwards."""
    # A name of this call's own: agents in two containers have the same process id (1),
    # and two writers of one .part file left a marker of both prefixes' bytes mixed.
    fd, name = tempfile.mkstemp(prefix=f"{OWNER_FILE}.", suffix=".part", dir=directory)
    partial = Path(name)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), FILE_MODE)
        fh.write(f"{prefix}\n".encode())
        # On disk before it has its name: a crash just after must not leave it empty.
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(partial, directory / OWNER_FILE)
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return _owner(directory / OWNER_FILE) or prefix


def _open_folder(out: Path) -> int:
    """The incident's folder, made if missing and set to 0750, opened without following
    a symbolic link: one would put a TLP:AMBER report, and the mode, wherever it points."""
    with contextlib.suppress(FileExistsError):
        out.mkdir(mode=FOLDER_MODE)
    try:
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        if out.is_symlink():
            raise ReportFolderError(
                f"the report folder {out} is a symbolic link (to {os.readlink(out)}); reports "
                "are not written through one: remove it, or point incidents.report_dir (or "
                "--out) at the folder itself"
            ) from exc
        raise
    os.fchmod(fd, FOLDER_MODE)
    return fd


def _write_file(folder: int, filename: str, data: bytes) -> None:
    """`data` into folder/filename by way of a .part file, so a reader sees all or nothing."""
    # A .part of this write's own: the agent's manual channel and `incidents report` may
    # write one report at once, and two writers of one .part left the file mixed.
    partial = f"{filename}.{secrets.token_hex(8)}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = os.open(partial, flags, FILE_MODE, dir_fd=folder)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), FILE_MODE)
        fh.write(data)
    os.replace(partial, filename, src_dir_fd=folder, dst_dir_fd=folder)


def markdown(doc: list[Block], png_name: str) -> str:
    lines: list[str] = []
    for block in doc:
        lines += _md(block, png_name)
        lines.append("")
    return "\n".join(lines)


def _md(block: Block, png_name: str) -> list[str]:
    if isinstance(block, Heading):
        return ["#" * block.level + " " + _inline(block.text)]
    if isinstance(block, Para):
        return [_prose(block.text)]
    if isinstance(block, Bullets):
        return [f"- {_inline(item, line=True)}" for item in block.items]
    if isinstance(block, Chart):
        return [f"![{_inline(block.caption)}]({png_name})"]
    header = tuple(_inline(c) for c in block.header)
    rows = [header, tuple("---" for _ in header), *(map(_inline, r) for r in block.rows)]
    return ["| " + " | ".join(row) + " |" for row in rows]


def md_escaped(text: str, line: bool = True) -> str:
    """Text of one line as Markdown that shows it as it is. Every text of a Markdown
    report goes through here: what an analyst typed or an event said is not markup.
    `line`: the text starts a line of its own (a list item, a paragraph's line), where a
    leading "-", "+", "=" or "1." would start a list or underline a heading."""
    text = _MD_SIGNS.sub(r"\\\1", text)
    text = _MD_AUTOLINK.sub(lambda m: "\\" + m.group(), text)
    return _MD_LINE_START.sub(r"\1\\\2", text.lstrip(" ")) if line else text


def _inline(text: str, line: bool = False) -> str:
    """A heading, list item or table cell: one line, its line breaks as spaces."""
    return md_escaped(" ".join(text.split("\n")), line)


def _prose(text: str) -> str:
    """A paragraph keeping its lines: a backslash at a line's end is a hard break."""
    lines = [md_escaped(line) for line in text.split("\n")]
    out = lines[0]
    for before, line in itertools.pairwise(lines):
        out += ("\\\n" if before and line else "\n") + line
    return out


def pdf(doc: list[Block], png: bytes) -> bytes:
    out = FPDF(format="A4")
    out.set_auto_page_break(True, margin=15)
    out.add_font("DejaVu", "", str(FONTS / "DejaVuSans.ttf"))
    out.add_font("DejaVu", "B", str(FONTS / "DejaVuSans-Bold.ttf"))
    out.add_page()
    drawable = _drawable(out)
    shown = [mapped(block, drawable) for block in doc]
    if shown != doc:
        shown.insert(1, Para(MISSING_NOTE))
    for block in shown:
        _pdf_block(out, block, png)
    return bytes(out.output())


def _drawable(out: FPDF) -> Callable[[str], str]:
    """What replaces, in a text, each character the fonts cannot draw (MISSING_GLYPH)."""
    fonts = [font for font in out.fonts.values() if isinstance(font, TTFFont)]
    known = set.intersection(*(set(font.cmap) for font in fonts))
    missing = re.compile(r"[^\n\x20-\x7e]")

    def drawn(char: re.Match[str]) -> str:
        return char.group() if ord(char.group()) in known else MISSING_GLYPH

    return lambda text: missing.sub(drawn, text)


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
