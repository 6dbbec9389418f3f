"""Where messages go: an SMTP server (one connection reused for a run) or a Maildir outbox."""

from __future__ import annotations

import mailbox
import smtplib
import ssl
from pathlib import Path
from typing import Protocol

from digest.config import Settings, SmtpSettings
from digest.errors import TransportError


class RecipientRefused(TransportError):
    """The server refused this recipient (5xx): retrying will not help."""


class Transport(Protocol):
    """Hands one message to its next hop; raises TransportError (RecipientRefused for a refused address)."""

    def send(self, sender: str, recipient: str, message: bytes) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


class MaildirTransport:
    """Writes each message into a Maildir (new/), atomically: for development and `make run`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._box: mailbox.Maildir | None = None

    def send(self, sender: str, recipient: str, message: bytes) -> None:
        try:
            if self._box is None:
                self._box = mailbox.Maildir(self.path, create=True)
            self._box.add(message)
        except OSError as e:
            raise TransportError(f"cannot write to the outbox {self.path}: {e.strerror}", "check outbox_dir") from e

    def close(self) -> None:
        self._box = None

    def describe(self) -> str:
        return f"outbox {self.path}"


class SmtpTransport:
    """One SMTP connection, opened on first use and reused; reopened once if the server dropped it."""

    def __init__(self, server: SmtpSettings, timeout: float) -> None:
        self.server = server
        self.timeout = timeout
        self._conn: smtplib.SMTP | None = None

    def describe(self) -> str:
        return self.server.display()

    def _connect(self) -> smtplib.SMTP:
        s = self.server
        try:
            conn: smtplib.SMTP
            if s.ssl:
                conn = smtplib.SMTP_SSL(s.host, s.port, timeout=self.timeout, context=ssl.create_default_context())
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=self.timeout)
                if s.starttls:
                    conn.starttls(context=ssl.create_default_context())
            if s.username:
                conn.login(s.username, s.password or "")
        except (OSError, smtplib.SMTPException) as e:
            raise TransportError(f"cannot connect to the SMTP server {s.display()}: {e}") from e
        return conn

    def send(self, sender: str, recipient: str, message: bytes) -> None:
        # Messages are built with LF (the Maildir convention); the wire wants CRLF, and smtplib converts
        # only str messages, never bytes.
        wire = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.sendmail(sender, [recipient], wire)
                return
            except smtplib.SMTPRecipientsRefused as e:
                code, reply = e.recipients.get(recipient, (550, b"refused"))
                if 500 <= code < 600:
                    raise RecipientRefused(f"{self.describe()} refused {recipient}: {code} {reply!r}") from e
                raise TransportError(f"{self.describe()} deferred {recipient}: {code} {reply!r}") from e
            except smtplib.SMTPResponseException as e:
                raise TransportError(f"{self.describe()} answered {e.smtp_code} {e.smtp_error!r}") from e
            except (TimeoutError, smtplib.SMTPServerDisconnected, ConnectionError) as e:
                self._conn = None
                if attempt == 2:
                    raise TransportError(f"lost the connection to {self.describe()}: {e}") from e

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._conn = None


def transport_for(settings: Settings) -> Transport:
    """SMTP when smtp_url is set, else the Maildir outbox."""
    server = settings.smtp()
    if server is None:
        return MaildirTransport(settings.outbox_dir)
    return SmtpTransport(server, settings.smtp_timeout)
