"""The `manual` channel: report files for a person to submit, and a SOC notification.

The CCB takes NIS2 notifications through its web platform and publishes no
API (docs/nis2-reporting.md, section 4), so this channel writes the report as
JSON, Markdown and PDF into a directory and tells the SOC. The report only
counts as sent once the person records the submission and the CCB's
reference (`nis2triage incidents submitted`).
"""

from __future__ import annotations

import shlex
from datetime import datetime
from pathlib import Path
from typing import Any

from nis2triage.config import CONFIG_PLACEHOLDER
from nis2triage.errors import ConfigError
from nis2triage.notify.channel import HandedOver, Outcome, Rejected, RetryLater
from nis2triage.notify.pseudonym import reveal
from nis2triage.notify.soc import Soc
from nis2triage.reports.render import RenderError, ReportFolderError, claim, write
from nis2triage.reports.stages import cli_name, report_of


class ManualChannel:
    name = "manual"

    def __init__(
        self, directory: Path, soc: Soc, prefix: str, config: str = CONFIG_PLACEHOLDER
    ) -> None:
        self.directory = directory
        self.soc = soc
        self.prefix = prefix
        # The configuration's file as a shell takes it (`AgentConfig.file_argument`).
        self.config = config
        self._claim_at_start()

    def _claim_at_start(self) -> None:
        """Refuse to start on a folder that holds another agent's reports; a folder not
        writable yet is said at the first report, which is tried again until it is."""
        try:
            claim(self.directory, self.prefix)
        except ReportFolderError as exc:
            raise ConfigError(str(exc)) from exc
        except OSError:
            pass

    def send(self, key: str, payload: dict[str, Any], now: datetime) -> Outcome:
        # The payload names the incident by its keyed reference; the SOC works with the id.
        incident = reveal(self.soc.store, payload["incident_id"], "incident")
        incident = incident or payload["incident_id"]
        try:
            claim(self.directory, self.prefix)
            paths = write(self.directory, payload, incident)
        except (RenderError, ReportFolderError) as exc:
            # The same payload fails the same way, and a symbolic link stays until a
            # person removes it: tried again for ever, the report would never be flagged.
            return Rejected(f"manual channel: {exc}")
        except OSError as exc:
            return RetryLater(f"cannot write the report into {self.directory}: {exc.strerror}")
        pdf = next(p for p in paths if p.suffix == ".pdf")
        stage, ref = payload["report_type"], payload.get("request_ref")
        # An intermediate report per request: each said on its own, and recorded by its
        # request (the deadline's key), as `incidents submitted` needs it.
        request = f" --request {shlex.quote(ref)}" if ref else ""
        self.soc.raise_once(
            "manual_submission",
            incident,
            report_of(payload),
            f"submit {pdf} on the CCB notification platform, then run "
            f"`nis2triage incidents submitted {incident} -c {self.config} "
            f"--stage {cli_name(stage)}{request} --reference <CCB reference>`",
            details={"files": [str(p) for p in paths], "key": key},
        )
        return HandedOver(f"written to {pdf.parent}")
