"""The notifier and the delivery channels, built from the configuration."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from nis2triage import logs
from nis2triage.config import AgentConfig, read_secret
from nis2triage.errors import ConfigError
from nis2triage.notify.channel import Channel, HttpChannel
from nis2triage.notify.manual import ManualChannel
from nis2triage.notify.notifier import Notifier
from nis2triage.notify.pseudonym import Pseudonymiser
from nis2triage.notify.smtp import SmtpChannel
from nis2triage.notify.soc import Soc
from nis2triage.store import Store

log = logging.getLogger(__name__)


def notifier(
    cfg: AgentConfig, store: Store, pseudonym_key: bytes | None, clock: Callable[[], datetime]
) -> Notifier:
    n = cfg.notifier
    if n.pseudonymise and not pseudonym_key:
        raise ConfigError(
            f"notifier.pseudonymise is on but {n.pseudonym_key_env} is not set: set it to "
            "the key the agent runs with (another key gives every address and account new "
            "pseudonyms); for a first installation make one with openssl rand -hex 32, or "
            "turn pseudonymise off"
        )
    pseudonymiser = Pseudonymiser(pseudonym_key) if n.pseudonymise and pseudonym_key else None
    return Notifier(store, n.mode, list(cfg.incidents.channels), pseudonymiser, clock)


def channels(cfg: AgentConfig, token: str | None, soc: Soc) -> dict[str, Channel]:
    """The configured channels in send mode; none in dry-run, where nothing leaves."""
    n, options = cfg.notifier, cfg.incidents
    if n.mode != "send":
        return {}
    built: dict[str, Channel] = {}
    if "http" in options.channels and n.endpoint:
        built["http"] = HttpChannel(
            n.endpoint, token, n.timeout.total_seconds(), n.allowed_hosts,
            n.deadline.total_seconds(), n.max_answer_bytes,
        )  # fmt: skip
    if "smtp" in options.channels and options.smtp is not None:
        password = read_secret(options.smtp.password_env, None, "SMTP password")
        logs.register_secret(password)
        built["smtp"] = SmtpChannel(options.smtp, password, soc)
    if "http" in built and "manual" in options.channels:
        log.warning(
            "incidents.channels has http and manual: each report is sent to %s and also "
            "written to %s for a person to submit on the CCB's platform; if that endpoint "
            "is the CCB's (or passes reports on to it), the CCB gets each report twice: "
            "keep one of the two channels",
            n.endpoint,
            cfg.resolve(options.report_dir),
        )
    if "manual" in options.channels:
        built["manual"] = ManualChannel(
            cfg.resolve(options.report_dir), soc, cfg.state.index_prefix, cfg.file_argument
        )
    return built
