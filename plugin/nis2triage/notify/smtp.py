"""E-mail delivery over SMTP (standard library `smtplib`).

The message carries the readable report as its text, the PDF and the JSON as
attachments, and the idempotency key twice: as `Message-ID` (RFC 5322 3.6.4,
which mail systems use to drop duplicates) and as `X-Idempotency-Key`. SMTP
reply codes decide the outcome (RFC 5321 4.2.1): 4xx is transient, 5xx is not.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from nis2triage.config import SmtpConfig
from nis2triage.notify.channel import Delivered, Outcome, Rejected, RetryLater
from nis2triage.notify.deadline import (
    AnswerTooLarge,
    Deadline,
    LookupTimeout,
    connect_within,
    read_within,
)
from nis2triage.notify.pseudonym import reveal
from nis2triage.notify.soc import Soc
from nis2triage.reports.render import RenderError, rendered
from nis2triage.reports.stages import BY_REPORT, report_of

log = logging.getLogger(__name__)

REPLIES_CAP = 64 * 1024


class SmtpChannel:
    name = "smtp"

    def __init__(self, cfg: SmtpConfig, password: str | None, soc: Soc | None = None) -> None:
        self.cfg = cfg
        self.password = password
        self.soc = soc

    def send(self, key: str, payload: dict[str, Any], now: datetime) -> Outcome:
        try:
            message = self.message(key, payload)
        except RenderError as exc:
            # Rendering again fails the same way: the report must be sent by hand.
            return Rejected(f"smtp channel: {exc}")
        where = f"SMTP {self.cfg.host}:{self.cfg.port}"
        deadline = Deadline(self.cfg.deadline.total_seconds())
        try:
            with self._connect(deadline) as smtp:
                if self.cfg.username:
                    smtp.login(self.cfg.username, self.password or "")
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            replies = exc.recipients.items()
            what = "; ".join(f"{rcpt}: {code} {_text(text)}" for rcpt, (code, text) in replies)
            return _judge_codes([_rcpt_code(code) for code, _ in exc.recipients.values()], what)
        except smtplib.SMTPNotSupportedError:
            return Rejected(f"{self.cfg.host} offers no STARTTLS; fix the server or `security`")
        except smtplib.SMTPResponseException as exc:
            return _judge_codes([exc.smtp_code], _text(exc.smtp_error))
        except (smtplib.SMTPException, OSError, AnswerTooLarge) as exc:
            return RetryLater(f"{where}: {_why(exc, deadline, self.cfg)}")
        accepted = len(self.cfg.recipients) - len(refused)
        if refused:
            self._partly_refused(key, payload, refused)
        return Delivered(f"SMTP accepted for {accepted} of {len(self.cfg.recipients)} recipient(s)")

    def _partly_refused(
        self, key: str, payload: dict[str, Any], refused: dict[str, tuple[int, bytes]]
    ) -> None:
        """Some recipients took it and some did not: sent, yet someone must reach the others.

        Retrying would send the others a second copy, so the refused ones go to the SOC."""
        who = "; ".join(f"{rcpt}: {code} {_text(text)}" for rcpt, (code, text) in refused.items())
        message = f"report {key} was not accepted for {who}; send it to them by hand"
        log.error("%s", message)
        if self.soc is not None:
            named = str(payload.get("incident_id") or key)
            incident = reveal(self.soc.store, named, "incident") or named
            report = report_of(payload)
            self.soc.raise_once("recipient_refused", incident, report, message,
                                details={"key": key, "refused": sorted(refused)})  # fmt: skip

    def _connect(self, deadline: Deadline) -> smtplib.SMTP:
        timeout = min(self.cfg.timeout.total_seconds(), deadline.left())
        if self.cfg.security == "tls":
            return _BoundedSMTPSSL(
                deadline, self.cfg.host, self.cfg.port, timeout=timeout,
                context=ssl.create_default_context(),
            )  # fmt: skip
        smtp = _BoundedSMTP(deadline, self.cfg.host, self.cfg.port, timeout=timeout)
        if self.cfg.security == "starttls":
            try:
                smtp.starttls(context=ssl.create_default_context())
            except BaseException:
                smtp.close()  # not left open for the garbage collector to find
                raise
        return smtp

    def message(self, key: str, payload: dict[str, Any]) -> EmailMessage:
        done = rendered(payload)
        stage = (
            BY_REPORT[payload["report_type"]].label
            if payload.get("report_type") in BY_REPORT
            else "Report"
        )
        msg = EmailMessage()
        msg["From"] = self.cfg.sender
        msg["To"] = ", ".join(self.cfg.recipients)
        entity = payload["entity"]["legal_name"]
        tlp = payload.get("tlp", "TLP:AMBER")
        msg["Subject"] = f"[{tlp}] NIS2 {stage}: {entity} ({key[:12]})"
        msg["Message-ID"] = f"<{key}@{self.cfg.sender.rsplit('@', 1)[-1]}>"
        msg["X-Idempotency-Key"] = key
        msg.set_content(done.markdown)
        msg.add_attachment(
            done.pdf, maintype="application", subtype="pdf", filename=f"{done.name}.pdf"
        )
        msg.add_attachment(
            done.json.encode(), maintype="application", subtype="json", filename=f"{done.name}.json"
        )
        return msg


class _BoundedSMTP(smtplib.SMTP):
    """smtplib's client with every reply read, and every command sent, within `deadline`."""

    def __init__(self, deadline: Deadline, *args: Any, **kwargs: Any) -> None:
        self.deadline = deadline
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # The name lookup within the deadline as well; STARTTLS and TLS still check the
        # certificate against the configured name, which smtplib keeps in `_host`.
        return connect_within(host, port, self.deadline, timeout)

    def getreply(self) -> tuple[int, bytes]:
        # smtplib makes its reader lazily, and again after STARTTLS: make ours instead.
        if self.file is None and self.sock is not None:
            self.file = read_within(self.sock, self.deadline, self.timeout, REPLIES_CAP)
        return super().getreply()

    def send(self, s: Any) -> None:
        if self.sock is not None:
            self.deadline.bound(self.sock, self.timeout)
        super().send(s)


class _BoundedSMTPSSL(_BoundedSMTP, smtplib.SMTP_SSL):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        # _BoundedSMTP's connection comes first in the order of bases: wrap it here, as
        # SMTP_SSL would wrap its own.
        plain = super()._get_socket(host, port, timeout)
        return self.context.wrap_socket(plain, server_hostname=self._host)  # type: ignore[attr-defined]


def _why(exc: BaseException, deadline: Deadline, cfg: SmtpConfig) -> str:
    # smtplib turns a read's OSError into SMTPServerDisconnected, so look at the clock too.
    if deadline.passed:
        return f"session not finished within the {cfg.deadline.total_seconds():g} s deadline"
    if isinstance(exc, LookupTimeout):
        return f"{exc}: check the DNS resolver of this machine"
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return f"no reply within {cfg.timeout.total_seconds():g} s"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return text[:200]


def _rcpt_code(code: int) -> int:
    """RFC 5321 4.5.3.1.10: 552 to RCPT once meant "too many recipients"; treat it as 452."""
    return 452 if code == 552 else code


def _judge_codes(codes: list[int], what: str) -> Outcome:
    if codes and all(500 <= c < 600 for c in codes):
        return Rejected(f"SMTP {codes[0]}: {what}")
    return RetryLater(f"SMTP {codes[0] if codes else '?'}: {what}")
