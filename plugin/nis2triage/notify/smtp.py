"""E-mail delivery over SMTP (standard library `smtplib`).

The message carries the readable report as its text, the PDF and the JSON as
attachments, and the idempotency key twice: as `Message-ID` (RFC 5322 3.6.4,
which mail systems use to drop duplicates) and as `X-Idempotency-Key`. SMTP
reply codes decide the outcome (RFC 5321 4.2.1): 4xx is transient, 5xx is not.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from nis2triage.config import SmtpConfig
from nis2triage.notify.channel import Delivered, Outcome, Rejected, RetryLater
from nis2triage.reports.render import render
from nis2triage.reports.stages import BY_REPORT

log = logging.getLogger(__name__)


class SmtpChannel:
    name = "smtp"

    def __init__(self, cfg: SmtpConfig, password: str | None) -> None:
        self.cfg = cfg
        self.password = password

    def send(self, key: str, payload: dict[str, Any], now: datetime) -> Outcome:
        message = self.message(key, payload)
        try:
            with self._connect() as smtp:
                if self.cfg.username:
                    smtp.login(self.cfg.username, self.password or "")
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            return _judge_codes([code for code, _ in exc.recipients.values()], "every recipient")
        except smtplib.SMTPNotSupportedError:
            return Rejected(f"{self.cfg.host} offers no STARTTLS; fix the server or `security`")
        except smtplib.SMTPResponseException as exc:
            return _judge_codes([exc.smtp_code], str(exc.smtp_error[:200]))
        except (smtplib.SMTPException, OSError) as exc:
            return RetryLater(f"SMTP {self.cfg.host}:{self.cfg.port}: {type(exc).__name__}")
        accepted = len(self.cfg.recipients) - len(refused)
        if refused:
            log.warning("report %s refused for %s", key, ", ".join(sorted(refused)))
        return Delivered(f"SMTP accepted for {accepted} of {len(self.cfg.recipients)} recipient(s)")

    def _connect(self) -> smtplib.SMTP:
        timeout = self.cfg.timeout.total_seconds()
        if self.cfg.security == "tls":
            return smtplib.SMTP_SSL(
                self.cfg.host, self.cfg.port, timeout=timeout, context=ssl.create_default_context()
            )
        smtp = smtplib.SMTP(self.cfg.host, self.cfg.port, timeout=timeout)
        if self.cfg.security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        return smtp

    def message(self, key: str, payload: dict[str, Any]) -> EmailMessage:
        done = render(payload)
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


def _judge_codes(codes: list[int], what: str) -> Outcome:
    if codes and all(500 <= c < 600 for c in codes):
        return Rejected(f"SMTP {codes[0]}: {what}")
    return RetryLater(f"SMTP {codes[0] if codes else '?'}: {what}")
