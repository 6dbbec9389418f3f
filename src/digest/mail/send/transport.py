"""Where messages go: an SMTP server (one connection reused for a run) or a Maildir outbox."""

from __future__ import annotations

import logging
import mailbox
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from digest import logs
from digest.config import Settings, SmtpSettings, require_real_secret
from digest.errors import TransportError
from digest.mail.build.addresses import AddressError, wire_address
from digest.mail.build.mime import DataForm, data_form

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

events = logs.EventLog(__name__)


class RecipientRefused(TransportError):
    """The server refused this recipient for good (5xx to RCPT): a hard bounce; retrying will not help."""


class MessageRejected(TransportError):
    """The server refused this message for good (5xx after DATA): retrying the same bytes will not help."""


class RecipientUnsupported(MessageRejected):
    """This server cannot carry this address (no SMTPUTF8 for a non-ASCII local part, no IDNA form): not a bounce."""


class TemporaryFailure(TransportError):
    """A 4xx answer, a dropped connection or a timeout: the same message may well go through later."""


class ServerUnavailable(TransportError):
    """The server cannot be reached or refuses the sender: nothing can be sent this run."""


# The message a sender means to send next: its envelope sender, its recipient, and the message itself.
Following = tuple[str, str, bytes]


class Transport(Protocol):
    """Hands one message to its next hop, or raises one of the TransportError kinds above.

    ``meanwhile``, when given, is called once the message is on its way and before its outcome is known: work
    (building the next message) done while the server takes this one. It must not raise. ``following``, when
    given, is the message the caller will send next: a transport may start its transaction with this one's end
    (SMTP PIPELINING); whatever the caller does next, nothing is delivered that it did not send.
    """

    def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        meanwhile: Callable[[], object] | None = None,
        following: Following | None = None,
    ) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


class MaildirTransport:
    """Writes each message into a Maildir (new/), atomically: for development and `make run`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._box: mailbox.Maildir | None = None

    def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        meanwhile: Callable[[], object] | None = None,
        following: Following | None = None,
    ) -> None:
        try:
            if self._box is None:
                self._box = mailbox.Maildir(self.path, create=True)
            self._box.add(message.message() if isinstance(message, DataForm) else message)
        except OSError as e:
            raise ServerUnavailable(f"cannot write to the outbox {self.path}: {e.strerror}", "check outbox_dir") from e
        if meanwhile is not None:
            meanwhile()

    def close(self) -> None:
        self._box = None

    def describe(self) -> str:
        return f"outbox {self.path}"


@dataclass(frozen=True)
class _Opened:
    """A transaction begun ahead (MAIL, RCPT and DATA written with the end of the message before, their answers not
    yet read): the server waits for this message's data."""

    sender: str
    recipient: str
    message: bytes
    wire: bytes


class SmtpTransport:
    """One SMTP connection, opened on first use and reused; reopened on the next send after a drop.

    With a server that offers PIPELINING, the next message's MAIL, RCPT and DATA go out in the same write as the
    end of this one's data (RFC 2920 allows the message's content as the first command of a group), so a message
    costs one wait for the server instead of two. Once the server has answered DATA, only this message's data
    or a closed connection ends the transaction: if the caller sends anything else next (a retry, another
    message) or stops, the connection is dropped, and a transaction without its final dot is never delivered.
    """

    def __init__(self, server: SmtpSettings, timeout: float, pipelining: bool = True) -> None:
        self.server = server
        self.timeout = timeout
        # False: smtplib's own sendmail, one command and one answer at a time (smtp_pipelining = "off").
        self.pipelining = pipelining
        self._conn: smtplib.SMTP | None = None
        self._opened: _Opened | None = None

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
            events("smtp.unreachable", logging.ERROR, server=s.display(), error=str(e) or type(e).__name__)
            raise ServerUnavailable(
                f"cannot connect to the SMTP server {s.display()}: {e or type(e).__name__}",
                "check smtp_url and that the server is up; every digest stays pending for the next run",
            ) from e
        events("smtp.connected", server=s.display())
        return conn

    def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        meanwhile: Callable[[], object] | None = None,
        following: Following | None = None,
    ) -> None:
        """One SMTP transaction on the open connection (opened first if needed); no retry here. ``meanwhile`` runs
        between the end of the message's data and the server's answer to it; ``following`` is begun then too (see
        the class)."""
        server = self.describe()
        try:
            rcpt = wire_address(recipient)
        except AddressError as e:
            self._abandon()
            raise RecipientUnsupported(str(e), e.hint) from e
        opened, self._opened = self._opened, None
        if opened is not None and (opened.sender, opened.recipient, opened.message) != (sender, rcpt.address, message):
            self._drop()  # the server waits for the data of another message
            opened = None
        wire = opened.wire if opened is not None else _data(message)
        if self._conn is None:
            self._conn = self._connect()
        options: list[str] = []
        try:
            self._conn.ehlo_or_helo_if_needed()
            if not self.pipelining:
                self._sendmail(sender, rcpt.address, _crlf(message), rcpt.needs_smtputf8)
                if meanwhile is not None:
                    meanwhile()
                return
            ahead = self._ahead(following) if self._conn.has_extn("pipelining") else None

            def data_sent() -> None:
                self._opened = ahead[1] if ahead is not None else None
                if meanwhile is not None:
                    meanwhile()

            if rcpt.needs_smtputf8:
                self._conn.ehlo_or_helo_if_needed()
                if not self._conn.has_extn("smtputf8"):
                    raise RecipientUnsupported(
                        f"{server} does not offer SMTPUTF8, which {recipient} needs (non-ASCII before the @)",
                        "use a server that offers SMTPUTF8 (Postfix: smtputf8_enable = yes), or an ASCII address",
                    )
                options = ["SMTPUTF8"]
            _transaction(
                self._conn,
                sender,
                rcpt.address,
                wire,
                options,
                data_sent,
                opened is not None,
                ahead[0] if ahead is not None else b"",
            )
        except smtplib.SMTPRecipientsRefused as e:
            code, reply = e.recipients.get(rcpt.address, (550, b"refused"))
            text = f"{code} {_reply(reply)}"
            if 500 <= code < 600:
                raise RecipientRefused(f"{server} refused {recipient}: {text}") from e
            raise TemporaryFailure(f"{server} deferred {recipient}: {text}") from e
        except smtplib.SMTPSenderRefused as e:
            if 500 <= e.smtp_code < 600:
                raise ServerUnavailable(
                    f"{server} refused the sender {sender}: {e.smtp_code} {_reply(e.smtp_error)}",
                    "check mail_from and that this host may send as it",
                ) from e
            raise TemporaryFailure(f"{server} deferred the sender: {e.smtp_code} {_reply(e.smtp_error)}") from e
        except smtplib.SMTPResponseException as e:
            text = f"{e.smtp_code} {_reply(e.smtp_error)}"
            if 500 <= e.smtp_code < 600:
                raise MessageRejected(f"{server} rejected the message to {recipient}: {text}") from e
            self._drop()  # the session may be in any state after a 4xx mid-transaction (or a 421)
            raise TemporaryFailure(f"{server} deferred the message to {recipient}: {text}") from e
        except (OSError, smtplib.SMTPException) as e:  # dropped, reset, timed out
            reason = str(e) or type(e).__name__
            events("smtp.dropped", logging.WARNING, server=server, recipient=recipient, error=reason)
            self._drop()
            raise TemporaryFailure(
                f"lost the connection to {server} sending to {recipient}: {e or type(e).__name__}"
            ) from e

    def _sendmail(self, sender: str, recipient: str, wire: bytes, smtputf8: bool) -> None:
        """smtplib's sendmail, as it is: MAIL, RCPT, DATA one at a time (it adds SIZE and stuffs the dots)."""
        assert self._conn is not None
        if smtputf8 and not self._conn.has_extn("smtputf8"):
            raise RecipientUnsupported(
                f"{self.describe()} does not offer SMTPUTF8, which {recipient} needs (non-ASCII before the @)",
                "use a server that offers SMTPUTF8 (Postfix: smtputf8_enable = yes), or an ASCII address",
            )
        refused = self._conn.sendmail(sender, [recipient], wire, mail_options=["SMTPUTF8"] if smtputf8 else [])
        if refused:  # one recipient: sendmail raises when it is refused; kept for completeness
            raise smtplib.SMTPRecipientsRefused(refused)

    def _ahead(self, following: Following | None) -> tuple[bytes, _Opened] | None:
        """The commands that begin ``following``'s transaction, and what is then open; None when it is not begun
        ahead (none given, or an address that needs SMTPUTF8 or cannot be carried: those go the long way)."""
        if following is None or self._conn is None:
            return None
        sender, recipient, message = following
        try:
            rcpt = wire_address(recipient)
        except AddressError:
            return None
        if rcpt.needs_smtputf8:
            return None
        wire = _data(message)
        return _commands(self._conn, sender, rcpt.address, wire, []), _Opened(sender, rcpt.address, message, wire)

    def _abandon(self) -> None:
        """A transaction begun ahead will not be sent: the connection goes with it."""
        if self._opened is not None:
            self._drop()

    def _drop(self) -> None:
        self._opened = None
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def close(self) -> None:
        self._abandon()  # QUIT would be taken for message data
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._conn = None


def _crlf(message: bytes) -> bytes:
    """The message with CRLF line ends, its dots as they are (smtplib's sendmail doubles them itself, and converts
    only str messages, never bytes)."""
    return _lf(message).replace(b"\n", b"\r\n")


def _data(message: bytes) -> bytes:
    """What DATA carries of a message: a DataForm as it is; other messages (built with LF, or signed with CRLF)
    laid out so here."""
    if isinstance(message, DataForm):
        return message
    wire = data_form(_lf(message))
    return wire if wire.endswith(b"\r\n") else wire + b"\r\n"


def _lf(message: bytes) -> bytes:
    """The message with LF line ends (a DataForm's dots single again)."""
    if isinstance(message, DataForm):
        return message.message()
    return message.replace(b"\r\n", b"\n") if b"\r" in message else message


def _envelope(conn: smtplib.SMTP, sender: str, recipient: str, wire: bytes, options: list[str]) -> tuple[bytes, bytes]:
    """The MAIL command (with SIZE when the server takes it) and the RCPT command."""
    if conn.does_esmtp and conn.has_extn("size"):
        options = [*options, f"SIZE={len(wire)}"]
    encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
    mail = f"MAIL FROM:<{sender}>{''.join(' ' + o for o in options)}\r\n".encode(encoding)
    return mail, f"RCPT TO:<{recipient}>\r\n".encode(encoding)


def _commands(conn: smtplib.SMTP, sender: str, recipient: str, wire: bytes, options: list[str]) -> bytes:
    """MAIL, RCPT and DATA, for one write."""
    mail, rcpt = _envelope(conn, sender, recipient, wire, options)
    return mail + rcpt + b"DATA\r\n"


def _transaction(
    conn: smtplib.SMTP,
    sender: str,
    recipient: str,
    wire: bytes,
    options: list[str],
    meanwhile: Callable[[], object] | None = None,
    opened: bool = False,
    ahead: bytes = b"",
) -> None:
    """MAIL, RCPT, DATA and the message (``wire``: in DATA's form, see _data), as smtplib's sendmail does, raising
    the same exceptions; but with the three commands in one write when the server offers PIPELINING (RFC 2920),
    and ``meanwhile`` run while the server takes the data (the wait for its answer overlaps that work).
    ``opened``: the three commands were written already (with the message before), only their answers are read;
    ``ahead``: commands written with the end of this message's data (the next transaction's)."""
    conn.ehlo_or_helo_if_needed()
    if opened:
        replies = [conn.getreply(), conn.getreply(), conn.getreply()]
    elif conn.has_extn("pipelining"):
        conn.send(_commands(conn, sender, recipient, wire, options))
        replies = [conn.getreply(), conn.getreply(), conn.getreply()]
    else:
        mail, rcpt = _envelope(conn, sender, recipient, wire, options)
        conn.send(mail)
        replies = [conn.getreply()]
        if replies[0][0] == 250:
            conn.send(rcpt)
            replies.append(conn.getreply())
            if replies[1][0] in (250, 251):
                conn.send(b"DATA\r\n")
                replies.append(conn.getreply())
    (mail_code, mail_reply), *rest = replies
    if mail_code != 250:
        _reset(conn, data_open=len(rest) == 2 and rest[1][0] == 354)
        raise smtplib.SMTPSenderRefused(mail_code, mail_reply, sender)
    rcpt_code, rcpt_reply = rest[0]
    if rcpt_code not in (250, 251):
        _reset(conn, data_open=len(rest) == 2 and rest[1][0] == 354)
        raise smtplib.SMTPRecipientsRefused({recipient: (rcpt_code, rcpt_reply)})
    data_code, data_reply = rest[1]
    if data_code != 354:
        _reset(conn, data_open=False)
        raise smtplib.SMTPDataError(data_code, data_reply)
    conn.send(wire + b".\r\n" + ahead)
    if meanwhile is not None:
        meanwhile()
    code, reply = conn.getreply()
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)


def _reset(conn: smtplib.SMTP, data_open: bool) -> None:
    """Back to a clean session after a refused command (ending a DATA a broken server opened anyway)."""
    try:
        if data_open:
            conn.send(b".\r\n")
            conn.getreply()
        conn.rset()
    except (OSError, smtplib.SMTPException):
        pass


def _reply(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def transport_for(
    settings: Settings, factory: sessionmaker[Session] | None = None, start: int | None = None
) -> Transport:
    """SMTP when smtp_url is set (its relays: digest.mail.send.relays), else the Maildir outbox. ``factory``: the
    store, where relays' health and their ``?rate=`` are kept; ``start``: this sender's number (senders spread over
    the relays by it; None: a random share).

    Mail over SMTP reaches real people, and its links are signed with secret_key: a ConfigError when that is
    the development default (the Maildir of `make run` is fine with it).
    """
    from digest.mail.send.relays import RelayTransport  # it builds on SmtpTransport, here

    relays = settings.relays()
    if not relays:
        return MaildirTransport(settings.outbox_dir)
    require_real_secret(settings, f"sending over SMTP ({relays[0].display()})")
    pipelining = settings.smtp_pipelining == "auto"
    return RelayTransport(relays, settings.smtp_timeout, pipelining, start, factory)
