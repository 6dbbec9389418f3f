"""MIME assembly of a rendered digest, straight from its parts.

Built by hand rather than with EmailMessage(policy=SMTP), which costs ten times as much per message and
folds (then RFC 2047-encodes) long List-Unsubscribe headers that clients then ignore. Every header value
that holds data passes through ``header_safe`` first: no CR, LF or control character reaches a header.
Every header is ASCII but To for an address with a non-ASCII local part (RFC 6532, SMTPUTF8 only).
"""

from __future__ import annotations

import quopri
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr

from digest.mail.addresses import wire_address
from digest.text.clean import header_safe


@dataclass(frozen=True)
class Envelope:
    """What a message needs besides its bodies."""

    mail_from: str
    to: str
    subject: str
    message_id: str
    date: datetime
    list_id: str
    unsubscribe_url: str
    # A digest (bulk: List-* headers, Precedence) or a notice to one person (a confirmation: none of those).
    bulk: bool = True
    # Where replies go, when not to From.
    reply_to: str = ""


def sender_address(mail_from: str) -> str:
    """The bare address of a From value (the SMTP envelope sender)."""
    return parseaddr(mail_from)[1]


def _encoded(value: str) -> str:
    value = header_safe(value, limit=900)
    return value if value.isascii() else Header(value, "utf-8", header_name="Subject").encode()


def _from_header(mail_from: str) -> str:
    name, address = parseaddr(header_safe(mail_from))
    return formataddr((name, address), charset="utf-8")


def _body(content_type: str, text: str) -> bytes:
    encoded = quopri.encodestring(text.replace("\r\n", "\n").encode("utf-8"))
    return (
        f'Content-Type: {content_type}; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n'.encode()
        + encoded
    )


def build_message(envelope: Envelope, text: str, html: str) -> bytes:
    """A multipart/alternative message (text first, HTML last) as bytes with LF line ends."""
    boundary = "=_digest_" + secrets.token_hex(12)
    headers = [
        ("From", _from_header(envelope.mail_from)),
        # Punycode domain; a non-ASCII local part stays UTF-8 (RFC 6532), sent only where SMTPUTF8 is offered.
        ("To", header_safe(wire_address(envelope.to).address, limit=320)),
        ("Subject", _encoded(envelope.subject)),
        ("Date", format_datetime(envelope.date)),
        ("Message-ID", header_safe(envelope.message_id)),
    ]
    if envelope.reply_to:
        headers.append(("Reply-To", _from_header(envelope.reply_to)))
    if envelope.bulk:
        headers += [
            ("List-Id", f"Practice digest <{header_safe(envelope.list_id)}>"),
            ("List-Unsubscribe", f"<{header_safe(envelope.unsubscribe_url, limit=900)}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Precedence", "bulk"),
        ]
    headers += [
        ("Auto-Submitted", "auto-generated"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    head = "".join(f"{name}: {value}\n" for name, value in headers).encode("utf-8")
    sep = f"\n--{boundary}\n".encode()
    return (
        head
        + b"\nThis is a multipart message in MIME format."
        + sep
        + _body("text/plain", text)
        + sep
        + _body("text/html", html)
        + f"\n--{boundary}--\n".encode()
    )
