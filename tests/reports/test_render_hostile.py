"""Reports on hostile texts (from the break run): any text the payload holds renders,
as text, the same in Markdown and PDF."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from pypdf import PdfReader

from nis2triage.reports.render import (
    MISSING_GLYPH,
    MISSING_NOTE,
    render,
    write,
)

from report_sample import sample_payload

Payload = dict[str, Any]


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def squeezed(text: str) -> str:
    """Text without white space: a PDF's extracted text breaks lines where it wrapped."""
    return "".join(text.split())


def _narrative(field: str) -> Callable[[Payload, str], None]:
    def put(p: Payload, text: str) -> None:
        p[field] = text

    return put


def _why(p: Payload, text: str) -> None:
    p["timeline"][-1]["why"] = text


def _reference(p: Payload, text: str) -> None:
    p["previous_reports"] = [
        {"report": "early_warning", "status": "sent", "sent_at": None, "reference": text}
    ]


def _account(p: Payload, text: str) -> None:
    p["indicators"]["accounts"] = [text]


def _summary(p: Payload, text: str) -> None:
    p["detections"][0]["summary"] = text


def _evidence(p: Payload, text: str) -> None:
    p["significance"]["met"][0]["evidence"] = text


# Every place an analyst's or an event's text lands in a report.
PLACES = {
    "description": _narrative("description"),
    "root_cause": _narrative("root_cause"),
    "mitigation": _narrative("mitigation_ongoing"),
    "timeline_reason": _why,
    "ccb_reference": _reference,
    "account": _account,
    "detection_summary": _summary,
    "criterion_evidence": _evidence,
}


def payload_with(place: str, text: str, pseudonymise: bool = False) -> Payload:
    p = sample_payload("final_report", pseudonymise=pseudonymise)
    PLACES[place](p, text)
    return p


LONG_TEXTS = {
    "prose_100kb": "START The attacker reused a password. " + "word " * 20_000 + "END",
    "lines_400": "START\n" + "\n".join(f"line {i}" for i in range(400)) + "\nEND",
    "token_5000": "START " + "A" * 5_000 + " END",
    "prose_3_3kb": "START " + "The attacker reused a password. " * 130 + "END",
}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("kind", LONG_TEXTS)
def test_a_long_text_anywhere_still_makes_a_pdf_holding_it(place: str, kind: str) -> None:
    text = LONG_TEXTS[kind]

    done = render(payload_with(place, text))

    shown = squeezed(pdf_text(done.pdf))
    assert done.pdf.startswith(b"%PDF")
    assert squeezed(text) in shown
    assert squeezed(text) in squeezed(md_text(done.markdown))


def test_a_120_kb_root_cause_is_written_below_its_table_in_both_documents() -> None:
    text = "The attacker reused a password. " * 3_750  # 120 kB

    done = render(payload_with("root_cause", text))

    assert "| Likely underlying cause | see note 1 below the table |" in done.markdown
    assert "Note 1, value of Likely underlying cause:\n\n" + text.strip() in done.markdown
    assert "Note 1, value of Likely underlying cause:" in pdf_text(done.pdf)
    assert len(PdfReader(io.BytesIO(done.pdf)).pages) > 20


def test_a_write_with_a_long_reason_writes_all_four_files(tmp_path: Path) -> None:
    written = write(tmp_path, payload_with("timeline_reason", "closed because " * 300), "i1")

    assert sorted(p.suffix for p in written) == [".json", ".md", ".pdf", ".png"]


HOSTILE = (
    "<script>alert(1)</script> <img src=x onerror=alert(2)> "
    "![t](http://127.0.0.1:9/p.png) <!-- hidden --> *em* _em_ `code` ~~del~~ &lt; "
    "[Submit here](https://evil.example/) <https://evil.example/> www.evil.example "
    "mail@evil.example a|b"
)


def tokens(markdown: str) -> Iterator[Any]:
    """Every token a GitHub-like renderer (tables, strikethrough) makes of `markdown`."""
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    for token in md.parse(markdown):
        yield token
        yield from token.children or []


def md_text(markdown: str) -> str:
    """The text a reader of `markdown` sees, without its layout."""
    return "".join(t.content for t in tokens(markdown) if t.type == "text")


def literal(markdown: str) -> list[str]:
    """The kinds of markup in `markdown` other than the report's own."""
    own = {"heading", "paragraph", "table", "thead", "tbody", "tr", "th", "td", "bullet_list",
           "list_item", "inline", "text", "softbreak", "hardbreak", "image"}  # fmt: skip
    found = {t.type.removesuffix("_open").removesuffix("_close") for t in tokens(markdown)}
    return sorted(found - own)


@pytest.mark.parametrize("place", PLACES)
def test_hostile_text_is_shown_as_text_in_markdown(place: str) -> None:
    done = render(payload_with(place, HOSTILE))

    assert literal(done.markdown) == []
    images = [t for t in tokens(done.markdown) if t.type == "image"]
    assert [t.attrs["src"] for t in images] == ["final_report-kkkkkkkkkkkk.png"]
    assert HOSTILE in md_text(done.markdown)


def test_hostile_description_is_escaped_in_the_markdown_text() -> None:
    done = render(payload_with("description", "<script>alert(1)</script> ![t](http://h/p.png)"))

    assert (
        "| Detailed description of the incident | \\<script\\>alert(1)\\</script\\> "
        "\\!\\[t\\](http\\://h/p.png) |"
    ) in done.markdown


def test_a_comment_says_the_same_in_markdown_and_pdf() -> None:
    done = render(payload_with("description", "before <!-- hidden --> after"))

    assert "before <!-- hidden --> after" in md_text(done.markdown)
    assert "before <!-- hidden --> after" in pdf_text(done.pdf)


def test_an_account_name_cannot_add_a_heading_or_link_when_names_are_kept() -> None:
    name = "svc\n# Injected heading\n[Submit here](https://evil.example/)"

    done = render(payload_with("account", name))

    assert not any(line.startswith("# Injected") for line in done.markdown.splitlines())
    assert "- accounts: svc \\# Injected heading \\[Submit here\\](https\\://evil" in done.markdown
    assert [t.tag for t in tokens(done.markdown) if t.type == "heading_open"].count("h1") == 1


@pytest.mark.parametrize("brk", ["\r", "\r\n", "\n", "\u2028", "\x85"])
def test_a_line_break_in_a_cell_keeps_the_table_row_whole(brk: str) -> None:
    done = render(payload_with("root_cause", f"first{brk}| second"))

    rows = [line for line in done.markdown.splitlines() if "Likely underlying cause" in line]
    assert len(rows) == 2  # the requirement and the narrative
    assert rows[1].startswith("| Likely underlying cause | first")
    assert rows[1].endswith("\\| second |")


def test_line_breaks_in_prose_stay_lines_and_start_no_list_or_heading() -> None:
    p = sample_payload("final_report", pseudonymise=False)
    p["significance"]["excluded_by"] = {"id": "x", "evidence": "ok\n- a\n1. b\n===\n    code"}

    done = render(p)

    assert "Excluded by x: ok\\\n\\- a\\\n1\\. b\\\n\\===\\\ncode\n" in done.markdown
    assert literal(done.markdown) == []


ACTING = "\u202e\u202a\u2066\u2069\u200b\u200d\ufeff\x07\x1b\t"


def test_characters_that_act_are_shown_in_markdown_and_pdf_and_kept_in_json() -> None:
    text = f"see{ACTING}here"
    visible = "see\\u202e\\u202a\\u2066\\u2069\\u200b\\u200d\\ufeff\\u0007\\u001b\\u0009here"

    done = render(payload_with("root_cause", text))

    assert visible.replace("\\", "\\\\") in done.markdown  # a backslash escaped, as Markdown
    assert visible in squeezed(pdf_text(done.pdf))
    assert json.loads(done.json)["root_cause"] == text
    assert not any(c in done.markdown for c in ACTING)


SCRIPTS = "中文 ภาษาไทย हिन्दी 😀"


def test_characters_the_font_lacks_are_marked_and_the_pdf_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        done = render(payload_with("description", f"Ransom note in {SCRIPTS} end"))

    text = pdf_text(done.pdf)
    assert squeezed(MISSING_NOTE) in squeezed(text)
    assert f"Ransom note in {MISSING_GLYPH}{MISSING_GLYPH} " in text
    assert "end" in text
    assert "missing the following glyphs" not in caplog.text
    assert f"Ransom note in {SCRIPTS} end" in done.markdown
    assert f"Ransom note in {SCRIPTS} end" in json.loads(done.json)["description"]


def test_a_pdf_of_drawable_text_has_no_note() -> None:
    done = render(payload_with("description", "Zürich, Ελλάδα, Київ, 5 €"))

    assert squeezed(MISSING_NOTE) not in squeezed(pdf_text(done.pdf))
    assert "Zürich, Ελλάδα, Київ, 5 €" in pdf_text(done.pdf)
