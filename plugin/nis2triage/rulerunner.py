"""Detection rules in the agent loop: native rule types and Sigma, window after window.

Each cycle runs every rule over the window from where it stopped to now minus
the maximum lateness, so late events are still inside a window when it is
evaluated. A rule that Elasticsearch refuses is paused and reported once while
the others go on (an operator fixes it and restarts). Each rule's window end
and state are saved in the agent's state index after its alerts are written.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, Elasticsearch
from pydantic import ValidationError

from nis2triage import yamlload
from nis2triage.config import AgentConfig, RulesConfig
from nis2triage.errors import PartialResultsError, RuleExecutionError, SnapshotError
from nis2triage.records import Alert
from nis2triage.rules import engine, sigma_run
from nis2triage.rules.fieldcheck import FieldCheck
from nis2triage.rules.loader import load_rules
from nis2triage.rules.native import SIGMA_KEY_PREFIX, NativeRule
from nis2triage.rules.sigma import SigmaConverter, SigmaQuery, rule_files
from nis2triage.rules.state import RuleState
from nis2triage.source import index_names

log = logging.getLogger(__name__)
RunOne = Callable[[datetime, datetime, RuleState], list[Alert]]
# How long a rule's window may be held for incomplete results before it is an error.
HELD_TOO_LONG = timedelta(hours=1)
# What a rule's own code may raise on data it did not expect. Connection and node errors
# are not among them: they are the agent's to wait out, for every rule at once.
_RULE_FAULTS = (ArithmeticError, AttributeError, LookupError, TypeError, ValueError)


@dataclass
class RuleProgress:
    """Where one rule stands: the end of its last window, its state, and whether it is paused."""

    window_end: datetime | None = None
    state: RuleState = field(default_factory=RuleState)
    paused: str | None = None
    # The partial-results condition last logged, so an outage of some shards is said once.
    incomplete: str | None = None
    # Whether a window held past HELD_TOO_LONG was said as an error (once per hold).
    held_said: bool = False


def _expand(cfg: AgentConfig, patterns: list[str]) -> list[str]:
    return sorted(p for pattern in patterns for p in glob.glob(str(cfg.resolve(pattern))))


def load_native(cfg: AgentConfig) -> list[NativeRule]:
    return load_rules(_expand(cfg, cfg.rules.native)) if cfg.rules.native else []


def sigma_files(cfg: AgentConfig) -> list[Path]:
    """The Sigma rule files the configuration names, each once."""
    return yamlload.once_each(f for p in _expand(cfg, cfg.rules.sigma) for f in rule_files(p))


def load_sigma(cfg: AgentConfig) -> list[SigmaQuery]:
    converted = SigmaConverter().load(sigma_files(cfg))
    for skipped in converted.skipped:
        # A rule that cannot be converted is reported and skipped; it never stops the agent.
        log.warning("sigma rule skipped: %s", skipped)
    return list(converted.queries)


class RuleRunner:
    def __init__(
        self,
        es: Elasticsearch,
        cfg: RulesConfig,
        native: list[NativeRule],
        sigma: list[SigmaQuery],
        clock: Callable[[], datetime],
    ) -> None:
        self.es = es
        self.cfg = cfg
        self.native = native
        self.sigma = sigma
        self.clock = clock
        self.progress: dict[str, RuleProgress] = {}
        self.forbidden_said: set[str] = set()
        self.field_check = FieldCheck()
        self.sigma_settings = sigma_run.RunSettings(
            index_pattern=",".join(cfg.sigma_indices),
            entity_field=cfg.sigma_entity_field,
            time_field=cfg.time_field,
        )

    def names(self) -> list[str]:
        """The names its alerts carry: the native rules' and the Sigma rules' titles."""
        return [r.name for r in self.native] + [q.name for q in self.sigma]

    def __len__(self) -> int:
        return len(self.native) + len(self.sigma)

    def indices(self) -> list[tuple[str, list[str]]]:
        """Each rule's name and the index names (patterns included) it searches; a list,
        since a Sigma rule may share its title with a native rule."""
        sigma = index_names(self.cfg.sigma_indices)
        return [
            *((r.name, index_names([r.index])) for r in self.native),
            *((q.name, sigma) for q in self.sigma),
        ]

    def run_due(self) -> list[Alert]:
        """Every active rule over its next window; returns the alerts."""
        end = self.clock() - self.cfg.max_lateness
        alerts: list[Alert] = []
        self.field_check.check(self.es, [r for r in self.native if not self._paused(r.name)])
        for name, run in self._runs():
            progress = self.progress.setdefault(name, RuleProgress())
            start = progress.window_end or end - self.cfg.initial_lookback
            if progress.paused or start >= end:
                continue
            # A run that fails halfway may have updated the state from part of the window.
            before = progress.state.model_copy(deep=True)
            try:
                alerts.extend(run(start, end, progress.state))
            except RuleExecutionError as exc:
                progress.paused = str(exc)
                log.error("rule %s paused: %s", name, exc)
                continue
            except _RULE_FAULTS as exc:
                # A fault in one rule's code or data (a bug, a value no check foresaw) must not
                # stop the other rules, nor the detectors and reports of the whole agent.
                progress.state, progress.paused = before, f"failed: {exc!r}"
                log.exception("rule %s paused after an internal error; please report it", name)
                continue
            except ApiError as exc:
                if exc.meta.status == 403:
                    self._say_forbidden(name)
                raise
            except PartialResultsError as exc:
                # Pin where the window starts, so a first window that keeps failing does not
                # slide forward with the clock and drop its oldest events.
                progress.state, progress.window_end = before, start
                self._say_incomplete(name, progress, str(exc))
                self._say_held(name, progress, end - start)
                continue
            if progress.incomplete:
                log.warning("rule %s: every shard answers again", name)
                progress.incomplete, progress.held_said = None, False
            progress.window_end = end
        return alerts

    def _paused(self, name: str) -> bool:
        progress = self.progress.get(name)
        return progress is not None and progress.paused is not None

    def _say_forbidden(self, name: str) -> None:
        # The start checked that the agent may read every name the rule lists, so a 403 here
        # comes from what a name takes in: an alias over an index the role does not name.
        # Said once per run of the agent: the loop restores the rules' progress after each
        # failed cycle, so a flag kept there would not hold.
        if name in self.forbidden_said:
            return
        self.forbidden_said.add(name)
        names = next(
            (", ".join(i) for n, i in self.indices() if n == name.removeprefix(SIGMA_KEY_PREFIX)),
            "?",
        )
        log.error(
            "rule %s: Elasticsearch refuses its search (403) although the agent may read %s: "
            "most likely an alias those names take in covers an index the agent's role does "
            "not name (another agent's alerts under a shared Elastic Security alias, say); "
            "leave that alias out of the rule's index, or give the role read on the index. "
            "The rules wait until then; detectors and reports go on",
            name,
            names,
        )

    @staticmethod
    def _say_held(name: str, progress: RuleProgress, held: timedelta) -> None:
        # A shard that stays failed (an index of the pattern mapped otherwise) would hold the
        # rule for ever, blind and quiet after its first warning: say it louder, once.
        if held > HELD_TOO_LONG and not progress.held_said:
            log.error(
                "rule %s: its window has been held for %s: some shards keep failing its "
                "search (%s); fix that index's mapping or leave it out of the rule's index",
                name,
                held,
                progress.incomplete,
            )
            progress.held_said = True

    @staticmethod
    def _say_incomplete(name: str, progress: RuleProgress, condition: str) -> None:
        if progress.incomplete != condition:
            log.warning("rule %s: results incomplete, not advanced: %s", name, condition)
        progress.incomplete = condition

    def _runs(self) -> list[tuple[str, RunOne]]:
        runs: list[tuple[str, RunOne]] = [(r.name, partial(self._native, r)) for r in self.native]
        runs += [(f"{SIGMA_KEY_PREFIX}{q.name}", partial(self._sigma, q)) for q in self.sigma]
        return runs

    def _native(
        self, rule: NativeRule, start: datetime, end: datetime, st: RuleState
    ) -> list[Alert]:
        return engine.run_rule(self.es, rule, start, end, st)

    def _sigma(
        self, query: SigmaQuery, start: datetime, end: datetime, _: RuleState
    ) -> list[Alert]:
        return sigma_run.run_rule(self.es, query, self.sigma_settings, start, end)

    def to_dict(self) -> dict[str, Any]:
        return {
            name: {
                "window_end": p.window_end.isoformat() if p.window_end else None,
                "state": p.state.model_dump(mode="json"),
                "paused": p.paused,
            }
            for name, p in self.progress.items()
        }

    def restore(self, saved: Any) -> None:
        """Each rule's progress from the saved state (`to_dict`); SnapshotError naming the
        rule and the field when a part of it is not as the agent writes it."""
        if saved is not None and not isinstance(saved, dict):
            raise SnapshotError(f"rules is {_shown(saved)}, not an object")
        self.progress = {name: _progress(name, item) for name, item in (saved or {}).items()}


def _progress(name: str, item: Any) -> RuleProgress:
    """One rule's saved progress, read back."""
    if not isinstance(item, dict):
        raise SnapshotError(f"rule {name!r} is {_shown(item)}, not an object")

    end = item.get("window_end")
    try:
        window_end = datetime.fromisoformat(end) if end else None
    except (TypeError, ValueError):
        raise SnapshotError(
            f"rule {name!r}: window_end is {_shown(end)}, not an ISO 8601 time"
        ) from None
    if window_end is not None and window_end.tzinfo is None:
        window_end = window_end.replace(tzinfo=UTC)  # as Elasticsearch reads a time with no zone

    try:
        state = RuleState.model_validate(item.get("state") or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise SnapshotError(f"rule {name!r}: state {where}: {first['msg']}") from None
    # A paused rule gets another chance after a restart: the operator may have fixed it.
    return RuleProgress(window_end=window_end, state=state, paused=None)


def _shown(value: Any) -> str:
    return repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:57]}..."
