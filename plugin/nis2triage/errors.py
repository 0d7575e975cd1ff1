"""The exceptions nis2triage raises on purpose.

Nis2TriageError
├── ConfigError        a configuration, rule or detector file is wrong (file, line, key)
├── ConnectionSetupError  Elasticsearch cannot be reached or refuses the credentials
├── SnapshotError      a model snapshot is unsigned, tampered or unreadable
│   └── SnapshotTooLarge   a checkpoint over Elasticsearch's request limit (snapshots.py)
├── RuleExecutionError   Elasticsearch refused a rule's query (the rule is paused)
├── PartialResultsError  some shards failed a rule's search (the window is retried)
├── DeliveryError      a notification channel failed (retried by the outbox)
├── StoreError         Elasticsearch refused documents the agent writes
├── LeaseLost          another agent took over the state prefix (this one stands by)
├── LeaseHeld          another live agent runs on the state prefix (`run --once` refuses)
└── IncidentError      an incident command cannot apply (unknown id, wrong stage, bad fact)
"""

from __future__ import annotations


class Nis2TriageError(Exception):
    """Base of every error nis2triage raises deliberately."""


class ConfigError(Nis2TriageError):
    """A file the operator wrote is wrong; the message names the file, line and fix."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        where = path or ""
        if line is not None:
            where = f"{where}:{line}"
            if column is not None:
                where = f"{where}:{column}"
        super().__init__(f"{where}: {message}" if where else message)


class ConnectionSetupError(Nis2TriageError):
    """Elasticsearch could not be reached, or refused the credentials."""


class SnapshotError(Nis2TriageError):
    """A model snapshot failed its signature check or could not be restored."""


class StoreError(Nis2TriageError):
    """Elasticsearch refused some of the documents the agent writes (read-only, rejected)."""


class LeaseHeld(Nis2TriageError):
    """Another live agent holds this prefix's lease: this one may not run beside it."""


class LeaseLost(Nis2TriageError):
    """Another agent took this prefix's lease (ours had expired): stop and stand by."""


class RuleExecutionError(Nis2TriageError):
    """Elasticsearch refused a rule's query; the message names the rule and the fix."""


class PartialResultsError(Nis2TriageError):
    """Some shards failed a rule's search: the answer is incomplete, so the window is retried."""


class DeliveryError(Nis2TriageError):
    """A notification could not be delivered on this attempt."""


class IncidentError(Nis2TriageError):
    """An incident operation cannot apply as asked; the message says what to do instead."""
