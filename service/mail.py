"""Outgoing mail: SMTP (smtp://, smtps://, smtp+starttls://) or, in dev, a sink of .eml files."""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote, urlsplit

from service.config import Settings

log = logging.getLogger(__name__)


@dataclass
class Mailer:
    sender: str
    smtp_url: str | None = field(default=None, repr=False)
    sink_dir: Path | None = None
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Mailer:
        sink = None if settings.smtp_url else settings.path("mail")
        return cls(sender=settings.mail_from, smtp_url=settings.smtp_url, sink_dir=sink, timeout=settings.http_timeout)

    def send(self, message: EmailMessage) -> None:
        """Send one message; raises on failure so the calling job is retried."""
        if "From" not in message:
            message["From"] = self.sender
        if self.smtp_url is None:
            self._write_eml(message)
            return
        url = urlsplit(self.smtp_url)
        if url.scheme == "smtps":
            conn = smtplib.SMTP_SSL(url.hostname, url.port or 465, timeout=self.timeout,
                                    context=ssl.create_default_context())
        else:
            conn = smtplib.SMTP(url.hostname, url.port or (587 if url.scheme == "smtp+starttls" else 25),
                                timeout=self.timeout)
        with conn:
            if url.scheme == "smtp+starttls":
                conn.starttls(context=ssl.create_default_context())
            if url.username:
                conn.login(unquote(url.username), unquote(url.password or ""))
            conn.send_message(message)
        log.info("mail sent to %d recipient(s)", len(message.get_all("To", [])))

    def _write_eml(self, message: EmailMessage) -> None:
        self.sink_dir.mkdir(parents=True, exist_ok=True)
        path = self.sink_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        path.write_bytes(bytes(message))
        log.info("mail written to %s (dev sink; set CALSYNC_SMTP_URL to send)", path)
