"""Reports for every stage: what the law asks, readable as Markdown and PDF, minimised."""

from __future__ import annotations

import io
import re
import stat
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from pypdf import PdfReader

from nis2triage.reports import chart
from nis2triage.reports.render import render, write
from nis2triage.reports.stages import BY_REPORT, FIELD_LABELS, STAGES

from report_sample import ACCOUNTS, ATTACKER, sample_incident, sample_payload

REPORTS = [pytest.param(s.report, id=s.cli) for s in STAGES]


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def leaks(text: str) -> list[str]:
    """Raw addresses and account names in `text`, as whole words."""
    found = [ip for ip in re.findall(r"\d+(?:\.\d+){3}", text) if ip == ATTACKER]
    return found + [u for u in ACCOUNTS if re.search(rf"(?<![\w.-]){u}(?![\w.-])", text)]


@pytest.mark.parametrize("report", REPORTS)
def test_every_stage_lists_what_its_article_requires_in_markdown_and_pdf(report: str) -> None:
    stage = BY_REPORT[report]
    done = render(sample_payload(report))

    text = pdf_text(done.pdf)
    assert f"NIS2 {stage.label.lower()}: Test Entity NV" in done.markdown
    assert stage.article.removeprefix("NIS2 ") in done.markdown
    for field in stage.requires:
        assert f"| {FIELD_LABELS[field]} | provided |" in done.markdown
        assert FIELD_LABELS[field] in text
    assert "0403.019.261" in text
    assert done.png.startswith(b"\x89PNG")


def test_a_missing_item_is_flagged_for_the_person_signing() -> None:
    payload = sample_payload("final_report")
    payload["requirements"][3]["provided"] = False  # threat_type

    assert "| Type of threat (d)(ii) | MISSING |" in render(payload).markdown


@pytest.mark.parametrize("report", REPORTS)
def test_rendered_reports_hold_no_raw_address_or_account_when_pseudonymised(report: str) -> None:
    done = render(sample_payload(report))

    assert leaks(done.json) == []
    assert leaks(done.markdown) == []
    assert leaks(pdf_text(done.pdf)) == []
    assert "ip-" in done.markdown and "user-" in done.markdown


def test_without_pseudonyms_the_same_report_names_them() -> None:
    done = render(sample_payload("incident_notification", pseudonymise=False))

    assert ATTACKER in leaks(done.markdown)
    assert set(ACCOUNTS) <= set(leaks(pdf_text(done.pdf)))


def test_the_significance_verdict_and_the_criterion_met_are_shown() -> None:
    markdown = render(sample_payload("incident_notification")).markdown

    assert "Verdict: significant (criteria for entity type other)." in markdown
    assert "| art23-severe-disruption | NIS2 Art. 23(3)(a) |" in markdown


def test_a_query_the_node_refuses_leaves_the_incident_series_empty(
    es: Elasticsearch, index_name: str
) -> None:
    es.index(index=index_name, document={"@timestamp": "2026-03-02T09:00:00Z"}, refresh=True)
    broken = sample_incident()
    alerts = [a.model_copy(update={"index_pattern": index_name, "query": "source.ip:(("})
              for a in broken.alerts]  # fmt: skip

    drawn = chart.gather(es, broken.model_copy(update={"alerts": tuple(alerts)}), {})

    assert sum(e["all"] for e in drawn["events"]) == 1
    assert sum(e["incident"] for e in drawn["events"]) == 0


def test_report_files_are_kept_from_other_local_users(tmp_path: Path) -> None:
    payload = sample_payload("early_warning")

    written = write(tmp_path, payload, folder="incident-local-id")

    assert sorted(p.suffix for p in written) == [".json", ".md", ".pdf", ".png"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o640}
    assert stat.S_IMODE((tmp_path / "incident-local-id").stat().st_mode) == 0o750


def test_a_request_reference_with_slashes_is_one_file_name(tmp_path: Path) -> None:
    payload = sample_payload("intermediate_report") | {"request_ref": "CCB/2026/../17 x"}

    written = write(tmp_path, payload, folder="incident-local-id")

    assert {p.parent for p in written} == {tmp_path / "incident-local-id"}
    assert all(p.name.startswith("intermediate_report-CCB_2026_.._17_x-") for p in written)
