"""The five NIS2 report stages and what each must contain (NIS2 Art. 23(4)(a)-(e)).

Labels live here, not in the payload: the payload is pseudonymised word by
word, and a user called "root" must not turn "root cause" into a pseudonym.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nis2triage.errors import IncidentError


@dataclass(frozen=True)
class Stage:
    report: str  # the key used by nis2triage.nis2.clocks
    cli: str  # how the command line names it
    label: str
    article: str
    requires: tuple[str, ...]  # payload fields the stage must fill


STAGES = (
    Stage(
        "early_warning",
        "early-warning",
        "Early warning",
        "NIS2 Art. 23(4)(a)",
        ("suspected_unlawful_or_malicious", "possible_cross_border_impact"),
    ),
    Stage(
        "incident_notification",
        "notification",
        "Incident notification",
        "NIS2 Art. 23(4)(b)",
        (
            "suspected_unlawful_or_malicious",
            "possible_cross_border_impact",
            "severity",
            "impact",
            "indicators",
        ),
    ),
    Stage(
        "intermediate_report",
        "intermediate",
        "Intermediate report",
        "NIS2 Art. 23(4)(c)",
        ("status", "description"),
    ),
    Stage(
        "final_report",
        "final",
        "Final report",
        "NIS2 Art. 23(4)(d)",
        (
            "description",
            "severity",
            "impact",
            "threat_type",
            "root_cause",
            "mitigation_applied",
            "mitigation_ongoing",
            "possible_cross_border_impact",
        ),
    ),
    Stage(
        "progress_report",
        "progress",
        "Progress report",
        "NIS2 Art. 23(4)(e)",
        ("status", "description", "mitigation_ongoing"),
    ),
)
BY_REPORT = {s.report: s for s in STAGES}
BY_CLI = {s.cli: s for s in STAGES}

# What each required field means, in the words of Art. 23(4).
FIELD_LABELS = {
    "suspected_unlawful_or_malicious": "Suspected unlawful or malicious act (a)",
    "possible_cross_border_impact": "Possible cross-border impact (a), (d)(iv)",
    "severity": "Severity, initial assessment (b), detailed (d)(i)",
    "impact": "Impact, initial assessment (b), detailed (d)(i)",
    "indicators": "Indicators of compromise, where available (b)",
    "status": "Status update (c), (e)",
    "description": "Detailed description of the incident (d)(i)",
    "threat_type": "Type of threat (d)(ii)",
    "root_cause": "Likely underlying cause (d)(ii)",
    "mitigation_applied": "Mitigation measures applied (d)(iii)",
    "mitigation_ongoing": "Mitigation measures ongoing (d)(iii)",
}


def stage_named(name: str) -> Stage:
    """A stage by its command-line name (early-warning) or its report key (early_warning)."""
    found = BY_CLI.get(name) or BY_REPORT.get(name)
    if found is None:
        raise IncidentError(f"no report stage {name!r}; choose one of {', '.join(BY_CLI)}")
    return found


def cli_name(report: str) -> str:
    """How the command line names a report (`early-warning` for `early_warning`); an
    unknown one as it is."""
    return BY_REPORT[report].cli if report in BY_REPORT else report


def report_of(payload: dict[str, Any]) -> str:
    """The report a payload is, as the incident's deadlines and the SOC's escalations name
    it: an intermediate report per request (`intermediate_report:CCB/2026/17`)."""
    stage, ref = str(payload.get("report_type") or "report"), payload.get("request_ref")
    return f"{stage}:{ref}" if ref else stage
